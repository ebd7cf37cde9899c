"""The voice-conversion stage on a few utterances: K copies, same frames, same fbank options, deterministic."""

import subprocess
import sys

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import yaml

from _tools import run_tool
from cdsvae.augment.world_vc import draw_conversion, load_vc_config, world_voice_conversion
from cdsvae.bin import run_main
from cdsvae.bin.make_fbank import main as fbank_main
from cdsvae.bin.world_vc import main
from cdsvae.data.datadir import split_data_dir
from cdsvae.fbank import compute_fbank, load_fbank_config
from cdsvae.io import UserError

SR = 16000
REPO = Path(__file__).resolve().parents[2]
SPEECH_RECIPES = ("mini", "timit", "vctk")


def make_dump(root, n_utts=3, fbank_yaml="n_mels: 40\n"):
    data = root / "data"
    (root / "audio").mkdir(parents=True)
    data.mkdir()
    wav, u2s = [], []
    for i in range(n_utts):
        t = np.arange(int(SR * (0.3 + 0.03 * i))) / SR
        f0 = 120 + 40 * i
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10))
        path = root / "audio" / f"s{i % 2}-u{i}.wav"
        sf.write(path, (0.2 * x / np.abs(x).max()).astype(np.float32), SR, subtype="PCM_16")
        wav.append(f"s{i % 2}-u{i} {path}\n")
        u2s.append(f"s{i % 2}-u{i} s{i % 2}\n")
    (data / "wav.scp").write_text("".join(sorted(wav)))
    (data / "utt2spk").write_text("".join(sorted(u2s)))
    (root / "fbank.yaml").write_text(fbank_yaml)
    fbank_main(["--config", str(root / "fbank.yaml"), str(data), str(root / "dump")])
    return root / "dump"


def vc_yaml(path, text):
    path.write_text(text)
    return str(path)


def read(featdir):
    return {k: np.array(v) for k, v in kaldiio.load_scp(str(featdir / "feats.scp")).items()}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("vc")
    dump = make_dump(root)
    conf = vc_yaml(root / "vc.yaml", "num_copies: 2\nseed: 7\n")
    assert main(["--vc_config", conf, str(dump), str(root / "vc")]) == 0
    return dump, root / "vc"


def test_copies_match_original_frames_and_options(converted):
    dump, vc = converted
    orig = read(dump)
    assert (vc / "vc.yaml").is_file()
    for k in (1, 2):
        copy = vc / f"copy{k}"
        assert (copy / "utt2num_frames").read_text() == (dump / "utt2num_frames").read_text()
        assert (copy / "fbank.yaml").read_text() == (dump / "fbank.yaml").read_text()
        assert (copy / "utt2spk").read_text() == (dump / "utt2spk").read_text()
        feats = read(copy)
        assert sorted(feats) == sorted(orig)
        for utt in orig:
            assert feats[utt].shape == orig[utt].shape
            assert not np.allclose(feats[utt], orig[utt])


def test_copies_are_the_drawn_conversions(converted):
    dump, vc = converted
    cfg = load_fbank_config(dump / "fbank.yaml")
    wav = dict(line.split() for line in (dump / "wav.scp").read_text().splitlines())
    for k in (1, 2):
        feats = read(vc / f"copy{k}")
        params = {line.split()[0]: tuple(map(float, line.split()[1:])) for line in
                  (vc / f"copy{k}" / "vc_params").read_text().splitlines()}
        for utt, path in wav.items():
            f0_scale, warp = draw_conversion(utt, k, 7)
            assert params[utt] == pytest.approx((f0_scale, warp), abs=1e-6)
            x, _ = sf.read(path, dtype="float32")
            expected = compute_fbank(world_voice_conversion(x, SR, f0_scale, warp), cfg)
            np.testing.assert_array_equal(feats[utt], expected)


def test_jobs_give_the_same_copies(converted, tmp_path):
    dump, vc = converted
    parts = split_data_dir(dump, 2, out_root=tmp_path / "split")
    conf = vc_yaml(tmp_path / "vc.yaml", "num_copies: 2\nseed: 7\n")
    for job, part in enumerate(parts, 1):
        main(["--vc_config", conf, "--fbank_config", str(dump / "fbank.yaml"), "--job", str(job),
              str(part), str(tmp_path / "vc")])
    main(["--vc_config", conf, "--merge", "--nj", "2", str(dump), str(tmp_path / "vc")])
    for k in (1, 2):
        a, b = read(vc / f"copy{k}"), read(tmp_path / "vc" / f"copy{k}")
        assert sorted(a) == sorted(b)
        for utt in a:
            np.testing.assert_array_equal(a[utt], b[utt])
        assert (vc / f"copy{k}" / "vc_params").read_text() == (tmp_path / "vc" / f"copy{k}" / "vc_params").read_text()


def test_fewer_copies_remove_the_stale_ones(converted, tmp_path):
    """A rerun with fewer copies leaves no copy of the earlier run to be read as a motion view."""
    dump, _ = converted
    out = tmp_path / "vc"
    main(["--vc_config", vc_yaml(tmp_path / "vc2.yaml", "num_copies: 2\nseed: 7\n"), str(dump), str(out)])
    assert (out / "copy2" / "feats.scp").is_file()
    (out / "copy10").mkdir()  # not a copy this tool would have written, but named like one
    main(["--vc_config", vc_yaml(tmp_path / "vc1.yaml", "num_copies: 1\nseed: 7\n"), str(dump), str(out)])
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("copy")) == ["copy1"]


def test_frame_count_mismatch_is_an_error(converted, tmp_path):
    dump, _ = converted
    broken = tmp_path / "dump"
    broken.mkdir()
    for name in ("wav.scp", "utt2spk", "fbank.yaml", "feats.scp"):
        (broken / name).write_text((dump / name).read_text())
    lines = (dump / "utt2num_frames").read_text().splitlines()
    utt, n = lines[0].split()
    (broken / "utt2num_frames").write_text("\n".join([f"{utt} {int(n) + 5}"] + lines[1:]) + "\n")
    with pytest.raises(UserError, match=f"{int(n)} frames where {int(n) + 5} were expected.*{utt}"):
        main(["--vc_config", vc_yaml(tmp_path / "vc.yaml", "num_copies: 1\n"), str(broken), str(tmp_path / "vc")])


def test_missing_config_and_help(tmp_path):
    (tmp_path / "src").mkdir()
    r = run_tool("world_vc", tmp_path / "src", tmp_path / "o")  # in this process (tests/_tools.py)
    assert r.returncode == 1 and "fbank.yaml" in r.stderr and "--fbank_config" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_tool("world_vc", "--vc_config", tmp_path / "nope.yaml", tmp_path / "src", tmp_path / "o")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "nope.yaml" in r.stderr
    r = subprocess.run([sys.executable, "-m", "cdsvae.bin.world_vc", "--help"], capture_output=True,
                       text=True)  # a real process: python -m reaches the entry point
    assert r.returncode == 0 and "--vc_config" in r.stdout and "--fbank_config" in r.stdout
    for key in ("num_copies", "f0_scale_range", "frame_period: 5.0", "f0_floor", "f0_ceil"):
        assert key in r.stdout
    assert "--config " not in r.stdout  # which options a flag configures is in its name


@pytest.mark.parametrize("recipe", SPEECH_RECIPES)
def test_every_key_of_a_recipe_vc_yaml_reaches_the_converter(recipe, converted, tmp_path):
    """The recipe's conf/vc.yaml as stage 3 passes it: every key is accepted and is what the run used."""
    dump, _ = converted
    conf = REPO / "egs" / recipe / "cdsvae1" / "conf" / "vc.yaml"
    keys = yaml.safe_load(conf.read_text())
    assert {"num_copies", "seed", "f0_method", "frame_period", "f0_floor", "f0_ceil"} <= set(keys)
    loaded = load_vc_config(conf).as_dict()
    assert {k: loaded[k] for k in keys} == keys
    assert main(["--vc_config", str(conf), str(dump), str(tmp_path / "vc")]) == 0
    used = yaml.safe_load((tmp_path / "vc" / "vc.yaml").read_text())
    assert {k: used[k] for k in keys} == keys
    assert sorted(p.name for p in (tmp_path / "vc").glob("copy*")) == [f"copy{k}" for k in
                                                                       range(1, keys["num_copies"] + 1)]


def test_world_analysis_options_reach_the_converter(converted, tmp_path):
    """frame_period, f0_floor and f0_ceil from the YAML are the ones WORLD analyses with."""
    dump, _ = converted
    conf = vc_yaml(tmp_path / "vc.yaml", "num_copies: 1\nseed: 7\nframe_period: 10.0\nf0_floor: 90.0\n"
                                         "f0_ceil: 400.0\n")
    assert main(["--vc_config", conf, str(dump), str(tmp_path / "vc")]) == 0
    used = yaml.safe_load((tmp_path / "vc" / "vc.yaml").read_text())
    assert (used["frame_period"], used["f0_floor"], used["f0_ceil"]) == (10.0, 90.0, 400.0)
    cfg = load_fbank_config(dump / "fbank.yaml")
    feats = read(tmp_path / "vc" / "copy1")
    wav = dict(line.split() for line in (dump / "wav.scp").read_text().splitlines())
    for utt, path in wav.items():
        f0_scale, warp = draw_conversion(utt, 1, 7)
        x, _ = sf.read(path, dtype="float32")
        expected = compute_fbank(world_voice_conversion(x, SR, f0_scale, warp, frame_period=10.0, f0_floor=90.0,
                                                        f0_ceil=400.0), cfg)
        np.testing.assert_array_equal(feats[utt], expected)
        default = compute_fbank(world_voice_conversion(x, SR, f0_scale, warp), cfg)
        assert not np.allclose(feats[utt], default)  # the options changed the conversion


@pytest.mark.parametrize("text, message", [
    ("num_copies: 1\nframe_perod: 10.0\n", "unknown key 'vc.frame_perod'; valid keys in 'vc': f0_ceil, "),
    ("f0_floor: low\n", "'vc.f0_floor' must be a number, got 'low'"),
    ("num_copies: 0\n", "'vc.num_copies' must be an integer >= 1, got 0"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_bad_vc_config_is_one_line_naming_file_and_key(converted, tmp_path, capsys, text, message):
    dump, _ = converted
    conf = vc_yaml(tmp_path / "vc.yaml", text)
    with pytest.raises(SystemExit) as e:
        run_main(main, ["--vc_config", conf, str(dump), str(tmp_path / "vc")])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"world_vc: error: {conf}: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "vc").exists()
