"""The scheduler of the shared session fixtures (tests/_shared_runs.py), on a private copy of the
module so that the suite's own builds are not touched."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def shared():
    spec = importlib.util.spec_from_file_location("_shared_runs_copy", HERE / "_shared_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    module.stop_unfinished()


def test_the_background_builds_from_the_back_and_the_foreground_takes_what_has_not_begun(shared, tmp_path):
    built_by, began, release = {}, threading.Event(), threading.Event()

    def builder(name, wait=False):
        def build(root):
            built_by[name] = threading.current_thread().name
            if wait:
                began.set()
                assert release.wait(10)
            return f"{name} in {root.name}"
        return build

    shared.register("a", builder("a"))
    shared.register("b", builder("b"))
    shared.register("c", builder("c", wait=True))
    thread = shared.start(["a", "b", "c"], lambda name: tmp_path / name)
    assert began.wait(10)
    # the background thread begins with the build needed last, and stays on it until released,
    # so "a" has not begun when the first test asks for it: the foreground makes it
    assert shared.result("a", lambda name: tmp_path / name) == "a in a"
    assert built_by["a"] == threading.current_thread().name != "shared-runs"
    release.set()
    assert shared.result("c", lambda name: tmp_path / name) == "c in c"
    assert shared.result("b", lambda name: tmp_path / name) == "b in b"
    thread.join(10)
    assert built_by["c"] == "shared-runs" and set(built_by) == {"a", "b", "c"}


def test_a_failed_build_fails_every_test_that_uses_it_and_is_not_rebuilt(shared, tmp_path):
    calls = []

    def broken(root):
        calls.append(root)
        raise RuntimeError("stage 4 failed")

    shared.register("broken", broken)
    thread = shared.start(["broken"], lambda name: tmp_path / name)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="stage 4 failed"):
            shared.result("broken", lambda name: tmp_path / name)
    thread.join(10)
    assert len(calls) == 1


def test_nothing_queued_builds_in_the_foreground(shared, tmp_path):
    shared.register("solo", lambda root: threading.current_thread().name)
    assert shared.start([], lambda name: tmp_path / name) is None
    assert shared.result("solo", lambda name: tmp_path / name) == threading.current_thread().name
