"""make_fbank and compute_cmvn_stats on a few utterances: jobs + merge, bad audio, segments, pipes."""

import logging

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from _tools import run_tool
from cdsvae.bin.compute_cmvn_stats import main as cmvn_main
from cdsvae.bin.make_fbank import main
from cdsvae.data.datadir import split_data_dir
from cdsvae.data.feats import CMVNStats
from cdsvae.fbank import compute_fbank, load_fbank_config, num_frames
from cdsvae.io import UserError

SR = 16000


def tone(f0, seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 8))
    return (0.2 * x / np.abs(x).max() + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def make_data_dir(root, n_spk=2, n_utt=2, fmt="NIST"):
    """A tiny Kaldi data dir of synthetic 'speakers' (harmonic tones), SPHERE or WAV files."""
    data = root / "data" / "train"
    data.mkdir(parents=True)
    wav, u2s, waves = [], [], {}
    for s in range(n_spk):
        for u in range(n_utt):
            utt = f"spk{s}-utt{u}"
            x = tone(110 + 60 * s, 0.3 + 0.05 * u, seed=10 * s + u)
            path = root / "audio" / f"{utt}.{'sph' if fmt == 'NIST' else 'wav'}"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, x, SR, format=fmt, subtype="PCM_16")
            waves[utt] = sf.read(path, dtype="float32")[0]
            wav.append(f"{utt} {path}\n")
            u2s.append(f"{utt} spk{s}\n")
    (data / "wav.scp").write_text("".join(wav))
    (data / "utt2spk").write_text("".join(u2s))
    (data / "spk2utt").write_text("".join(f"spk{s} " + " ".join(f"spk{s}-utt{u}" for u in range(n_utt)) + "\n"
                                          for s in range(n_spk)))
    return data, waves


def read_feats(featdir):
    return {k: np.array(v) for k, v in kaldiio.load_scp(str(featdir / "feats.scp")).items()}


def run_cli(module, *args):
    """The tool as its console script runs it, in this process (tests/_tools.py)."""
    return run_tool(module, *args)


def test_single_process_features_and_outputs(tmp_path):
    data, waves = make_data_dir(tmp_path)
    out = tmp_path / "dump" / "train"
    assert main([str(data), str(out)]) == 0
    cfg = load_fbank_config({})
    feats = read_feats(out)
    assert sorted(feats) == sorted(waves)
    for utt, x in waves.items():
        np.testing.assert_array_equal(feats[utt], compute_fbank(x, cfg))
    frames = dict(line.split() for line in (out / "utt2num_frames").read_text().splitlines())
    assert {u: int(n) for u, n in frames.items()} == {u: num_frames(x.size, cfg) for u, x in waves.items()}
    assert (out / "feat_dim").read_text().strip() == "80"
    assert load_fbank_config(out / "fbank.yaml") == cfg
    assert (out / "utt2spk").read_text() == (data / "utt2spk").read_text()
    assert not list(out.glob("**/*.tmp"))


def test_jobs_then_merge_equal_single_run(tmp_path):
    data, _ = make_data_dir(tmp_path, n_spk=3, n_utt=1)
    cfg = tmp_path / "fbank.yaml"
    cfg.write_text("n_mels: 40\n")
    parts = split_data_dir(data, 2)
    for job, part in enumerate(parts, 1):
        assert main(["--config", str(cfg), "--job", str(job), str(part), str(tmp_path / "jobs")]) == 0
    assert main(["--merge", "--nj", "2", str(data), str(tmp_path / "jobs")]) == 0
    main(["--config", str(cfg), str(data), str(tmp_path / "single")])
    a, b = read_feats(tmp_path / "jobs"), read_feats(tmp_path / "single")
    assert sorted(a) == sorted(b) and all(a[k].shape[1] == 40 for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert (tmp_path / "jobs" / "utt2num_frames").read_text() == (tmp_path / "single" / "utt2num_frames").read_text()


def test_merge_with_a_missing_job_names_it(tmp_path):
    data, _ = make_data_dir(tmp_path)
    parts = split_data_dir(data, 2)
    main(["--job", "1", str(parts[0]), str(tmp_path / "f")])
    r = run_cli("make_fbank", "--merge", "--nj", "2", data, tmp_path / "f")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "raw_fbank.2.scp" in r.stderr and "job 2" in r.stderr


def test_bad_audio_fails_or_is_skipped_and_counted(tmp_path, caplog):
    data, waves = make_data_dir(tmp_path)
    victim = tmp_path / "audio" / "spk1-utt0.sph"
    victim.write_bytes(victim.read_bytes()[:-2000])
    (tmp_path / "audio" / "spk0-utt1.sph").unlink()
    r = run_cli("make_fbank", data, tmp_path / "f")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "spk0-utt1.sph" in r.stderr and "not found" in r.stderr
    assert not (tmp_path / "f" / "feats.scp").exists()

    with caplog.at_level(logging.WARNING):
        assert main(["--skip_bad", "true", str(data), str(tmp_path / "f")]) == 0
    assert "skipped 2 of 4" in caplog.text
    feats = read_feats(tmp_path / "f")
    assert sorted(feats) == ["spk0-utt0", "spk1-utt1"]
    bad = (tmp_path / "f" / "bad_utts").read_text()
    assert "spk1-utt0" in bad and "truncated" in bad and "spk0-utt1" in bad
    assert (tmp_path / "f" / "utt2spk").read_text() == "spk0-utt0 spk0\nspk1-utt1 spk1\n"
    assert (tmp_path / "f" / "spk2utt").read_text() == "spk0 spk0-utt0\nspk1 spk1-utt1\n"
    # the audio mended, a rerun skips nothing and leaves no list of skipped utterances behind
    data2, _ = make_data_dir(tmp_path / "good")
    assert main(["--skip_bad", "true", str(data2), str(tmp_path / "f")]) == 0
    assert not (tmp_path / "f" / "bad_utts").exists()


def test_sample_rate_mismatch_names_the_file(tmp_path):
    data, _ = make_data_dir(tmp_path, n_spk=1, n_utt=1, fmt="WAV")
    path = tmp_path / "audio" / "spk0-utt0.wav"
    x, _ = sf.read(path)
    sf.write(path, x, 22050)
    with pytest.raises(UserError, match="22050 Hz.*spk0-utt0.wav"):
        main([str(data), str(tmp_path / "f")])
    (tmp_path / "fb.yaml").write_text("resample: true\n")
    assert main(["--config", str(tmp_path / "fb.yaml"), str(data), str(tmp_path / "f")]) == 0
    n = int((tmp_path / "f" / "utt2num_frames").read_text().split()[1])
    assert n == num_frames(round(x.size * SR / 22050), load_fbank_config({}))


def test_segments_are_cut_from_recordings(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rec = tone(150, 1.0, seed=0)
    sf.write(tmp_path / "rec.wav", rec, SR, subtype="PCM_16")
    rec = sf.read(tmp_path / "rec.wav", dtype="float32")[0]
    (data / "wav.scp").write_text(f"spkA-rec {tmp_path / 'rec.wav'}\n")
    (data / "segments").write_text("spkA-rec-a spkA-rec 0.00 0.40\nspkA-rec-b spkA-rec 0.40 1.00\n")
    (data / "utt2spk").write_text("spkA-rec-a spkA\nspkA-rec-b spkA\n")
    main([str(data), str(tmp_path / "f")])
    feats = read_feats(tmp_path / "f")
    cfg = load_fbank_config({})
    np.testing.assert_array_equal(feats["spkA-rec-a"], compute_fbank(rec[:6400], cfg))
    np.testing.assert_array_equal(feats["spkA-rec-b"], compute_fbank(rec[6400:], cfg))


def test_espeak_pipe_entry_with_resampling(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("spkE-u1 espeak-ng -v en+f3 --stdout 'she had your dark suit' |\n")
    (data / "utt2spk").write_text("spkE-u1 spkE\n")
    (tmp_path / "fb.yaml").write_text("resample: true\n")
    main(["--config", str(tmp_path / "fb.yaml"), str(data), str(tmp_path / "f")])
    feats = read_feats(tmp_path / "f")["spkE-u1"]
    assert feats.shape[0] > 50 and feats.shape[1] == 80 and np.isfinite(feats).all()
    # speech has more energy variation over time than a constant floor
    assert feats.mean(1).std() > 1.0


def test_cmvn_stats_cli(tmp_path):
    data, _ = make_data_dir(tmp_path)
    main([str(data), str(tmp_path / "f")])
    all_frames = np.concatenate(list(read_feats(tmp_path / "f").values())).astype(np.float64)
    assert cmvn_main([str(tmp_path / "f"), str(tmp_path / "cmvn.npz")]) == 0
    assert cmvn_main([str(tmp_path / "f" / "feats.scp"), str(tmp_path / "cmvn.ark")]) == 0
    for name in ("cmvn.npz", "cmvn.ark"):
        stats = CMVNStats.load(tmp_path / name)
        assert stats.count == all_frames.shape[0]
        np.testing.assert_allclose(stats.mean, all_frames.mean(0), rtol=1e-9)
        np.testing.assert_allclose(stats.std, all_frames.std(0), rtol=1e-6)
    r = run_cli("compute_cmvn_stats", tmp_path / "nope", tmp_path / "x.npz")
    assert r.returncode == 1 and "nope" in r.stderr and "Traceback" not in r.stderr


def test_help(capsys):
    for entry in (main, cmvn_main):
        with pytest.raises(SystemExit) as e:
            entry(["--help"])
        assert e.value.code == 0 and "usage" in capsys.readouterr().out
