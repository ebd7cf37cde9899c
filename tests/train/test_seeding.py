"""Seeds derived from tuples, the global RNGs, deterministic kernels."""

import random

import numpy as np
import torch

from cdsvae.train.seeding import derive_seed, seed_everything, set_deterministic


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
