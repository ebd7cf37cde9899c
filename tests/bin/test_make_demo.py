"""The demo step as a user runs it: speech wavs and video pictures in <exp>/demo/, then linked by the reports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _experiments import DEMO_PNGS, DEMO_WAVS, ChannelModel, trained_speech_exp, video_exps  # noqa: E402
from _tools import run_tool  # noqa: E402


def run(tool, *args, cwd=None):
    """The tool as its console script runs it, in this process (tests/_tools.py)."""
    return run_tool(tool, *args, cwd=cwd)


def one_line_error(out):
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    return out.stderr.strip()


def test_speech_demo_then_report(tmp_path):
    trained_speech_exp(tmp_path)
    out = run("make_demo", "--expdir", "exp/cdsvae_tiny", "--set", "test", "--feats", "dump/test", "--n_iter", "4",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"make_demo: wrote {len(DEMO_WAVS)} files and exp/cdsvae_tiny/demo/demo.json" in out.stdout
    demo = tmp_path / "exp" / "cdsvae_tiny" / "demo"
    assert sorted(p.name for p in demo.iterdir()) == sorted(DEMO_WAVS + DEMO_PNGS + ["demo.json"])
    assert "iterations" in json.loads((demo / "demo.json").read_text())["note"]
    out = run("make_report", "--expdirs", "exp/cdsvae_tiny", "--out", "RESULTS.md", "--plots", "false", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "exp" / "cdsvae_tiny" / "RESULTS.md").read_text()
    for name in DEMO_WAVS:
        assert f"[{name}](demo/{name})" in text
    # rerun alone, elsewhere: replaces nothing but its own directory
    out = run("make_demo", "--expdir", "exp/cdsvae_tiny", "--outdir", "other", "--max_segments", "2", "--n_iter", "2",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == sorted(DEMO_WAVS + DEMO_PNGS + ["demo.json"])
    assert "the first 2 segments" in json.loads((tmp_path / "other" / "demo.json").read_text())["note"]


def test_video_demo(tmp_path, monkeypatch, capsys):
    import cdsvae.experiment.load
    from cdsvae.bin import make_demo

    data, (exp, _) = video_exps(tmp_path)
    monkeypatch.setattr(cdsvae.experiment.load, "load_model", lambda d, device="cpu": (ChannelModel(), {}))
    assert make_demo.main(["--expdir", str(exp), "--data", str(data), "--num", "3", "--num_samples", "2"]) == 0
    assert f"make_demo: wrote 3 files and {exp / 'demo' / 'demo.json'}" in capsys.readouterr().out
    index = json.loads((exp / "demo" / "demo.json").read_text())
    assert index["kind"] == "video"
    assert [e["file"] for e in index["files"]] == ["swap_grid.png", "swap_grid_frame0.png", "samples.png"]


def test_errors_are_one_line(tmp_path):
    assert "make_demo: error: " in one_line_error(run("make_demo", "--expdir", tmp_path / "nope"))
    _, (video_exp, _) = video_exps(tmp_path)
    err = one_line_error(run("make_demo", "--expdir", video_exp))
    assert "is a video experiment: give --data <test split dir>" in err
    err = one_line_error(run("make_demo", "--expdir", video_exp, "--data", tmp_path / "test", "--num", "0"))
    assert "--num must be at least 1, got 0" in err
    synthetic = tmp_path / "synthetic"
    synthetic.mkdir()
    (synthetic / "config.yaml").write_text(yaml.safe_dump({"data": {"type": "synthetic"}}))
    assert "no demo for data.type synthetic" in one_line_error(run("make_demo", "--expdir", synthetic))
    speech = tmp_path / "speech"
    speech.mkdir()
    (speech / "config.yaml").write_text(yaml.safe_dump({"data": {"type": "speech"}}))
    err = one_line_error(run("make_demo", "--expdir", speech, "--set", "dev"))
    assert "emb_dev/meta.json: not found (run the embedding stage first)" in err


@pytest.mark.parametrize("tool", ["make_demo"])
def test_help_names_both_modalities(tool):
    """A real process: ``python -m`` reaches the entry point."""
    out = subprocess.run([sys.executable, "-m", f"cdsvae.bin.{tool}", "--help"], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0 and "--set" in out.stdout and "--data" in out.stdout and "demo.json" in out.stdout
