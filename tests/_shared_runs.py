"""Expensive session fixtures (whole recipe runs) built in the background while the rest of the
suite runs.

A conftest registers a builder under the name of the session fixture that returns its result;
the root conftest orders the tests that use a registered fixture after all the others and, at the
first test, queues the builds those tests need, in the order they need them. A background thread
takes them from the back of the queue (the one needed last first); when the foreground reaches a
test whose build has not begun, it takes that build off the queue and makes it itself, so both
cores build once the other tests are done. The fixture then waits for its result (``result``): a
run that failed fails every test that uses it, as a fixture does. Where nothing was queued (a run
of one test), ``result`` builds in the foreground.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

_BUILDERS: dict[str, Callable[[Path], Any]] = {}
_LIVE: set[subprocess.Popen] = set()  # the processes of run() under way
_STARTED: dict[str, "_Build"] = {}
_LOCK = threading.Lock()


class _Build:
    def __init__(self, fn: Callable[[Path], Any], root: Path):
        self.fn, self.root = fn, root
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn(self.root)
        except BaseException as e:  # handed to the test that waits for it
            self.error = e
        finally:
            self.done.set()

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


def register(name: str, build: Callable[[Path], Any]) -> None:
    """``build(empty_dir)`` makes the value of session fixture ``name``; its commands should run
    through ``run``, so that a session cut short can kill them."""
    _BUILDERS[name] = build


def run(cmd: list[str], timeout: float, **popen) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, text=True) in a session of its own: on a timeout,
    or at the end of a session cut short, everything it started is killed."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **popen) as proc:
        _LIVE.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            _kill(proc)
            raise
        finally:
            _LIVE.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def registered() -> set[str]:
    return set(_BUILDERS)


_QUEUED: list[str] = []  # builds not begun, in the order the tests need them
_STOPPING = threading.Event()


def start(names: list[str], mktemp: Callable[[str], Path]) -> threading.Thread | None:
    """Queue ``names`` (in the order the tests need them) and start the background thread, which
    builds from the back of the queue."""
    with _LOCK:
        for name in names:
            if name in _BUILDERS and name not in _STARTED:
                _STARTED[name] = _Build(_BUILDERS[name], mktemp(name))
                _QUEUED.append(name)
        if not _QUEUED:
            return None
    thread = threading.Thread(target=_run_queued, name="shared-runs", daemon=True)
    thread.start()
    return thread


def _take_last() -> _Build | None:
    """Take the last build off the queue (None when it is empty)."""
    with _LOCK:
        return _STARTED[_QUEUED.pop()] if _QUEUED else None


def _run_queued() -> None:
    while (build := _take_last()) is not None:
        if _STOPPING.is_set():
            build.error = RuntimeError("not built: the session ended first")
            build.done.set()
        else:
            build.run()


def stop_unfinished() -> None:
    """At the end of the session: start nothing more, and kill the builds under way."""
    _STOPPING.set()
    for proc in list(_LIVE):
        _kill(proc)


def result(name: str, mktemp: Callable[[str], Path]) -> Any:
    """The value of ``name``: built now in this thread if it was never queued or has not begun,
    else the background build's."""
    with _LOCK:
        if name not in _STARTED:
            _STARTED[name] = _Build(_BUILDERS[name], mktemp(name))
            build = _STARTED[name]
        elif name in _QUEUED:
            _QUEUED.remove(name)
            build = _STARTED[name]
        else:
            build = None
    if build is not None:
        build.run()
    return _STARTED[name].wait()
