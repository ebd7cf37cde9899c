"""What the training steps are fed: the run's random streams, the order of items per epoch, and how
batches are loaded and placed (shared by the training loop and validation).

Random streams: every stream of a run is seeded from ``train.seed`` and a name (and the rank, or
the epoch) through :func:`derive_seed`, so streams are unrelated to each other and a run is a
function of its seed; :func:`set_deterministic` is the ``train.deterministic`` switch.

Order: :class:`ResumableDistributedSampler` is the plain shuffle (every process draws the same
permutation per epoch and takes every N-th index). :class:`UniqueGroupSampler` is the order
with at most one item per group (utterance) in every batch:

A speech training split holds several random segments of each utterance. In a plain shuffle,
two segments of one utterance often meet in a batch, and the contrastive terms then treat a
segment of the same utterance (same speaker, same recording) as a negative. No labels are
needed to avoid that: the dataset knows which items come from the same utterance.

The order of an epoch is built in rounds. Round k takes the k-th item of every group (the
members of a group are shuffled first) in a random order of the groups, so any stretch inside
one round is free of repeats. Where a global batch straddles two rounds, the head of the new
round is drawn from the groups the batch does not hold yet (the rest of the round keeps its
order). That is always possible when there are at least as many groups as one global batch
holds. Global batches (``batch_size`` x processes) are cut from this one order, identical on
every rank, and rank r takes the r-th block of ``batch_size`` items of each: every global
batch, and so every rank's batch, holds at most one item per group. The order is a pure
function of (seed, epoch), and an epoch can be resumed part-way (``set_position``).

Loading (:class:`Batches`): loader processes, collate function, device placement and precision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import random
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from cdsvae.io import UserError


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any tuple of values; different tuples give unrelated streams."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels where PyTorch has them (a warning, not a failure, where it has none).

    Call it before any CUDA work: cuBLAS reads its workspace setting when it starts.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler that can start part-way into an epoch.

    ``samples_done`` of :meth:`set_position` is counted in samples of the global order (all
    ranks together); it must be a multiple of ``num_replicas`` for rank r to continue exactly
    where it stopped.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def set_position(self, epoch: int, samples_done: int) -> None:
        self.set_epoch(epoch)
        self.start = min(samples_done // self.num_replicas, self.num_samples)

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


def _epoch_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(repr(("unique-groups", int(seed), int(epoch))).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def unique_group_order(groups: Sequence[int] | np.ndarray, global_batch: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's item order (a whole number of global batches) with no group twice in a global batch.

    ``groups[i]`` is the group of item i; every group must hold the same number of items.
    Items that do not fill a last global batch are left out, as with ``drop_last``.
    """
    groups = np.asarray(groups, dtype=np.int64)
    if groups.ndim != 1 or groups.size == 0:
        raise ValueError("groups must be a non-empty 1-D sequence of group ids")
    if global_batch < 1:
        raise ValueError(f"global_batch must be >= 1, got {global_batch}")
    ids, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if counts.min() != counts.max():
        raise ValueError(f"every group must hold the same number of items, got {counts.min()} to {counts.max()}")
    num_groups, per_group = ids.size, int(counts[0])
    if num_groups < global_batch:
        raise ValueError(f"{num_groups} groups cannot fill a batch of {global_batch} with distinct groups")
    rng = np.random.default_rng(_epoch_seed(seed, epoch))
    # members[g] = the items of group g in a random order
    by_group = np.argsort(inverse, kind="stable").reshape(num_groups, per_group)
    members = np.take_along_axis(by_group, rng.permuted(np.tile(np.arange(per_group), (num_groups, 1)), axis=1),
                                 axis=1)
    order_groups: list[np.ndarray] = []
    filled = 0  # items already in the current (incomplete) global batch
    tail: np.ndarray = np.empty(0, dtype=np.int64)
    for _ in range(per_group):
        perm = rng.permutation(num_groups)
        if filled:
            need = global_batch - filled
            free = ~np.isin(perm, tail)
            head_pos = np.flatnonzero(free)[:need]
            rest = np.ones(num_groups, dtype=bool)
            rest[head_pos] = False
            perm = np.concatenate([perm[head_pos], perm[rest]])
        order_groups.append(perm)
        total = filled + num_groups
        filled = total % global_batch
        # filled < global_batch <= num_groups: the incomplete batch lies within this round
        tail = perm[num_groups - filled:] if filled else np.empty(0, dtype=np.int64)
    group_at = np.concatenate(order_groups)  # the group at each position of the epoch
    rounds = np.repeat(np.arange(per_group), num_groups)
    order = members[group_at, rounds]
    usable = (order.size // global_batch) * global_batch
    return order[:usable]


class UniqueGroupSampler(Sampler[int]):
    """This rank's items of :func:`unique_group_order`, resumable like :class:`ResumableDistributedSampler`."""

    def __init__(self, groups: Sequence[int] | np.ndarray, batch_size: int, num_replicas: int, rank: int,
                 seed: int):
        self.groups = np.asarray(groups, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.global_batch = self.batch_size * self.num_replicas
        num_groups = np.unique(self.groups).size
        if num_groups < self.global_batch:
            raise ValueError(f"the training set has {num_groups} groups (utterances), fewer than one batch of "
                             f"{self.batch_size} x {self.num_replicas} processes can hold once each")
        unique_group_order(self.groups, self.global_batch, self.seed, 0)  # fails early on unequal groups
        self.num_batches = self.groups.size // self.global_batch
        self.num_samples = self.num_batches * self.batch_size  # per rank
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_position(self, epoch: int, samples_done: int) -> None:
        """Start epoch ``epoch`` after ``samples_done`` samples of the global order (all ranks together)."""
        self.set_epoch(epoch)
        self.start = min(samples_done // self.num_replicas, self.num_samples)

    def rank_order(self) -> np.ndarray:
        order = unique_group_order(self.groups, self.global_batch, self.seed, self.epoch)
        blocks = order.reshape(self.num_batches, self.num_replicas, self.batch_size)
        return blocks[:, self.rank].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_order()[self.start:].tolist())

    def __len__(self) -> int:
        return self.num_samples - self.start


def check_global_batch(train_set: Dataset, batch_size: int, world_size: int, unique_groups: bool) -> None:
    """Refuse, naming the largest batch and process count that fit, a training set that cannot fill
    one step of ``batch_size`` per process on ``world_size`` processes (run before any starts by
    ``cdsvae.bin.train --check_inputs --nproc N``, and by the trainer itself). ``unique_groups``:
    ``train.unique_utts_per_batch``, for a training set with ``item_groups()``."""
    groups = getattr(train_set, "item_groups", None) if unique_groups else None
    if groups is not None:
        # every global batch holds at most one item of each group
        have, what = int(np.unique(groups()).size), "utterances (train.unique_utts_per_batch: one segment of each per batch)"
        per_proc, fits = have // world_size, have // batch_size
    else:
        # the sampler gives each process ceil(N / world_size) items
        have, what = len(train_set), "sequences"
        per_proc, fits = -(-have // world_size), have // batch_size
    if per_proc >= batch_size:
        return
    options = [f"train.batch_size {per_proc} or less" if per_proc >= 1 else None,
               f"at most {fits} process(es)" if fits >= 1 else None,
               "train.unique_utts_per_batch false" if groups is not None else None]
    raise UserError(f"the training set has {have} {what}, fewer than one global batch of {batch_size * world_size} "
                    f"(train.batch_size {batch_size} x {world_size} process(es)): use "
                    + " or ".join(o for o in options if o))


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch moved to ``device``; other values as they are."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def batch_size(batch: Any) -> int:
    """The number of sequences in a batch: the first dimension of its first tensor with one."""
    values = batch.values() if isinstance(batch, Mapping) else batch
    for v in values:
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return v.shape[0]
    raise UserError("a batch holds no tensor with a batch dimension")


@dataclasses.dataclass(frozen=True)
class Batches:
    """Loading and running batches on one device (``train.num_workers``, ``train.amp``)."""

    device: torch.device
    num_workers: int = 0
    collate_fn: Callable | None = None
    amp: str = "none"

    def loader(self, dataset: Dataset, **kw) -> DataLoader:
        return DataLoader(dataset, num_workers=self.num_workers, collate_fn=self.collate_fn,
                          pin_memory=self.device.type == "cuda", **kw)

    def to_device(self, batch: Any) -> Any:
        return to_device(batch, self.device)

    def autocast(self):
        """The forward pass's precision: ``amp`` none (float32), bf16 or fp16 autocast."""
        dtype = torch.float16 if self.amp == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.amp in ("bf16", "fp16"))
