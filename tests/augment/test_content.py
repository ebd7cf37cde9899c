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
