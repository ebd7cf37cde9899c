"""The environment header of every report."""

import platform
import socket

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
