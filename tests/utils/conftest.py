"""The one-node Slurm cluster of the tests marked `slurm` (tests/utils/_slurm.py)."""

from __future__ import annotations

import pytest

from _slurm import ClusterUnavailable, OneNodeCluster


@pytest.fixture(scope="session")
def slurm_cluster():
    """Started once for the session, stopped (daemons and files gone) at its end; the tests
    that use it skip, with the reason, where it cannot start."""
    cluster = OneNodeCluster()
    try:
        cluster.start()
    except ClusterUnavailable as e:
        pytest.skip(f"no one-node Slurm cluster: {e}")
    yield cluster
    cluster.stop()
