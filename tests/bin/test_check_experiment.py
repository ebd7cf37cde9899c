"""`python -m cdsvae.bin.check_experiment`: exit 0 while an experiment's recorded inputs are unchanged,
else one line naming the experiment and what changed, and exit 1."""

import os
import subprocess
import sys

import pytest

from _tools import run_tool
from cdsvae.experiment.inputs import fingerprint, write_inputs


def run(*args, cwd):
    """The tool as its console script runs it, in this process (tests/_tools.py)."""
    return run_tool("check_experiment", *args, cwd=cwd)


def feats_dir(path, rate=16000):
    path.mkdir(parents=True)
    (path / "feats.scp").write_text(f"a_1 {path}/feats.ark:8\n")
    (path / "utt2num_frames").write_text("a_1 30\n")
    (path / "utt2spk").write_text("a_1 a\n")
    (path / "fbank.yaml").write_text(f"sample_frequency: {rate}\n")


@pytest.fixture
def recipe(tmp_path):
    """Two experiments as training leaves them (inputs.json) over dump/{train,vc/copy1} and dump/cmvn.npz."""
    for d in ("train", "test", "vc/copy1"):
        feats_dir(tmp_path / "dump" / d)
    (tmp_path / "dump" / "cmvn.npz").write_bytes(b"stats")
    data = {"type": "speech", "train_feats": str(tmp_path / "dump/train"), "motion_feats": str(tmp_path / "dump/vc"),
            "cmvn": str(tmp_path / "dump/cmvn.npz")}
    for tag, con in (("cdsvae", 10.0), ("dsvae", 0.0)):
        (tmp_path / "exp" / tag).mkdir(parents=True)
        write_inputs(tmp_path / "exp" / tag, fingerprint({"loss": {"con_s": con}, "data": data}))
    return tmp_path


def test_help():
    """A real process: ``python -m`` reaches the entry point."""
    r = subprocess.run([sys.executable, "-m", "cdsvae.bin.check_experiment", "--help"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "EXPDIR" in r.stdout and "--feats" in r.stdout


def test_fresh_experiments_pass(recipe):
    r = run("exp/cdsvae", "exp/dsvae", "--feats", "dump/test", "dump/train", cwd=recipe)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""


def test_changed_input_is_one_line_naming_the_experiment(recipe):
    (recipe / "dump/vc/copy1/utt2spk").write_text("a_1 b\n")
    r = run("exp/cdsvae", "exp/dsvae", cwd=recipe)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines == ["check_experiment: error: exp/cdsvae was trained on other inputs: dump/vc/copy1/utt2spk changed"]
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_other_feature_options_and_missing_record(recipe):
    (recipe / "dump/test/fbank.yaml").write_text("sample_frequency: 8000\n")
    r = run("exp/dsvae", "--feats", "dump/test", cwd=recipe)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("check_experiment: error: exp/dsvae was trained on features "
                                                   "with other options than dump/test/fbank.yaml")
    (recipe / "exp" / "dsvae" / "inputs.json").unlink()
    r = run("exp/cdsvae", "exp/dsvae", cwd=recipe)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "exp/dsvae: no record of its training inputs (inputs.json)" in lines[0]
