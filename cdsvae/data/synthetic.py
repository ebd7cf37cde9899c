"""Sequences whose static and dynamic factors are known by construction.

Each sequence is ``x_t = sigmoid(P[static] + Q[dynamic, t] + noise)``: a per-sequence constant
pattern (the static factor, a class label) plus a per-step trajectory (the dynamic factor,
another label), in [0, 1] like images and roughly scaled like normalised features. It needs no
files, so tests and benchmarks can run the trainer at any frame shape (``[F]`` for spectral
frames, ``[C, H, W]`` for images). With ``with_motion`` each item also carries a ``x_motion``
view: the same trajectory over a different static pattern, which is what a motion view must be.

Items are a pure function of (seed, split, index): no state, so the order of loading and the
number of workers never change the data, and a resumed run sees exactly the same sequences.
"""

from __future__ import annotations

import math
import time
import zlib
from typing import Any, Mapping

import torch
from torch.utils.data import Dataset

from cdsvae.config import Field, Section, validate
from cdsvae.io import UserError

# The keys of ``data`` for ``data.type: synthetic``, declared once, here (besides the common ones
# of cdsvae.experiment.schema).
SYNTHETIC_DATA = Section({
    "num_train": Field(256, "int", minimum=0),
    "num_valid": Field(64, "int", minimum=0),
    "seq_len": Field(8, "int", minimum=1),
    "frame_shape": Field([16], "any"),
    "num_static": Field(4, "int", minimum=1),
    "num_dynamic": Field(3, "int", minimum=1),
    "noise": Field(0.05, "float", minimum=0.0),
    "seed": Field(0, "int"),
    "with_motion": Field(False, "bool"),
    "delay_s": Field(0.0, "float", minimum=0.0),  # per item: imitates slow storage in loader benchmarks and kill tests
}, open=True)


class SyntheticSequenceDataset(Dataset):
    def __init__(self, num_sequences: int, seq_len: int = 8, frame_shape: tuple[int, ...] = (16,),
                 num_static: int = 4, num_dynamic: int = 3, noise: float = 0.05, seed: int = 0,
                 split: str = "train", with_motion: bool = False, delay_s: float = 0.0):
        if num_sequences < 1 or seq_len < 1 or num_static < 1 or num_dynamic < 1:
            raise UserError("synthetic data: num_sequences, seq_len, num_static and num_dynamic must be >= 1")
        if with_motion and num_static < 2:
            raise UserError("synthetic data: with_motion needs num_static >= 2 (a different static pattern)")
        self.num_sequences = int(num_sequences)
        self.seq_len = int(seq_len)
        self.frame_shape = tuple(int(d) for d in frame_shape)
        self.num_static, self.num_dynamic = int(num_static), int(num_dynamic)
        self.noise = float(noise)
        self.with_motion = bool(with_motion)
        self.delay_s = float(delay_s)
        self.seed = int(seed)
        self.split_seed = zlib.crc32(split.encode()) ^ (self.seed * 1_000_003)
        dim = math.prod(self.frame_shape)
        g = torch.Generator().manual_seed(self.seed)
        self.static_patterns = 1.5 * torch.randn(self.num_static, dim, generator=g)
        # Smooth trajectories: a random direction per class moving along a sinusoid over time.
        t = torch.arange(self.seq_len, dtype=torch.float32)
        freq = 0.5 + torch.rand(self.num_dynamic, 1, generator=g)
        phase = 2 * math.pi * torch.rand(self.num_dynamic, 1, generator=g)
        direction = torch.randn(self.num_dynamic, 1, dim, generator=g)
        self.dynamic_patterns = 1.5 * torch.sin(freq * t + phase).unsqueeze(-1) * direction  # (K, T, D)

    def __len__(self) -> int:
        return self.num_sequences

    def labels(self, index: int) -> tuple[int, int]:
        """(static class, dynamic class) of item ``index``: what a probe should recover."""
        g = torch.Generator().manual_seed(self.split_seed + 7919 * index)
        static = int(torch.randint(self.num_static, (1,), generator=g))
        dynamic = int(torch.randint(self.num_dynamic, (1,), generator=g))
        return static, dynamic

    def _frames(self, static: int, dynamic: int, g: torch.Generator) -> torch.Tensor:
        logits = self.static_patterns[static] + self.dynamic_patterns[dynamic]
        logits = logits + self.noise * torch.randn(logits.shape, generator=g)
        return torch.sigmoid(logits).reshape(self.seq_len, *self.frame_shape)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_sequences:
            raise IndexError(index)
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        static, dynamic = self.labels(index)
        g = torch.Generator().manual_seed(self.split_seed + 7919 * index + 1)
        item = {"x": self._frames(static, dynamic, g), "static": static, "dynamic": dynamic}
        if self.with_motion:
            other = (static + 1 + int(torch.randint(self.num_static - 1, (1,), generator=g))) % self.num_static
            item["x_motion"] = self._frames(other, dynamic, g)
        return item


def build_synthetic_dataset(data_cfg: Mapping[str, Any], split: str) -> SyntheticSequenceDataset:
    """The ``data.type: synthetic`` builder: ``split == data.train_split`` gets ``num_train`` items."""
    unknown = set(data_cfg) - set(SYNTHETIC_DATA.fields) - {"type", "train_split", "valid_split"}
    if unknown:
        raise UserError(f"unknown key(s) for data.type synthetic: {', '.join(sorted(unknown))}; valid keys: "
                        f"{', '.join(sorted(SYNTHETIC_DATA.fields))}, train_split, valid_split")
    cfg = validate({"data": data_cfg}, {"data": SYNTHETIC_DATA}, "data (synthetic)")["data"]
    is_train = split == cfg.get("train_split", "train")
    try:
        return SyntheticSequenceDataset(
            num_sequences=int(cfg["num_train"] if is_train else cfg["num_valid"]),
            seq_len=int(cfg["seq_len"]), frame_shape=tuple(int(d) for d in cfg["frame_shape"]),
            num_static=int(cfg["num_static"]), num_dynamic=int(cfg["num_dynamic"]), noise=float(cfg["noise"]),
            seed=int(cfg["seed"]), split=split, with_motion=bool(cfg["with_motion"]),
            delay_s=float(cfg["delay_s"]))
    except (TypeError, ValueError) as e:
        raise UserError(f"data (synthetic): bad option value: {e}") from None
