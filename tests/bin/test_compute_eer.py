"""The compute_eer command line: text and JSON output, and errors that name the file."""

import json
import subprocess
import sys

import numpy as np
import pytest

from _tools import run_tool
from cdsvae.bin.compute_eer import main
from cdsvae.eval.metrics.eer import compute_eer, compute_min_dcf


def write_pair(tmp_path, trials, scores):
    t = tmp_path / "trials"
    s = tmp_path / "scores"
    t.write_text("".join(f"{e} {u} {lab}\n" for e, u, lab in trials))
    s.write_text("".join(f"{e} {u} {v}\n" for e, u, v in scores))
    return str(t), str(s)


@pytest.fixture
def random_files(tmp_path):
    rng = np.random.default_rng(0)
    trials, scores, tgt, non = [], [], [], []
    for i in range(30):
        for j in range(i + 1, 30):
            target = (i // 5) == (j // 5)
            value = round(float(rng.normal(1.0 if target else 0.0)), 6)
            trials.append((f"u{i:02d}", f"u{j:02d}", "target" if target else "nontarget"))
            scores.append((f"u{i:02d}", f"u{j:02d}", value))
            (tgt if target else non).append(value)
    rng.shuffle(scores)  # scores may come in any order
    return write_pair(tmp_path, trials, scores) + (np.array(tgt), np.array(non))


def test_json_output(random_files, capsys):
    trials, scores, tgt, non = random_files
    assert main([trials, scores, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"eer", "threshold", "min_dcf", "n_target", "n_nontarget"}
    eer, th = compute_eer(tgt, non)
    assert out["eer"] == pytest.approx(eer) and out["threshold"] == pytest.approx(th)
    assert out["min_dcf"] == pytest.approx(compute_min_dcf(tgt, non, 0.01))
    assert (out["n_target"], out["n_nontarget"]) == (len(tgt), len(non)) == (60, 375)


def test_json_p_target(random_files, capsys):
    trials, scores, tgt, non = random_files
    main([trials, scores, "--json", "--p_target", "0.05"])
    out = json.loads(capsys.readouterr().out)
    assert out["min_dcf"] == pytest.approx(compute_min_dcf(tgt, non, 0.05))


def test_text_output_kaldi_style(random_files, capsys):
    trials, scores, tgt, non = random_files
    main([trials, scores])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"EER: {100 * compute_eer(tgt, non)[0]:.4f}%")
    assert out[1] == f"minDCF(p_target=0.01): {compute_min_dcf(tgt, non, 0.01):.4f}"
    assert out[2] == f"minDCF(p_target=0.001): {compute_min_dcf(tgt, non, 0.001):.4f}"


def test_known_answer(tmp_path, capsys):
    trials, scores = write_pair(
        tmp_path,
        [("a", "b", "target"), ("a", "c", "nontarget"), ("b", "c", "nontarget"), ("a", "d", "target")],
        [("a", "b", 3.0), ("a", "c", 2.0), ("b", "c", 0.0), ("a", "d", 1.0)],
    )
    main([trials, scores, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["eer"] == 0.5 and out["threshold"] == 2.0


def run_cli(*args):
    """The tool as its console script runs it, in this process (tests/_tools.py)."""
    return run_tool("compute_eer", *args)


def test_missing_and_extra_pairs_named_with_counts(tmp_path):
    trials, scores = write_pair(
        tmp_path,
        [("a", "b", "target"), ("a", "c", "nontarget"), ("b", "c", "nontarget"), ("c", "d", "nontarget")],
        [("a", "b", 1.0), ("a", "c", 0.5), ("x", "y", 0.1)],
    )
    r = run_cli(trials, scores)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "2 trial(s)" in r.stderr and "'b c'" in r.stderr and "'c d'" in r.stderr
    assert "1 score(s)" in r.stderr and "'x y'" in r.stderr


@pytest.mark.parametrize(
    "trial_lines, score_lines, where",
    [
        ("a b target\na c maybe\n", "a b 1\na c 0\n", "trials:2"),
        ("a b target\na c\n", "a b 1\na c 0\n", "trials:2"),
        ("a b target\na c nontarget\n", "a b 1\n\na c zero\n", "scores:3"),
        ("a b target\na c nontarget\n", "a b 1\na c nan\n", "scores:2"),
        ("a b target\na c nontarget\n", "a b 1\na c 0 extra\n", "scores:2"),
        ("a b target\na b nontarget\n", "a b 1\n", "trials:2"),
        ("a b target\na c nontarget\n", "a b 1\na c 0\na b 2\n", "scores:3"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, trial_lines, score_lines, where):
    (tmp_path / "trials").write_text(trial_lines)
    (tmp_path / "scores").write_text(score_lines)
    r = run_cli(str(tmp_path / "trials"), str(tmp_path / "scores"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{tmp_path}/{where}:" in r.stderr


def test_only_one_class_and_missing_file(tmp_path):
    trials, scores = write_pair(tmp_path, [("a", "b", "target")], [("a", "b", 1.0)])
    r = run_cli(trials, scores)
    assert r.returncode == 1 and "nontarget" in r.stderr
    r = run_cli(str(tmp_path / "nope"), scores)
    assert r.returncode == 1 and "nope" in r.stderr and "Traceback" not in r.stderr


def test_help():
    """A real process: ``python -m`` reaches the entry point."""
    r = subprocess.run([sys.executable, "-m", "cdsvae.bin.compute_eer", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--json" in r.stdout and "--p_target" in r.stdout
