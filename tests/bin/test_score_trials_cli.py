"""cdsvae.bin.score with --trials: a Kaldi and a VoxCeleb list scored end to end on tiny embeddings."""

import json

import numpy as np
import pytest

from _tools import run_tool
from cdsvae.eval.metrics.eer import compute_eer
from cdsvae.eval.metrics.embeddings import write_vectors

# three speakers in VoxCeleb's layout: speaker / video / clip
UTTS = [f"id1000{s}-vid{v}-0000{c}" for s in range(3) for v in range(2) for c in range(1, 3)]


def run(*args, cwd):
    """The tool as its console script runs it, in this process (tests/_tools.py)."""
    return run_tool("score", *args, cwd=cwd)


def one_line_error(out):
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


@pytest.fixture
def test_set(tmp_path):
    """Embeddings of UTTS but the last (skipped at extraction), utt2spk of all of them, and the trial pairs."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 4))
    embedded = UTTS[:-1]
    write_vectors(tmp_path / "emb", "s", {u: centres[int(u[6])] + 0.3 * rng.normal(size=4) for u in embedded})
    write_vectors(tmp_path / "emb", "z", {u: rng.normal(size=3) for u in embedded})
    (tmp_path / "emb" / "meta.json").write_text(json.dumps({"skipped": [UTTS[-1]]}))
    (tmp_path / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in UTTS))
    pairs = [(UTTS[i], UTTS[j]) for i in range(len(UTTS)) for j in range(i + 3, len(UTTS), 3)]
    return tmp_path, pairs


def same(a, b):
    return a.split("-")[0] == b.split("-")[0]


def vox_path(utt):
    return utt.replace("-", "/") + ".wav"


@pytest.mark.parametrize("fmt", ["kaldi", "voxceleb"])
def test_trials_in_either_format_end_to_end(test_set, fmt):
    tmp_path, pairs = test_set
    if fmt == "kaldi":
        text = "".join(f"{a} {b} {'target' if same(a, b) else 'nontarget'}\n" for a, b in pairs)
    else:
        text = "".join(f"{int(same(a, b))} {vox_path(a)} {vox_path(b)}\n" for a, b in pairs)
    (tmp_path / "list.txt").write_text(text)
    out = run("--emb_dir", "emb", "--utt2spk", "utt2spk", "--outdir", "score", "--trials", "list.txt", cwd=tmp_path)
    assert out.returncode == 0, out.stderr

    kept = [(a, b) for a, b in pairs if UTTS[-1] not in (a, b)]
    n_left_out = len(pairs) - len(kept)
    assert n_left_out > 0
    assert f"{n_left_out} of {len(pairs)} trial(s) of list.txt name an utterance without embedding" in out.stdout
    res = json.loads((tmp_path / "score" / "results.json").read_text())
    assert res["trials_format"] == fmt and res["n_listed_trials"] == len(pairs)
    assert res["n_trials_without_embedding"] == n_left_out and res["without_embedding"] == [UTTS[-1]]
    assert res["n_target"] == sum(same(a, b) for a, b in kept)
    assert res["n_target"] + res["n_nontarget"] == len(kept)
    # the written trials are the scored ones, in Kaldi format with utterance ids, in the list's order
    written = [line.split() for line in (tmp_path / "score" / "trials").read_text().splitlines()]
    assert written == [[a, b, "target" if same(a, b) else "nontarget"] for a, b in kept]
    scores = [line.split() for line in (tmp_path / "score" / "scores_s").read_text().splitlines()]
    assert [(a, b) for a, b, _ in scores] == kept
    tgt = [float(s) for a, b, s in scores if same(a, b)]
    non = [float(s) for a, b, s in scores if not same(a, b)]
    assert res["s"]["eer"] == pytest.approx(compute_eer(tgt, non)[0], abs=1e-5)

    # the format may be named, and then must match
    out = run("--emb_dir", "emb", "--utt2spk", "utt2spk", "--outdir", "score2", "--trials", "list.txt",
              "--trials_format", fmt, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    other = "voxceleb" if fmt == "kaldi" else "kaldi"
    out = run("--emb_dir", "emb", "--utt2spk", "utt2spk", "--outdir", "score3", "--trials", "list.txt",
              "--trials_format", other, cwd=tmp_path)
    assert "list.txt:1: expected" in one_line_error(out)


def test_trials_naming_utterances_outside_the_test_set(test_set):
    tmp_path, _ = test_set
    (tmp_path / "vox.txt").write_text(f"1 {vox_path(UTTS[0])} {vox_path(UTTS[1])}\n"
                                      f"0 {vox_path(UTTS[0])} id10009/elsewhere/00001.wav\n")
    out = run("--emb_dir", "emb", "--utt2spk", "utt2spk", "--outdir", "o", "--trials", "vox.txt", cwd=tmp_path)
    assert ("vox.txt:2: path id10009/elsewhere/00001.wav maps to utterance id id10009-elsewhere-00001, "
            "which is not in utt2spk") in one_line_error(out)
    (tmp_path / "kaldi.txt").write_text(f"{UTTS[0]} {UTTS[1]} target\n{UTTS[0]} nobody nontarget\n")
    out = run("--emb_dir", "emb", "--utt2spk", "utt2spk", "--outdir", "o", "--trials", "kaldi.txt", cwd=tmp_path)
    assert "kaldi.txt: utterance nobody is not in utt2spk" in one_line_error(out)
    (tmp_path / "scores.txt").write_text(f"{UTTS[0]} {UTTS[1]} 0.5\n")
    out = run("--emb_dir", "emb", "--utt2spk", "utt2spk", "--outdir", "o", "--trials", "scores.txt", cwd=tmp_path)
    assert "scores.txt:1: not a trials line in either format" in one_line_error(out)
