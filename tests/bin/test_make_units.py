"""cdsvae.bin.make_units: normalisation, pieces that decode back, the up-to-date stamp, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from cdsvae.bin.make_units import main
from cdsvae.data.units import normalise
from cdsvae.io import UserError

WORDS = "please call stella ask her to bring these things with her from the store six spoons of fresh snow peas".split()


def _dir(path: Path, lines: list[str]) -> Path:
    path.mkdir(parents=True)
    (path / "text").write_text("".join(line + "\n" for line in lines))
    return path


def _train(tmp_path: Path) -> Path:
    return _dir(tmp_path / "train", [f"s1-{i:03d} " + " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(6)).capitalize()
                                     + "." for i in range(40)])


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cdsvae.bin.make_units", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_normalise():
    assert normalise("  Don't  call\tme,  \"Stella\"!  ") == "Don't call me, \"Stella\"!"
    assert normalise("Don't call me, \"Stella\"! -- 'Bye' rock'n'roll", lowercase=True, strip_punct=True) == \
        "don't call me stella bye rock'n'roll"
    assert normalise("...", strip_punct=True) == ""


def test_units_decode_back_and_model_is_kept_when_up_to_date(tmp_path):
    train = _train(tmp_path)
    dev = _dir(tmp_path / "dev", ["s2-001 Bring SIX spoons!", "s2-002 ...", "s2-003 fresh zebra"])
    model = tmp_path / "tok"
    args = ["--train_text", str(train / "text"), "--model_dir", str(model), "--vocab_size", "40",
            "--lowercase", "true", "--strip_punct", "true", str(train), str(dev)]
    assert main(args) == 0
    sp = spm.SentencePieceProcessor(model_file=str(model / "spm.model"))
    assert sp.get_piece_size() == 40 and len((model / "spm.vocab").read_text().splitlines()) == 40
    lines = (train / "units").read_text().splitlines()
    assert [line.split()[0] for line in lines] == [f"s1-{i:03d}" for i in range(40)]
    for line, text in zip(lines, (train / "text").read_text().splitlines()):
        pieces = line.split(" ")[1:]
        assert pieces and all(pieces) and "<unk>" not in pieces
        assert sp.decode(pieces) == normalise(text.split(" ", 1)[1], lowercase=True, strip_punct=True)
    units = dict(line.split(" ", 1) for line in (dev / "units").read_text().splitlines())
    assert set(units) == {"s2-001", "s2-003"}  # "..." normalises to nothing: left out
    assert sp.decode(units["s2-001"].split(" ")) == "bring six spoons"
    assert "<unk>" in units["s2-003"].split(" ")  # z and b... not all seen in training

    stamp = {p.name: p.stat().st_mtime_ns for p in model.iterdir()}
    unit_files = {p: p.stat().st_mtime_ns for p in (train / "units", dev / "units")}
    assert main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in model.iterdir()} == stamp
    assert {p: p.stat().st_mtime_ns for p in unit_files} == unit_files
    # other options: trained again; the same options in another folder: the same model, byte for byte
    assert main(args[:4] + ["--vocab_size", "35", str(train)]) == 0
    assert spm.SentencePieceProcessor(model_file=str(model / "spm.model")).get_piece_size() == 35
    assert main(args[:2] + ["--model_dir", str(tmp_path / "tok_a")] + args[4:]) == 0
    assert main(args[:2] + ["--model_dir", str(tmp_path / "tok_b")] + args[4:]) == 0
    assert (tmp_path / "tok_a" / "spm.model").read_bytes() == (tmp_path / "tok_b" / "spm.model").read_bytes()


def test_bpe_model_type(tmp_path):
    train = _train(tmp_path)
    assert main(["--train_text", str(train / "text"), "--model_dir", str(tmp_path / "bpe"), "--model_type", "bpe",
                 "--vocab_size", "50", str(train)]) == 0
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe" / "spm.model"))
    first = (train / "units").read_text().splitlines()[0].split(" ")
    assert sp.decode(first[1:]) == normalise((train / "text").read_text().splitlines()[0].split(" ", 1)[1])


@pytest.mark.parametrize("setup, args, message", [
    (lambda t: None, ["--train_text", "nope/text", "--model_dir", "tok", "data"], "nope/text: no such text file"),
    (lambda t: _dir(t / "train", ["u1 ...", "u2"]), ["--train_text", "train/text", "--model_dir", "tok",
                                                      "--strip_punct", "true", "train"],
     "train/text: no transcript to train on (empty after normalisation)"),
    (lambda t: _train(t), ["--train_text", "train/text", "--model_dir", "tok", "--vocab_size", "5000", "train"],
     "train/text: sentencepiece cannot train a unigram model of --vocab_size 5000 on it: Vocabulary size"),
    (lambda t: _train(t), ["--train_text", "train/text", "--model_dir", "tok", "--vocab_size", "40", "train",
                           "missing"], "missing/text: no such text file"),
    (lambda t: _train(t), ["--train_text", "train/text", "--model_dir", "tok", "--vocab_size", "1", "train"],
     "--vocab_size 1: must be at least 2"),
])
def test_errors_are_one_line(tmp_path, setup, args, message):
    setup(tmp_path)
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"make_units: error: {message}"), r.stderr
    assert not (tmp_path / "train" / "units").exists()


def test_bad_text_line_is_named(tmp_path):
    train = _train(tmp_path)
    (train / "text").write_text("u1 a b\n\nu2 c\n")
    with pytest.raises(UserError, match=r"train/text:2: empty line"):
        main(["--train_text", str(train / "text"), "--model_dir", str(tmp_path / "tok"), str(train)])
