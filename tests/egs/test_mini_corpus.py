"""The embedded espeak-ng corpus (egs/mini/cdsvae1/local): shape, determinism, and the TIMIT prep on it."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cdsvae.data.datadir import DataDir
from cdsvae.data.validate import validate_data_dir
from cdsvae.fbank import fbank_from_audio, load_fbank_config
from cdsvae.io import UserError

EGS = Path(__file__).resolve().parents[2] / "egs"
LOCAL = EGS / "mini" / "cdsvae1" / "local"
TIMIT_CONF = EGS / "timit" / "cdsvae1" / "conf"

spec = importlib.util.spec_from_file_location("mini_make_corpus", LOCAL / "make_corpus.py")
corpus = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = corpus
spec.loader.exec_module(corpus)

TINY = ["--num_train_speakers", "2", "--num_dev_speakers", "1", "--num_test_speakers", "1", "--num_sa", "2",
        "--num_sx", "1", "--num_si", "1", "--test_num_sx", "1", "--test_num_si", "1", "--sx_pool", "3"]


def env(path: str | None = None) -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = path if path is not None else f"{Path(sys.executable).parent}{os.pathsep}{e['PATH']}"
    e["OMP_NUM_THREADS"] = "1"
    return e


def make(out: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LOCAL / "make_corpus.py"), *args, str(out)],
                          env=env(path), capture_output=True, text=True)


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".WAV", ".TXT", ".PHONES")}


def test_tiny_corpus_has_the_timit_shape_and_passes_the_prep(tmp_path):
    """4 speakers x 2 non-SA utterances, through local/data.sh (generator + unchanged TIMIT prep)."""
    args = ["--num_train_speakers", "2", "--num_dev_speakers", "1", "--num_test_speakers", "1", "--num_sa", "2",
            "--num_sx", "1", "--num_si", "1", "--test_num_sx", "1", "--test_num_si", "1", "--nj", "2",
            "--corpus_dir", str(tmp_path / "corpus"), "--data_dir", str(tmp_path / "data"), "--train_subsets", "1"]
    res = subprocess.run(["bash", str(LOCAL / "data.sh"), *args], cwd=tmp_path, env=env(),
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    root = tmp_path / "corpus"
    record = json.loads((root / "corpus.json").read_text())
    assert record["complete"] and len(record["speakers"]) == 4
    wavs = sorted(root.glob("*/DR*/*/*.WAV"))
    assert len(wavs) == 16
    for wav in wavs:
        assert wav.parent.parent.parent.name in ("TRAIN", "TEST") and wav.parent.name.isupper()
        assert wav.read_bytes().startswith(b"NIST_1A\n   1024\n")
        audio, rate = sf.read(wav, dtype="int16")
        assert rate == 16000 and len(audio) > 16000 // 2
        begin, end, text = wav.with_suffix(".TXT").read_text().rstrip("\n").split(" ", 2)
        assert (begin, int(end)) == ("0", len(audio)) and text.endswith((".", "?"))
    sa = {w.with_suffix(".TXT").read_text().split(" ", 2)[2] for w in wavs if w.stem == "SA1"}
    assert len(sa) == 1

    test_list = set(TIMIT_CONF.joinpath("test_spk.list").read_text().split())
    dev_list = set(TIMIT_CONF.joinpath("dev_spk.list").read_text().split())
    sets = {name: DataDir.load(tmp_path / "data" / name) for name in ("train", "dev", "test")}
    assert len(sets["train"].speakers) == 2 and len(sets["dev"].speakers) == 1 and len(sets["test"].speakers) == 1
    assert set(sets["test"].speakers) <= test_list and set(sets["dev"].speakers) <= dev_list
    for d in sets.values():
        assert validate_data_dir(d.path) == []
        assert all(len(utts) == 2 for utts in d.spk2utt.values())
        assert not any("_sa" in u for u in d.utterances)
    assert "without .PHN" in res.stderr and "without units" not in res.stderr
    # units: the .PHONES of every utterance, through the TIMIT prep
    for name, d in sets.items():
        assert sorted(d.tables["units"]) == d.utterances, name
        for utt, units in d.tables["units"].items():
            spk, stem = utt.split("_")
            phones_file = next(root.glob(f"*/DR*/{spk.upper()}/{stem.upper()}.PHONES"))
            assert units == phones_file.read_text().rstrip("\n")
    assert "4 with units from .PHONES" in res.stderr and "2 with units from .PHONES" in res.stderr
    # --train_subsets 1: one of the training speakers, all of their utterances
    subset = DataDir.load(tmp_path / "data" / "train_spk1")
    assert len(subset.speakers) == 1 and set(subset.speakers) <= set(sets["train"].speakers)
    assert subset.utterances == sets["train"].spk2utt[subset.speakers[0]]
    assert validate_data_dir(subset.path) == []
    # The feature stage reads the SPHERE files as they are, and silence is dithered, never digital zero.
    utt = sets["test"].utterances[0]
    cfg = load_fbank_config({})
    feats = fbank_from_audio(sets["test"].wav_scp[utt], cfg, name=utt)
    assert feats.shape[1] == 80 and np.isfinite(feats).all()
    assert feats.min() > np.log(cfg["log_floor"]) + 1


def test_same_corpus_whatever_nj_and_rerun_is_a_no_op(tmp_path):
    small = ["--num_train_speakers", "1", "--num_dev_speakers", "1", "--num_test_speakers", "1", "--num_sa", "1",
             "--num_sx", "1", "--num_si", "1", "--test_num_sx", "1", "--test_num_si", "1", "--sx_pool", "2"]
    assert make(tmp_path / "a", *small, "--nj", "1").returncode == 0
    assert make(tmp_path / "b", *small, "--nj", "2").returncode == 0
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and len(digest(tmp_path / "a")) == 27

    stamp = (tmp_path / "a" / "corpus.json").stat().st_mtime_ns
    res = make(tmp_path / "a", *small, "--nj", "2")
    assert res.returncode == 0 and "up to date" in res.stderr
    assert (tmp_path / "a" / "corpus.json").stat().st_mtime_ns == stamp

    # A corpus made with the same options by a generator that planned other voices is rebuilt.
    record = json.loads((tmp_path / "a" / "corpus.json").read_text())
    record["speakers"][0]["pitch"] += 1
    (tmp_path / "a" / "corpus.json").write_text(json.dumps(record))
    res = make(tmp_path / "a", *small, "--nj", "2")
    assert res.returncode == 0 and "other voices): rebuilding" in res.stderr and "up to date" not in res.stderr
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert json.loads((tmp_path / "a" / "corpus.json").read_text())["speakers"][0]["pitch"] == \
        record["speakers"][0]["pitch"] - 1

    res = make(tmp_path / "a", *small, "--seed", "1")
    assert res.returncode == 0 and "up to date" not in res.stderr
    assert digest(tmp_path / "a") != digest(tmp_path / "b")


def test_refuses_a_foreign_folder_and_needs_espeak(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    res = make(tmp_path / "mine", *TINY)
    assert res.returncode == 1 and "has no corpus.json" in res.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"

    res = make(tmp_path / "new", *TINY, path=str(tmp_path))
    assert res.returncode == 1 and "espeak-ng not found on PATH" in res.stderr and "Traceback" not in res.stderr


def test_speaker_plan_for_the_default_sizes():
    speakers = corpus.plan_speakers(24, 8, 16, seed=0, conf_dir=TIMIT_CONF)
    test_list = set(TIMIT_CONF.joinpath("test_spk.list").read_text().split())
    dev_list = set(TIMIT_CONF.joinpath("dev_spk.list").read_text().split())
    names = [s.spk for s in speakers]
    assert len(set(names)) == 48 and all(len(n) == 5 for n in names)
    assert sum(n in test_list for n in names) == 16 and sum(n in dev_list for n in names) == 8
    assert {s.role for s in speakers if s.spk in test_list} == {"test"}
    assert {s.role for s in speakers if s.spk in dev_list} == {"dev"}
    assert all(s.part == "TEST" for s in speakers if s.spk in test_list | dev_list)
    assert all(s.part == "TRAIN" and s.role == "train" for s in speakers if s.spk not in test_list | dev_list)
    assert sum(s.gender == "f" for s in speakers) == 24
    assert all(s.spk[0] == s.gender and 1 <= s.dr <= 8 for s in speakers)
    # Every speaker is a distinct voice, and no two test speakers share a base variant or its family;
    # training and dev speakers that share a variant get pitches in different halves of the range.
    assert len({(s.variant, s.pitch, s.formant_scale) for s in speakers}) == 48
    others = [s for s in speakers if s.role != "test"]
    assert len({(s.variant, s.pitch) for s in others}) == len(others)
    test_variants = [s.variant for s in speakers if s.role == "test"]
    assert len(set(test_variants)) == 16 and len({corpus.variant_family(v) for v in test_variants}) == 16
    assert corpus.families_first(["klatt", "m1", "klatt2", "m2", "croak"]) == ["klatt", "m1", "croak", "klatt2", "m2"]
    assert all(s.variant in corpus.VARIANTS[s.gender] for s in speakers)
    assert all(corpus.FORMANT_SCALE[0] <= s.formant_scale <= corpus.FORMANT_SCALE[1] for s in speakers)
    assert len({s.formant_scale for s in speakers}) > 40
    assert speakers == corpus.plan_speakers(24, 8, 16, seed=0, conf_dir=TIMIT_CONF)
    assert speakers != corpus.plan_speakers(24, 8, 16, seed=1, conf_dir=TIMIT_CONF)
    with pytest.raises(UserError, match="at least one speaker"):
        corpus.plan_speakers(0, 1, 1, seed=0, conf_dir=TIMIT_CONF)
    with pytest.raises(UserError, match="core-test|test list has only 24"):
        corpus.plan_speakers(4, 1, 25, seed=0, conf_dir=TIMIT_CONF)


def test_variant_file_scales_every_formant_frequency():
    spk = corpus.Speaker("mxaa0", "m", "TRAIN", 1, "m3", 40, 160, 1, 1.1, "train")
    base = "language variant\nname male3\ngender male\n\npitch 80 122\nformant 1  96  97 100\nformant 6 90 80 70\n"
    text = corpus.variant_text(base, spk)
    lines = text.splitlines()
    assert "name cdsvae_mxaa0" in lines and "pitch 80 122" in lines and "gender male" in lines
    assert "formant 1 106 97 100" in lines  # 96 * 1.1
    assert "formant 2 110 100 100" in lines  # absent from the base: 100 * 1.1
    assert "formant 6 90 80 70" in lines and "formant 0 100 100 100" in lines  # outside 1..5: as in the base
    assert sum(line.startswith("formant ") for line in lines) == 9


def test_every_speaker_voice_is_found_by_espeak(tmp_path):
    """espeak-ng falls back silently to its default voice for a variant it cannot find: each
    speaker's own voice must sound different from that fallback and from the others."""
    speakers = corpus.plan_speakers(3, 1, 2, seed=0, conf_dir=TIMIT_CONF)
    root = corpus.write_voices(tmp_path, speakers)

    def say(variant):
        proc = subprocess.run(["espeak-ng", f"--path={root}", "-v", f"en-us+{variant}", "--stdout", "a quiet garden"],
                              capture_output=True, check=True)
        assert not proc.stderr, proc.stderr
        return hashlib.sha256(proc.stdout).hexdigest()

    fallback = say("no_such_voice")
    voices = [say(s.voice) for s in speakers]
    assert fallback not in voices and len(set(voices)) == len(speakers)


def test_sentence_design(tmp_path):
    """SA read by all, SX shared from the pool, SI unique to one speaker; test speakers read more."""
    args = argparse.Namespace(num_sa=2, num_sx=5, num_si=3, test_num_sx=10, test_num_si=10, sx_pool=20, seed=0)
    speakers = corpus.plan_speakers(24, 8, 16, seed=0, conf_dir=TIMIT_CONF)
    tasks = corpus.plan_tasks(tmp_path, speakers, args, tmp_path / "espeak")
    assert len(tasks) == 32 * 10 + 16 * 22
    by_kind: dict[str, list[str]] = {"SA": [], "SX": [], "SI": []}
    for t in tasks:
        by_kind[Path(t.wav).stem[:2]].append(t.text)
    assert len(set(by_kind["SA"])) == 2 and len(by_kind["SA"]) == 96
    assert len(set(by_kind["SX"])) == 20 and len(by_kind["SX"]) == 32 * 5 + 16 * 10
    assert all(by_kind["SX"].count(x) == 16 for x in set(by_kind["SX"]))  # dealt evenly from the pool
    assert len(set(by_kind["SI"])) == len(by_kind["SI"]) == 32 * 3 + 16 * 10
    assert not set(by_kind["SI"]) & set(by_kind["SX"])
    per_speaker = {}
    for t in tasks:
        per_speaker.setdefault(Path(t.wav).parent.name.lower(), []).append(Path(t.wav).stem)
    role = {s.spk: s.role for s in speakers}
    assert all(len(set(v)) == len(v) == (22 if role[spk] == "test" else 10) for spk, v in per_speaker.items())
    assert all(t.variant == f"cdsvae_{Path(t.wav).parent.name.lower()}" for t in tasks)


PHONEME = re.compile(r"[A-Za-z0-9@][A-Za-z0-9@#:/!*&^~<>-]*")


def test_phones_files_are_clean_and_the_same_for_a_sentence(tmp_path):
    assert make(tmp_path / "a", *TINY, "--nj", "2").returncode == 0
    by_sentence: dict[str, set[str]] = {}
    files = sorted((tmp_path / "a").glob("*/DR*/*/*.PHONES"))
    assert len(files) == 16
    for f in files:
        content = f.read_text()
        assert content.endswith("\n") and content.count("\n") == 1
        units = content.rstrip("\n").split(" ")
        assert len(units) > 5 and all(PHONEME.fullmatch(u) for u in units), content
        assert not any(c in content for c in "',%=;_|")  # no stress, linking, pause or boundary marks
        text = f.with_suffix(".TXT").read_text().split(" ", 2)[2].strip()
        by_sentence.setdefault(text, set()).add(content)
    # SA sentences are read by all four speakers (different voices), with the same phonemes
    assert all(len(v) == 1 for v in by_sentence.values())
    assert len(by_sentence) < len(files)
    sa1 = (tmp_path / "a" / "TRAIN" / "DR1" / "FXAA0" / "SA1.PHONES").read_text()
    assert sa1.startswith("a# k w aI@ t g A@ d @ n ")  # "A quiet garden": espeak-ng's en-us mnemonics
    assert {f.read_text() for f in files if f.stem == "SA1"} == {sa1}


def test_phoneme_rule_and_failing_espeak(tmp_path, monkeypatch):
    raw = "D I2 ;  'oU l d  r 'eI d I2 ; ,oU _: _:  a n d  ||  w '3: l d%\nh @ l 'oU\n"
    assert corpus.phoneme_units(raw) == ["D", "I2", "oU", "l", "d", "r", "eI", "d", "I2", "oU", "a", "n", "d",
                                         "w", "3:", "l", "d", "h", "@", "l", "oU"]
    with pytest.raises(ValueError, match="unexpected token"):
        corpus.phoneme_units("h @ (en) l oU")
    assert corpus.phonemize("The bright kite drifted.", str(corpus.espeak_data_dir().parent)) == "D @2 b r aI t k aI t d r I f t I# d"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "espeak-ng").write_text("#!/bin/sh\necho 'cannot open\n the voice' >&2\nexit 1\n")
    (fake / "espeak-ng").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(UserError) as e:
        corpus.phonemize("A loud voice.", "/data")
    assert "\n" not in str(e.value) and "sentence 'A loud voice.'" in str(e.value)
    assert str(e.value).endswith("exit status 1, no phonemes: cannot open the voice")
