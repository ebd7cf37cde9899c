"""Running a ``cdsvae.bin`` tool in the test process, as its console script runs it.

``python -m cdsvae.bin.<tool> ARGS`` is ``run_main(main, ARGS)`` in a fresh interpreter: the
interpreter and torch take seconds to start, which is most of what a small tool run costs. Here
the same ``run_main`` runs in this process, in the given directory, with stdout, stderr and a
fresh root logger captured as the process would write them (``logging.basicConfig`` of a tool
writes to this stderr). The result has a subprocess's ``returncode``, ``stdout`` and ``stderr``.

Each tool file keeps its ``--help`` test as a real process, so the entry point itself still runs.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import subprocess
import sys
import warnings


@contextlib.contextmanager
def _fresh_root_logger():
    """The root logger without pytest's handlers, as in a new process; restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = handlers, level


def run_tool(tool: str, *args, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """``python -m cdsvae.bin.<tool> ARGS`` (in ``cwd``), run in this process."""
    from cdsvae.bin import run_main

    main = importlib.import_module(f"cdsvae.bin.{tool}").main
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            _fresh_root_logger(), warnings.catch_warnings():
        # A process prints each warning once on stderr; pytest would collect them instead.
        warnings.simplefilter("default")
        warnings.showwarning = lambda msg, cat, fn, ln, file=None, line=None: print(
            warnings.formatwarning(msg, cat, fn, ln, line), end="", file=sys.stderr)
        try:
            run_main(main, argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return subprocess.CompletedProcess([sys.executable, "-m", f"cdsvae.bin.{tool}", *argv], code,
                                       out.getvalue(), err.getvalue())
