"""The embedded espeak-ng corpus (egs/mini/cdsvae1/local): shape, determinism, and the TIMIT prep on it."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cdsvae.data.datadir import DataDir
from cdsvae.data.validate import validate_data_dir
from cdsvae.errors import UserError
from cdsvae.features import fbank_from_audio, load_fbank_config

EGS = Path(__file__).resolve().parents[2] / "egs"
LOCAL = EGS / "mini" / "cdsvae1" / "local"
TIMIT_CONF = EGS / "timit" / "cdsvae1" / "conf"

spec = importlib.util.spec_from_file_location("mini_make_corpus", LOCAL / "make_corpus.py")
corpus = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = corpus
spec.loader.exec_module(corpus)

TINY = ["--num_speakers", "4", "--num_sa", "2", "--num_sx", "1", "--num_si", "1", "--sx_pool", "3"]


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
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".WAV", ".TXT")}


def test_tiny_corpus_has_the_timit_shape_and_passes_the_prep(tmp_path):
    """4 speakers x 2 non-SA utterances, through local/data.sh (generator + unchanged TIMIT prep)."""
    args = ["--num_speakers", "4", "--num_sa", "2", "--num_sx", "1", "--num_si", "1", "--nj", "2",
            "--corpus_dir", str(tmp_path / "corpus"), "--data_dir", str(tmp_path / "data")]
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
    assert "without .PHN" in res.stderr
    # The feature stage reads the SPHERE files as they are, and silence is dithered, never digital zero.
    utt = sets["test"].utterances[0]
    cfg = load_fbank_config({})
    feats = fbank_from_audio(sets["test"].wav_scp[utt], cfg, name=utt)
    assert feats.shape[1] == 80 and np.isfinite(feats).all()
    assert feats.min() > np.log(cfg["log_floor"]) + 1


def test_same_corpus_whatever_nj_and_rerun_is_a_no_op(tmp_path):
    small = ["--num_speakers", "3", "--num_sa", "1", "--num_sx", "1", "--num_si", "1", "--sx_pool", "2"]
    assert make(tmp_path / "a", *small, "--nj", "1").returncode == 0
    assert make(tmp_path / "b", *small, "--nj", "2").returncode == 0
    assert digest(tmp_path / "a") == digest(tmp_path / "b") and len(digest(tmp_path / "a")) == 18

    stamp = (tmp_path / "a" / "corpus.json").stat().st_mtime_ns
    res = make(tmp_path / "a", *small, "--nj", "2")
    assert res.returncode == 0 and "up to date" in res.stderr
    assert (tmp_path / "a" / "corpus.json").stat().st_mtime_ns == stamp

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


def test_speaker_plan_for_forty():
    speakers = corpus.plan_speakers(40, seed=0, conf_dir=TIMIT_CONF)
    test_list = set(TIMIT_CONF.joinpath("test_spk.list").read_text().split())
    dev_list = set(TIMIT_CONF.joinpath("dev_spk.list").read_text().split())
    names = [s.spk for s in speakers]
    assert len(set(names)) == 40 and all(len(n) == 5 for n in names)
    assert sum(n in test_list for n in names) == 8 and sum(n in dev_list for n in names) == 8
    assert all(s.part == "TEST" for s in speakers if s.spk in test_list | dev_list)
    assert all(s.part == "TRAIN" for s in speakers if s.spk not in test_list | dev_list)
    assert sum(s.gender == "f" for s in speakers) == 20
    assert all(s.spk[0] == s.gender and 1 <= s.dr <= 8 for s in speakers)
    # Every speaker is a distinct voice; a variant shared by two speakers comes with distinct pitches.
    assert len({(s.variant, s.pitch) for s in speakers}) == 40
    assert all(s.variant in corpus.VARIANTS[s.gender] for s in speakers)
    assert speakers == corpus.plan_speakers(40, seed=0, conf_dir=TIMIT_CONF)
    assert speakers != corpus.plan_speakers(40, seed=1, conf_dir=TIMIT_CONF)
    with pytest.raises(UserError, match="at least 3"):
        corpus.plan_speakers(2, seed=0, conf_dir=TIMIT_CONF)


def test_sentence_design(tmp_path):
    """SA read by all, SX shared from the pool, SI unique to one speaker."""
    args = argparse.Namespace(num_sa=2, num_sx=5, num_si=3, sx_pool=20, seed=0)
    speakers = corpus.plan_speakers(40, seed=0, conf_dir=TIMIT_CONF)
    tasks = corpus.plan_tasks(tmp_path, speakers, args)
    assert len(tasks) == 400
    by_kind: dict[str, list[str]] = {"SA": [], "SX": [], "SI": []}
    for t in tasks:
        by_kind[Path(t.wav).stem[:2]].append(t.text)
    assert len(set(by_kind["SA"])) == 2 and len(by_kind["SA"]) == 80
    assert len(set(by_kind["SX"])) == 20 and all(by_kind["SX"].count(x) == 10 for x in set(by_kind["SX"]))
    assert len(set(by_kind["SI"])) == len(by_kind["SI"]) == 120
    assert not set(by_kind["SI"]) & set(by_kind["SX"])
    per_speaker = {}
    for t in tasks:
        per_speaker.setdefault(Path(t.wav).parent.name, []).append(Path(t.wav).stem)
    assert all(len(set(v)) == len(v) == 10 for v in per_speaker.values())
