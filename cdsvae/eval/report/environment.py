"""The environment header of every report: date, software versions, the CPU and code version.

Shared by the speech and video reports; deliberately no host name.  The CPU is named because
figures reproduce to the last digit only on the same kind of CPU: PyTorch picks its CPU kernels
by the widest vector extension (AVX2, AVX-512, ...), and kernels that sum in another order change
the last bits, which training carries on and grows.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import importlib.util
import os
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


# The widest vector extension, in the order PyTorch and oneDNN prefer them; the names of /proc/cpuinfo.
VECTOR_EXTENSIONS = ("avx512f", "avx2", "avx", "sse4_2", "sve", "asimd")
# Variables that make PyTorch or oneDNN use narrower kernels than the CPU has.
KERNEL_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def cpu_description(cpuinfo: str | None = None, environ: dict[str, str] | None = None,
                    count: int | None = None) -> str:
    """The CPU model, its logical CPUs and its widest vector extension, read from ``/proc/cpuinfo``
    (``cpuinfo``: its text), with any variable of ``KERNEL_LIMITS`` that is set, e.g.
    ``AMD EPYC, 2 CPUs, widest vector extension avx2``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    environ = os.environ if environ is None else environ
    count = os.cpu_count() if count is None else count
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    model = fields.get("model name") or fields.get("cpu model") or platform.processor() or "unknown CPU"
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    widest = next((name for name in VECTOR_EXTENSIONS if name in flags), "unknown")
    cpus = f"{count} CPU{'' if count == 1 else 's'}" if count else "unknown CPU count"
    parts = [model, cpus, f"widest vector extension {widest}"]
    parts += [f"{name}={environ[name]}" for name in KERNEL_LIMITS if environ.get(name)]
    return ", ".join(parts)


def environment_items() -> list[tuple[str, str]]:
    """Date, software versions, the CPU and code version; deliberately no host name."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return [("date", now), ("python", platform.python_version()), ("torch", torch_version()),
            ("system", f"{platform.system()} {platform.machine()}"), ("cpu", cpu_description()),
            ("git commit", git_commit())]


def environment() -> Environment:
    """The environment block of a report."""
    return Environment(environment_items())


def environment_header() -> str:
    """The environment block in Markdown."""
    return "\n".join(markdown_lines(environment(), Path(".")))
