"""What the training steps are fed (cdsvae.train.batches): seeds derived from tuples, the global RNGs and
deterministic kernels; the epoch order (plain and one item per utterance per batch, over ranks, resumed
part-way); loading batches, moving them to the device, their size."""

import random
from collections import Counter

import numpy as np
import pytest
import torch

from _toy import FEAT, new_trainer, toy_config, toy_loss
from cdsvae.data.synthetic import SyntheticSequenceDataset
from cdsvae.io import UserError
from cdsvae.train.batches import (Batches, ResumableDistributedSampler, UniqueGroupSampler, batch_size, derive_seed,
                                  seed_everything, set_deterministic, to_device, unique_group_order)


def test_derived_seeds_are_stable_63_bit_and_differ_per_tuple():
    seeds = {derive_seed(1, "rank", r) for r in range(4)} | {derive_seed(1, "augment", 0), derive_seed(2, "rank", 0)}
    assert len(seeds) == 6 and all(0 <= s < 1 << 63 for s in seeds)
    assert derive_seed(1, "rank", 0) == derive_seed(1, "rank", 0)


def test_seed_everything_reproduces_every_global_stream():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    seed_everything(5)
    first = draw()
    seed_everything(5)
    assert draw() == first
    seed_everything(6)
    assert draw() != first


def test_set_deterministic_switches_the_kernels_both_ways():
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        set_deterministic(False)
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.backends.cudnn.deterministic = was[0]
        torch.backends.cudnn.benchmark = not was[0]


def _groups(num_groups, per_group, shuffle_ids=False):
    groups = np.repeat(np.arange(num_groups), per_group)
    if shuffle_ids:  # items of a group need not be contiguous, ids need not be 0..G-1
        groups = np.random.default_rng(0).permutation(groups) * 7 + 3
    return groups


@pytest.mark.parametrize("num_groups,per_group,global_batch", [
    (10, 4, 3), (10, 4, 10), (192, 16, 64), (64, 16, 64), (13, 5, 4), (7, 1, 2), (50, 3, 16)])
def test_no_global_batch_holds_a_group_twice_and_every_item_is_used_once(num_groups, per_group, global_batch):
    groups = _groups(num_groups, per_group, shuffle_ids=True)
    order = unique_group_order(groups, global_batch, seed=1, epoch=0)
    n = groups.size
    assert order.size == (n // global_batch) * global_batch  # only the last incomplete batch is left out
    assert len(set(order.tolist())) == order.size and order.min() >= 0 and order.max() < n
    # brute force: look at every batch
    for b in range(order.size // global_batch):
        batch = order[b * global_batch:(b + 1) * global_batch]
        assert len(set(groups[batch].tolist())) == global_batch, b
    # each round uses every group once: no group is starved until the end of the epoch
    counts = Counter(groups[order[: num_groups]].tolist())
    assert max(counts.values()) == 1


def test_order_is_a_function_of_seed_and_epoch():
    groups = _groups(20, 4)
    a = unique_group_order(groups, 8, seed=1, epoch=0)
    assert np.array_equal(a, unique_group_order(groups, 8, seed=1, epoch=0))
    assert not np.array_equal(a, unique_group_order(groups, 8, seed=1, epoch=1))
    assert not np.array_equal(a, unique_group_order(groups, 8, seed=2, epoch=0))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sampler_resume_and_global_blocks_match_a_loop(world):
    data = list(range(24))
    batch = 2
    samplers = [ResumableDistributedSampler(data, world, r, seed=5) for r in range(world)]
    for s in samplers:
        s.set_position(epoch=3, samples_done=0)
    full = [list(s) for s in samplers]
    single = ResumableDistributedSampler(data, 1, 0, seed=5)
    single.set_epoch(3)
    order = list(single)
    # Step k of the distributed run covers the k-th block of world*batch indices of the one order.
    for k in range(len(full[0]) // batch):
        got = sorted(i for r in range(world) for i in full[r][k * batch:(k + 1) * batch])
        assert got == sorted(order[k * world * batch:(k + 1) * world * batch])
    # Resuming after `done` global samples continues each rank's list where it stopped.
    done = world * batch * 2
    for r, s in enumerate(samplers):
        s.set_position(epoch=3, samples_done=done)
        assert list(s) == full[r][done // world:]
        assert len(s) == len(full[r]) - done // world
    samplers[0].set_position(epoch=4, samples_done=0)
    assert list(samplers[0]) != full[0]  # a new epoch, a new permutation


def test_a_plain_shuffle_would_repeat_groups():
    # what the sampler is for: the trainer's default order puts two items of a group in one batch
    groups = _groups(192, 16)
    plain = list(ResumableDistributedSampler(list(range(groups.size)), 1, 0, seed=1))
    repeats = sum(len(set(groups[plain[i:i + 64]].tolist())) < 64 for i in range(0, 64 * 48, 64))
    assert repeats > 40


def test_impossible_requests_are_errors():
    with pytest.raises(ValueError, match="cannot fill a batch"):
        unique_group_order(_groups(5, 4), 6, seed=0, epoch=0)
    with pytest.raises(ValueError, match="same number of items"):
        unique_group_order(np.array([0, 0, 1, 2, 2]), 2, seed=0, epoch=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        UniqueGroupSampler(_groups(7, 2), batch_size=4, num_replicas=2, rank=0, seed=0)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_split_each_global_batch_and_resume_where_they_stopped(world):
    groups = _groups(30, 4)
    batch = 3
    samplers = [UniqueGroupSampler(groups, batch, world, r, seed=5) for r in range(world)]
    for s in samplers:
        s.set_position(epoch=2, samples_done=0)
    full = [list(s) for s in samplers]
    order = unique_group_order(groups, batch * world, seed=5, epoch=2)
    assert all(len(f) == samplers[0].num_samples == order.size // world for f in full)
    for k in range(len(full[0]) // batch):
        got = [i for r in range(world) for i in full[r][k * batch:(k + 1) * batch]]
        assert got == order[k * world * batch:(k + 1) * world * batch].tolist()
    done = world * batch * 2
    for r, s in enumerate(samplers):
        s.set_position(epoch=2, samples_done=done)
        assert list(s) == full[r][done // world:]
        assert len(s) == len(full[r]) - done // world


class _Grouped(SyntheticSequenceDataset):
    """Synthetic sequences in groups of 4 consecutive items (like segments of one utterance)."""

    def item_groups(self):
        return np.arange(len(self)) // 4

    def __getitem__(self, index):
        item = super().__getitem__(index)
        item["group"] = index // 4
        return item


@pytest.mark.parametrize("unique", [True, False])
def test_trainer_batches_follow_the_option(tmp_path, unique):
    seen = []

    def loss(model, batch, generator):
        seen.append(batch["group"].tolist())
        return toy_loss(model, batch, generator)

    data = _Grouped(32, seq_len=4, frame_shape=(FEAT,))
    trainer = new_trainer(tmp_path / "exp", loss, data, None, toy_config(epochs=2, unique_utts_per_batch=unique))
    assert isinstance(trainer.sampler, UniqueGroupSampler) == unique
    trainer.fit()
    assert len(seen) == 16
    repeated = sum(len(set(b)) < len(b) for b in seen)
    assert (repeated == 0) if unique else (repeated > 0)


def test_trainer_names_the_option_when_utterances_are_too_few(tmp_path):
    data = _Grouped(16, seq_len=4, frame_shape=(FEAT,))  # 4 groups, batch 8
    with pytest.raises(UserError, match=r"has 4 utterances \(train.unique_utts_per_batch: .*fewer than one global batch "
                                        r"of 8 .*use train.batch_size 4 or less or train.unique_utts_per_batch false$"):
        new_trainer(tmp_path / "exp", toy_loss, data, None, toy_config(batch_size=8, unique_utts_per_batch=True))


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
