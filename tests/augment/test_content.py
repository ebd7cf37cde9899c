"""Content views reorder each sequence's frames and nothing else."""

import pytest
import torch

from cdsvae.augment.content import apply_order, content_order, content_view
from cdsvae.errors import UserError


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(5, 7, 3, 4, 4), (3, 6, 10)])
def test_shuffle_matches_loop_and_keeps_each_sequences_frames(shape):
    x = torch.randn(*shape)
    order = content_order(shape[0], shape[1], _gen(0))
    view = content_view(x, _gen(0))
    for b in range(shape[0]):
        assert sorted(order[b].tolist()) == list(range(shape[1]))
        for t in range(shape[1]):
            assert torch.equal(view[b, t], x[b, order[b, t]])


def test_shuffle_is_deterministic_and_per_sequence():
    x = torch.arange(64 * 8, dtype=torch.float32).view(64, 8)
    a, b = content_view(x, _gen(1)), content_view(x, _gen(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, content_view(x, _gen(2)))
    orders = content_order(64, 8, _gen(1))
    assert len({tuple(o.tolist()) for o in orders}) > 50  # not one permutation for the batch


def test_reverse_is_flip_and_ignores_generator():
    x = torch.randn(3, 5, 2)
    assert torch.equal(content_view(x, None, mode="reverse"), x.flip(1))


def test_single_frame_is_unchanged():
    x = torch.randn(4, 1, 3)
    assert torch.equal(content_view(x, _gen(0)), x)


def test_bad_mode_and_order_shape():
    with pytest.raises(UserError, match="shuffle, reverse"):
        content_view(torch.randn(2, 3, 4), _gen(0), mode="rotate")
    with pytest.raises(ValueError, match="order must have shape"):
        apply_order(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


class _Copies(torch.utils._python_dispatch.TorchDispatchMode):
    """Records each copy between devices with its non_blocking flag."""

    def __init__(self):
        super().__init__()
        self.copies = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and "device" in kwargs:
            self.copies.append((args[0].device.type, torch.device(kwargs["device"]).type,
                                bool(kwargs.get("non_blocking", False))))
        return func(*args, **kwargs)


@pytest.mark.parametrize("mode", ["shuffle", "reverse"])
def test_the_order_for_another_device_is_copied_without_blocking_the_host(mode, monkeypatch):
    """The meta device stands in for a GPU: the order is drawn on the CPU (the same numbers as for
    the CPU) and copied once, non_blocking; with CUDA present the copy comes from pinned memory."""
    want = content_order(4, 6, _gen(3), mode)
    with _Copies() as seen:
        order = content_order(4, 6, _gen(3), mode, device=torch.device("meta"))
    assert order.device.type == "meta" and order.shape == want.shape and order.dtype == torch.int64
    assert seen.copies == [("cpu", "meta", True)]
    pinned = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: (pinned.append(t.clone()), t)[1])
    content_order(4, 6, _gen(3), mode, device=torch.device("meta"))
    assert len(pinned) == 1 and torch.equal(pinned[0], want)
    # on the CPU nothing is copied or pinned
    with _Copies() as seen:
        assert torch.equal(content_order(4, 6, _gen(3), mode, device=torch.device("cpu")), want)
    assert seen.copies == [] and len(pinned) == 1
