"""Test signals shared by the feature and evaluation tests."""

import numpy as np


def harmonic_wave(f0, seconds=1.0, sr=16000, seed=0):
    """A voiced-like sound: 14 harmonics of a slowly wandering f0 with a slowly varying level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / sr
    amp = 0.1 * (1 + 0.5 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)))
    return (amp * sum(np.sin(k * phase) / k for k in range(1, 15))).astype(np.float32)
