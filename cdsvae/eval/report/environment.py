"""The environment header of every report: date, software versions and code version.

Shared by the speech and video reports; deliberately no host name.
"""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path

from cdsvae.eval.report.document import Environment, markdown_lines


def git_commit(repo: Path | None = None) -> str:
    """Commit of the code that made the report (``+dirty`` when the tree has changes)."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_items() -> list[tuple[str, str]]:
    """Date, software versions and code version; deliberately no host name."""
    import torch

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return [("date", now), ("python", platform.python_version()), ("torch", torch.__version__),
            ("system", f"{platform.system()} {platform.machine()}"), ("git commit", git_commit())]


def environment() -> Environment:
    """The environment block of a report."""
    return Environment(environment_items())


def environment_header() -> str:
    """The environment block in Markdown."""
    return "\n".join(markdown_lines(environment(), Path(".")))
