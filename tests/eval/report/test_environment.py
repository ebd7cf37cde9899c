"""The environment header of every report."""

import platform
import socket
import sys

from cdsvae.eval.report.environment import environment_header, git_commit


def test_header_names_versions_and_commit_but_not_the_host():
    text = environment_header()
    assert text.startswith("## Environment\n")
    for key in ("- date:", f"- python: {platform.python_version()}", "- torch:", "- system:", "- git commit:"):
        assert key in text
    assert socket.gethostname() not in text


def test_git_commit_outside_a_repository_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    assert git_commit() != ""


def test_torch_version_is_read_without_importing_torch(monkeypatch):
    import torch

    from cdsvae.eval.report.environment import torch_version

    assert torch_version() == torch.__version__  # torch already imported: its own attribute
    monkeypatch.delitem(sys.modules, "torch")
    assert torch_version() == torch.__version__  # read from the installed package's version.py
    assert "torch" not in sys.modules


def test_a_report_of_finished_runs_imports_no_torch():
    """The report only reads: its environment header and system labels must not cost a torch import."""
    import subprocess

    code = ("import sys; from cdsvae.eval.report.environment import environment_header; "
            "from cdsvae.eval.report.experiment import system_label; environment_header(); "
            "assert system_label({'loss': {'con_s': 0.0, 'con_z': 0.0, 'mi_sz': 0.0}}) == 'DSVAE'; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
