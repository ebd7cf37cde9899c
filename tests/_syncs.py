"""Counting the host reads of tensor values (``.item()``, ``bool(t)``, ``float(t)``) in a piece of code.

Each such read dispatches ``aten::_local_scalar_dense``; on a GPU each is a host-device sync that
stalls the CPU until the queued kernels have run. The profiler sees the same dispatch on the CPU, so
the count taken here is the count a GPU run would pay.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.profiler import ProfilerActivity, profile


def host_reads(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(number of scalar reads made while ``fn()`` ran, what ``fn`` returned)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = fn()
    return sum(1 for e in prof.events() if e.name == "aten::_local_scalar_dense"), result
