import pytest
import torch

from cdsvae.data.synthetic import SyntheticSequenceDataset, build_synthetic_dataset
from cdsvae.io import UserError


def test_items_are_a_pure_function_of_seed_split_and_index():
    a = SyntheticSequenceDataset(10, seq_len=5, frame_shape=(3, 8, 8), seed=1)
    b = SyntheticSequenceDataset(10, seq_len=5, frame_shape=(3, 8, 8), seed=1)
    item = a[7]
    assert item["x"].shape == (5, 3, 8, 8) and item["x"].dtype == torch.float32
    assert float(item["x"].min()) >= 0.0 and float(item["x"].max()) <= 1.0
    assert torch.equal(item["x"], b[7]["x"]) and torch.equal(a[7]["x"], a[7]["x"])
    assert not torch.equal(a[7]["x"], a[6]["x"])
    other_split = SyntheticSequenceDataset(10, seq_len=5, frame_shape=(3, 8, 8), seed=1, split="valid")
    assert not torch.equal(item["x"], other_split[7]["x"])
    with pytest.raises(IndexError):
        a[10]


def test_factors_are_what_the_labels_say():
    """Without noise, x_t is exactly sigmoid(P[static] + Q[dynamic, t]): check it against a loop."""
    d = SyntheticSequenceDataset(40, seq_len=4, frame_shape=(5,), noise=0.0, with_motion=True)
    for i in range(len(d)):
        item = d[i]
        s, m = item["static"], item["dynamic"]
        assert (s, m) == d.labels(i)
        for t in range(4):
            want = torch.sigmoid(d.static_patterns[s] + d.dynamic_patterns[m, t])
            assert torch.allclose(item["x"][t], want)
        # The motion view keeps the trajectory and changes the static pattern.
        logit = torch.logit(item["x_motion"].double())
        other = logit[0] - d.dynamic_patterns[m, 0].double()
        match = [k for k in range(d.num_static) if torch.allclose(other, d.static_patterns[k].double(), atol=1e-3)]
        assert len(match) == 1 and match[0] != s
        assert torch.allclose(logit - logit[0], torch.logit(item["x"].double()) - torch.logit(item["x"][0].double()),
                              atol=1e-3)
    labels = {d.labels(i) for i in range(len(d))}
    assert len({s for s, _ in labels}) == d.num_static and len({m for _, m in labels}) == d.num_dynamic


def test_builder_splits_and_unknown_keys():
    cfg = {"type": "synthetic", "num_train": 12, "num_valid": 5, "frame_shape": [4], "train_split": "tr"}
    assert len(build_synthetic_dataset(cfg, "tr")) == 12
    assert len(build_synthetic_dataset(cfg, "dev")) == 5
    with pytest.raises(UserError, match="unknown key.*num_seqs"):
        build_synthetic_dataset({**cfg, "num_seqs": 3}, "tr")
    with pytest.raises(UserError, match=r"'data.noise' must be a number >= 0, got -0.1"):
        build_synthetic_dataset({**cfg, "noise": -0.1}, "tr")
