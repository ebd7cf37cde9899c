"""VCTK stage 1 (egs/vctk/cdsvae1/local) on fake trees of the 0.92 and 0.80 layouts."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

import sentencepiece as spm

from cdsvae.data.units import normalise
from cdsvae.data.datadir import DataDir
from cdsvae.data.validate import validate_data_dir
from cdsvae.fbank import fbank_from_audio, load_fbank_config, num_frames

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "vctk" / "cdsvae1"
DATA_SH = RECIPE / "local" / "data.sh"
RATE = 48000

spec = importlib.util.spec_from_file_location("vctk_make_speaker_lists", RECIPE / "local" / "make_speaker_lists.py")
lists = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = lists
spec.loader.exec_module(lists)


def read_list(name: str) -> list[str]:
    return (RECIPE / "conf" / f"{name}_spk.list").read_text().split()


# One speaker from each committed list (the train speaker's 4th utterance has no transcript),
# p315 (audio, no transcripts; on no list) and s5 (on no list).
TRAIN_SPK, DEV_SPK, TEST_SPK = read_list("train")[0], read_list("dev")[0], read_list("test")[0]
SPEAKERS = {TRAIN_SPK: [4800, 5000, 5200, 3000], DEV_SPK: [4000, 4100], TEST_SPK: [6000, 6100],
            "p315": [4000], "s5": [4000]}
KEPT = {TRAIN_SPK: 3, DEV_SPK: 2, TEST_SPK: 2}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e['PATH']}"
    e["OMP_NUM_THREADS"] = "1"
    return e


def make_tree(root: Path, release: str) -> Path:
    for i, (spk, lengths) in enumerate(SPEAKERS.items()):
        audio_dir = root / ("wav48_silence_trimmed" if release == "0.92" else "wav48") / spk
        audio_dir.mkdir(parents=True)
        (root / "txt" / spk).mkdir(parents=True)
        for j, n in enumerate(lengths, 1):
            utt = f"{spk}_{j:03d}"
            rng = np.random.default_rng(100 * i + j)
            if release == "0.92":
                sf.write(audio_dir / f"{utt}_mic1.flac", rng.normal(0, 0.1, n), RATE, format="FLAC")
                sf.write(audio_dir / f"{utt}_mic2.flac", rng.normal(0, 0.1, n + 480), RATE, format="FLAC")
            else:
                sf.write(audio_dir / f"{utt}.wav", rng.normal(0, 0.1, n), RATE, subtype="PCM_16")
            if spk != "p315" and not (spk == TRAIN_SPK and j == 4):
                (root / "txt" / spk / f"{utt}.txt").write_text(f"Please call {spk} number {j}.\n")
    info = ["ID  AGE  GENDER  ACCENTS  REGION COMMENTS"]
    info += [f"{spk}  23  {'F' if i % 2 else 'M'}    English    Southern  England" for i, spk in enumerate(SPEAKERS)]
    (root / "speaker-info.txt").write_text("\n".join(info) + "\n")
    return root


def run_data_sh(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """local/data.sh; the fake transcripts are too few for VCTK's 300 pieces, so 20 unless asked."""
    if "--bpe_vocab_size" not in args:
        args = (*args, "--bpe_vocab_size", "20")
    return subprocess.run(["bash", str(DATA_SH), *args], cwd=cwd, env=env(), capture_output=True, text=True)


@pytest.mark.parametrize("release, mic, extra", [("0.92", "mic1", 0), ("0.92", "mic2", 480), ("0.80", "mic1", 0)])
def test_layouts_and_speaker_split(tmp_path, release, mic, extra):
    root = make_tree(tmp_path / "vctk", release)
    res = run_data_sh(tmp_path, "--vctk_root", str(root), "--mic", mic)
    assert res.returncode == 0, res.stderr
    sets = {name: DataDir.load(tmp_path / "data" / name) for name in ("train", "dev", "test")}
    for name, spk in (("train", TRAIN_SPK), ("dev", DEV_SPK), ("test", TEST_SPK)):
        d = sets[name]
        assert d.speakers == [spk]
        assert d.utterances == [f"{spk}_{j:03d}" for j in range(1, KEPT[spk] + 1)]
        assert validate_data_dir(d.path) == []
        for j, utt in enumerate(d.utterances):
            assert d.utt2dur[utt] == pytest.approx((SPEAKERS[spk][j] + extra) / RATE, abs=1e-7)
            assert d.text[utt] == f"Please call {spk} number {j + 1}."
            assert d.wav_scp[utt].endswith(f"{utt}_{mic}.flac" if release == "0.92" else f"{utt}.wav")
            assert sf.info(d.wav_scp[utt]).frames == SPEAKERS[spk][j] + extra
    assert f"skipped 1 utterance(s) of listed speakers: no transcript: 1 ({TRAIN_SPK}_004)" in res.stderr
    assert "speakers on no list (unused): 2 (p315 s5)" in res.stderr


@pytest.mark.parametrize("release, mic", [("0.92", "mic1"), ("0.92", "mic2"), ("0.80", "mic1")])
def test_each_skipped_utterance_is_counted_under_its_own_reason(tmp_path, release, mic):
    """An utterance without audio of the chosen microphone (the other microphone's file or the
    transcript alone) is 'no <mic> audio', not 'no transcript'; each reason is counted for itself."""
    root = make_tree(tmp_path / "vctk", release)
    if release == "0.92":
        (root / "wav48_silence_trimmed" / DEV_SPK / f"{DEV_SPK}_002_{mic}.flac").unlink()
        other = "mic2" if mic == "mic1" else "mic1"
        (root / "wav48_silence_trimmed" / TEST_SPK / f"{TEST_SPK}_002_{other}.flac").unlink()  # not used: no effect
        no_audio = f"no {mic} audio"
    else:
        (root / "wav48" / DEV_SPK / f"{DEV_SPK}_002.wav").unlink()
        no_audio = "no audio"
    (root / "txt" / TEST_SPK / f"{TEST_SPK}_003.txt").write_text("A transcript without any audio.\n")
    res = run_data_sh(tmp_path, "--vctk_root", str(root), "--mic", mic)
    assert res.returncode == 0, res.stderr
    no_audio_utts = " ".join(sorted([f"{DEV_SPK}_002", f"{TEST_SPK}_003"]))
    assert (f"skipped 3 utterance(s) of listed speakers: {no_audio}: 2 ({no_audio_utts}); "
            f"no transcript: 1 ({TRAIN_SPK}_004)\n") in res.stderr
    assert "without transcript" not in res.stderr
    assert DataDir.load(tmp_path / "data" / "dev").utterances == [f"{DEV_SPK}_001"]
    assert DataDir.load(tmp_path / "data" / "test").utterances == [f"{TEST_SPK}_001", f"{TEST_SPK}_002"]


@pytest.mark.parametrize("make_root", [
    lambda p: p / "nowhere",
    lambda p: (p / "empty").mkdir() or p / "empty",
    lambda p: (p / "notxt" / "wav48").mkdir(parents=True) or p / "notxt",
])
def test_missing_or_wrong_root_is_one_line(tmp_path, make_root):
    root = make_root(tmp_path)
    res = run_data_sh(tmp_path, "--vctk_root", str(root))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and f"VCTK={root}" in errors[0]
    assert ("expected wav48_silence_trimmed/pNNN/pNNN_MMM_mic1.flac (0.92) or wav48/pNNN/pNNN_MMM.wav (0.80)"
            in errors[0])


def test_undecodable_audio_is_named_or_skipped(tmp_path):
    root = make_tree(tmp_path / "vctk", "0.92")
    bad = root / "wav48_silence_trimmed" / DEV_SPK / f"{DEV_SPK}_002_mic1.flac"
    bad.write_bytes(b"fLaC" + bytes(10))
    res = run_data_sh(tmp_path, "--vctk_root", str(root))
    assert res.returncode == 1 and f"{bad}: cannot decode" in res.stderr and "Traceback" not in res.stderr
    res = run_data_sh(tmp_path, "--vctk_root", str(root), "--skip_bad", "true")
    assert res.returncode == 0, res.stderr
    assert (f"skipped 2 utterance(s) of listed speakers: no transcript: 1 ({TRAIN_SPK}_004); "
            f"unreadable audio: 1 ({DEV_SPK}_002)") in res.stderr
    assert DataDir.load(tmp_path / "data" / "dev").utterances == [f"{DEV_SPK}_001"]


def test_committed_lists_are_disjoint_and_sized():
    split = {name: read_list(name) for name in ("train", "dev", "test")}
    assert [len(split[n]) for n in ("train", "dev", "test")] == [88, 8, 12]
    everyone = split["train"] + split["dev"] + split["test"]
    assert len(set(everyone)) == 108 and "p315" not in everyone
    assert all(s.startswith("p") and s[1:].isdigit() for s in everyone)


def test_split_rule_on_a_small_speaker_info(tmp_path):
    """Known answer: 10 F and 6 M, 2 test and 1 dev per gender at evenly spaced positions."""
    rows = [f"{i}  22  {'F' if i < 110 else 'M'}  English  Somewhere" for i in range(100, 116)]
    info = tmp_path / "speaker-info.txt"
    info.write_text("ID  AGE  GENDER  ACCENTS  REGION\n" + "\n".join(rows) + "\n")
    genders = lists.read_speaker_info(info)
    assert genders["p100"] == "F" and genders["p115"] == "M" and len(genders) == 16
    split = lists.split_speakers(genders, num_test=2, num_dev=1, exclude={"p101"})
    # F pool (9, p101 excluded): test at 2, 6 -> p103, p107; the other 7: dev at 3 -> p105.
    # M pool (6): test at 1, 4 -> p111, p114; the other 4: dev at 2 -> p113.
    assert split["test"] == ["p103", "p107", "p111", "p114"]
    assert split["dev"] == ["p105", "p113"]
    assert split["train"] == ["p100", "p102", "p104", "p106", "p108", "p109", "p110", "p112", "p115"]


def test_fbank_conf_resamples_48k_audio_to_16k(tmp_path):
    conf = yaml.safe_load((RECIPE / "conf" / "fbank.yaml").read_text())
    assert conf == {"sample_rate": 16000, "n_mels": 80, "frame_length_ms": 25, "frame_shift_ms": 10, "resample": True}
    cfg = load_fbank_config(RECIPE / "conf" / "fbank.yaml")
    root = make_tree(tmp_path / "vctk", "0.92")
    assert run_data_sh(tmp_path, "--vctk_root", str(root)).returncode == 0
    d = DataDir.load(tmp_path / "data" / "test")
    utt = d.utterances[0]
    feats = fbank_from_audio(d.wav_scp[utt], cfg, name=utt)
    assert feats.shape == (num_frames(SPEAKERS[TEST_SPK][0] // 3, cfg), 80) and np.isfinite(feats).all()


def test_units_decode_to_the_normalised_text_and_are_deterministic(tmp_path):
    root = make_tree(tmp_path / "vctk", "0.92")
    (root / "txt" / TRAIN_SPK / f"{TRAIN_SPK}_002.txt").write_text("  \"Don't\"  call  me,   Stella!\n")
    res = run_data_sh(tmp_path, "--vctk_root", str(root), "--bpe_vocab_size", "24")
    assert res.returncode == 0, res.stderr
    model_dir = tmp_path / "data" / "token_unigram24"
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "spm.model"))
    assert sp.get_piece_size() == 24
    train_chars = "".join(normalise(t, lowercase=True, strip_punct=True)
                          for t in DataDir.load(tmp_path / "data" / "train").text.values())
    for name in ("train", "dev", "test"):
        d = DataDir.load(tmp_path / "data" / name)
        assert validate_data_dir(d.path) == []
        assert sorted(d.tables["units"]) == d.utterances
        for utt, text in d.text.items():
            pieces = d.tables["units"][utt].split(" ")
            normalised = normalise(text, lowercase=True, strip_punct=True)
            assert all(pieces)
            if "<unk>" in pieces:  # a character (a digit of another speaker's id) not in the training text
                assert name != "train" and not set(normalised) <= set(train_chars)
            else:
                assert sp.decode(pieces) == normalised
    assert DataDir.load(tmp_path / "data" / "train").tables["units"][f"{TRAIN_SPK}_002"].replace(" ", "") == \
        "▁don't▁call▁me▁stella"

    # up to date: the model and the units are kept as they are
    files = sorted(p for p in (tmp_path / "data").rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    res = run_data_sh(tmp_path, "--vctk_root", str(root), "--bpe_vocab_size", "24")
    assert res.returncode == 0 and "token_unigram24: up to date" in res.stderr, res.stderr
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before

    # the same corpus and options elsewhere: the same model and units, byte for byte
    res = subprocess.run(["bash", str(DATA_SH), "--vctk_root", str(root), "--bpe_vocab_size", "24",
                          "--data_dir", str(tmp_path / "again")], cwd=tmp_path, env=env(),
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for rel in ("token_unigram24/spm.model", "token_unigram24/spm.vocab", "train/units", "dev/units", "test/units"):
        assert (tmp_path / "again" / rel).read_bytes() == (tmp_path / "data" / rel).read_bytes(), rel

    # a changed transcript retrains the model; too many pieces for the text is a one-line error
    (root / "txt" / TRAIN_SPK / f"{TRAIN_SPK}_001.txt").write_text("Please call number one.\n")
    res = run_data_sh(tmp_path, "--vctk_root", str(root), "--bpe_vocab_size", "24")
    assert res.returncode == 0 and "token_unigram24: trained" in res.stderr, res.stderr
    res = run_data_sh(tmp_path, "--vctk_root", str(root), "--bpe_vocab_size", "5000")
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert res.returncode == 1 and "Traceback" not in res.stderr and len(errors) == 1
    assert "data/train/text: sentencepiece cannot train a unigram model of --vocab_size 5000" in errors[0]


def run_make_lists(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPE / "local" / "make_speaker_lists.py"), *args], env=env(),
                          capture_output=True, text=True)


def test_too_few_speakers_for_a_set_names_the_set_the_gender_and_the_file(tmp_path):
    """The fake tree's speaker-info.txt (5 speakers, 2 F and 3 M; p315 excluded and s5 not pNNN leave
    1 F and 2 M) cannot give the fixed split's 6 test and 4 dev speakers per gender: one line says
    which set, which gender, and what the file held."""
    root = make_tree(tmp_path / "vctk", "0.92")
    info = root / "speaker-info.txt"
    res = run_make_lists(str(info), str(tmp_path / "lists"))
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 1 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    assert errors[0] == (f"make_speaker_lists: error: {info}: the test set needs 6 F speakers (--num_test 6 per "
                         f"gender), but only 1 are usable: usable speakers (pNNN, not excluded): 1 F, 2 M; the file "
                         f"lists 5 speakers (2 F, 3 M), excluded: p315; lower --num_test and --num_dev")
    res = run_make_lists(str(info), str(tmp_path / "lists"), "--num_test", "1", "--num_dev", "1")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert ("the dev set needs 1 F speakers (--num_dev 1 per gender), but only 0 are left after the test set"
            in res.stderr)
    assert not (tmp_path / "lists").exists()


def test_a_corpus_with_under_half_of_a_list_says_so_and_how_to_split_it(tmp_path):
    """A partial copy (one speaker of each committed list) is said to be one, with the commands that
    split its own speakers; run as printed, they give a split over the corpus and no warning."""
    root = make_tree(tmp_path / "vctk", "0.92")
    extra = {"p9001": "F", "p9002": "M", "p9003": "F", "p9004": "M"}
    for spk in extra:
        (root / "wav48_silence_trimmed" / spk).mkdir()
        (root / "txt" / spk).mkdir()
        for j in (1, 2):
            sf.write(root / "wav48_silence_trimmed" / spk / f"{spk}_{j:03d}_mic1.flac", np.zeros(4800), RATE,
                     format="FLAC")
            (root / "txt" / spk / f"{spk}_{j:03d}.txt").write_text(f"Number {j}.\n")
    with open(root / "speaker-info.txt", "a") as f:
        f.writelines(f"{spk[1:]}  30  {g}    Scottish  Fife\n" for spk, g in extra.items())  # 0.80's plain numbers
    res = run_data_sh(tmp_path, "--vctk_root", str(root))
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("warning:"))
    n = {name: len(read_list(name)) for name in ("train", "dev", "test")}
    assert lines[at] == (f"warning: this corpus holds under half of the speaker lists of "
                         f"{RECIPE / 'conf'}/ (train: 1 of {n['train']}, dev: 1 of "
                         f"{n['dev']}, test: 1 of {n['test']} listed speakers present): the split is not the "
                         f"recipe's, and its results do not compare with runs on the whole of VCTK")
    command = lines[at + 1].split(": ", 1)[1]
    assert lines[at + 1].startswith("  to split the 7 speakers this corpus has: ")  # p315 and s5 left out
    assert command == (f"{RECIPE / 'local' / 'make_speaker_lists.py'} "
                       f"{root / 'speaker-info.txt'} conf/my_split --vctk_root {root} --num_test 1 --num_dev 1")
    assert lines[at + 2] == '  then rerun stage 1 with: --local_data_opts "--spk_list_dir conf/my_split"'

    res = subprocess.run([sys.executable, *command.split()], cwd=tmp_path, env=env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = run_data_sh(tmp_path, "--vctk_root", str(root), "--spk_list_dir", "conf/my_split")
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr
    split = {name: DataDir.load(tmp_path / "data" / name).speakers for name in ("train", "dev", "test")}
    assert sorted(sum(split.values(), [])) == sorted([TRAIN_SPK, DEV_SPK, TEST_SPK, *extra])
    assert [len(split[name]) for name in ("train", "dev", "test")] == [3, 2, 2]


def test_features_and_cmvn_of_a_small_set_leave_no_empty_progress_bar(tmp_path):
    """A job prints its result line, never a tqdm fragment of a bar drawn as it starts, such as
    'cmvn: 0utt [00:00, ?utt/s]'. (A bar may still appear once a job has run for seconds, as on a
    loaded machine; it then shows progress, never zero at 00:00.)"""
    root = make_tree(tmp_path / "vctk", "0.92")
    assert run_data_sh(tmp_path, "--vctk_root", str(root)).returncode == 0
    feats = tmp_path / "dump" / "train"
    for cmd in (["make_fbank", "--config", str(RECIPE / "conf" / "fbank.yaml"), "data/train", str(feats)],
                ["compute_cmvn_stats", str(feats / "feats.scp"), str(feats / "cmvn.npz")]):
        res = subprocess.run([sys.executable, "-m", f"cdsvae.bin.{cmd[0]}", *cmd[1:]], cwd=tmp_path, env=env(),
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        lines = res.stderr.replace("\r", "\n").splitlines()
        assert not [ln for ln in lines if re.search(r"(\b0(utt|it)| 0/\d+) \[00:00", ln)], res.stderr
    assert lines[-1] == f"compute_cmvn_stats: {feats / 'cmvn.npz'}: {sum(num_frames_of(feats))} frames, dim 80"


def num_frames_of(feats: Path) -> list[int]:
    return [int(line.split()[1]) for line in (feats / "utt2num_frames").read_text().splitlines()]
