"""pytest loads this first, which puts tests/ on sys.path: helpers such as _signals import from any test dir.

It also runs the shared expensive fixtures in the background (_shared_runs.py): the tests that use
one go last, and the builds they need start at the first test of the session.
"""

from __future__ import annotations

import pytest

import _shared_runs


def _shared(item: pytest.Item) -> list[str]:
    names = _shared_runs.registered()
    return [n for n in getattr(item, "fixturenames", ()) if n in names]


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: bool(_shared(item)))  # stable: the order is kept within each part


@pytest.fixture(scope="session", autouse=True)
def _shared_runs_in_background(request, tmp_path_factory):
    needed = []
    for item in request.session.items:
        needed += [n for n in _shared(item) if n not in needed]
    thread = _shared_runs.start(needed, tmp_path_factory.mktemp)
    yield
    if thread is not None:
        _shared_runs.stop_unfinished()
        thread.join(timeout=60)
