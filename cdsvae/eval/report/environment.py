"""The environment header of every report: date, software versions and code version.

Shared by the speech and video reports; deliberately no host name.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import importlib.util
import platform
import re
import subprocess
import sys
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


def torch_version() -> str:
    """``torch.__version__`` (with its build tag, e.g. ``+cu128``) without importing torch, which
    costs seconds of CPU in a report that only reads: the installed package's ``version.py``."""
    if "torch" in sys.modules:
        return sys.modules["torch"].__version__
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return "not installed"
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        text = ""
    found = re.search(r"^__version__\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return found.group(1) if found else importlib.metadata.version("torch")


def environment_items() -> list[tuple[str, str]]:
    """Date, software versions and code version; deliberately no host name."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return [("date", now), ("python", platform.python_version()), ("torch", torch_version()),
            ("system", f"{platform.system()} {platform.machine()}"), ("git commit", git_commit())]


def environment() -> Environment:
    """The environment block of a report."""
    return Environment(environment_items())


def environment_header() -> str:
    """The environment block in Markdown."""
    return "\n".join(markdown_lines(environment(), Path(".")))
