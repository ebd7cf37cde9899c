"""Loading batches, moving them to the device, their size."""

import pytest
import torch

from cdsvae.errors import UserError
from cdsvae.train.batches import Batches, batch_size, to_device


def test_to_device_keeps_the_structure_and_leaves_other_values():
    batch = {"x": torch.zeros(3, 2), "pair": (torch.ones(3), "a"), "items": [torch.zeros(1)], "n": 4}
    out = to_device(batch, torch.device("cpu"))
    assert set(out) == set(batch) and isinstance(out["pair"], tuple) and isinstance(out["items"], list)
    assert torch.equal(out["x"], batch["x"]) and out["pair"][1] == "a" and out["n"] == 4


def test_batch_size_is_the_first_batched_dimension():
    assert batch_size({"scalar": torch.tensor(1.0), "x": torch.zeros(5, 2)}) == 5
    with pytest.raises(UserError, match="no tensor with a batch dimension"):
        batch_size({"scalar": torch.tensor(1.0)})


def test_loader_and_precision_follow_the_options():
    batches = Batches(torch.device("cpu"), num_workers=0, amp="none")
    loader = batches.loader([{"x": torch.full((2,), float(i))} for i in range(4)], batch_size=2)
    assert [b["x"][:, 0].tolist() for b in loader] == [[0.0, 1.0], [2.0, 3.0]]
    assert not loader.pin_memory
    with batches.autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Batches(torch.device("cpu"), amp="bf16").autocast():
        assert torch.is_autocast_enabled("cpu")
