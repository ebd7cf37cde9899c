"""Counting the host reads of tensor values (``.item()``, ``bool(t)``, ``float(t)``) in a piece of code.

Each such read dispatches ``aten::_local_scalar_dense``; on a GPU each is a host-device sync that
stalls the CPU until the queued kernels have run. The profiler sees the same dispatch on the CPU, so
the count taken here is what the code asks of a GPU, except where the tensors read live on the host
there too: the data loader's (it runs on the host, in worker processes on a GPU run) and the
optimiser's step counters (CPU tensors for the foreach kernel; the fused CUDA kernel keeps them on
the device). Reads inside those two are counted apart.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.profiler import ProfilerActivity, profile

HOST_SIDE = ("enumerate(DataLoader)", "Optimizer.step")


def host_reads(fn: Callable[[], Any]) -> tuple[int, int, Any]:
    """(scalar reads while ``fn()`` ran outside HOST_SIDE code, reads inside it, what ``fn`` returned)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = fn()
    outside = inside = 0
    for event in prof.events():
        if event.name != "aten::_local_scalar_dense":
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith(HOST_SIDE):
            parent = parent.cpu_parent
        if parent is None:
            outside += 1
        else:
            inside += 1
    return outside, inside, result
