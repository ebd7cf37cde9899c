"""Random streams and deterministic kernels: seeds derived from tuples, the global RNGs, and the
``train.deterministic`` switch.

Every random stream of a run is seeded from ``train.seed`` and a name (and the rank, or the
epoch) through :func:`derive_seed`, so streams are unrelated to each other and a run is a
function of its seed.
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any

import numpy as np
import torch


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
