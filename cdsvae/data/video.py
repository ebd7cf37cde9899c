"""Video sequences with labelled factors, stored as one memory-mapped npy per split.

A prepared split is a directory holding

- ``frames.npy``: (N, T, C, H, W), float in [0, 1] (float16/32/64) or uint8 (scaled by 1/255 on
  load, a quarter of the memory);
- ``labels.npz``: one integer array of shape (N,) per factor;
- ``factors.yaml``: ``factors: [{name, num_classes, kind: static|dynamic}, ...]``, the label
  space the judge classifier is built from.

Frames are read with ``np.load(mmap_mode="r")`` so a split larger than memory still loads, and
every item is checked when it is read (a corrupt value names the file and the index).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from cdsvae.config import Field, Section, validate
from cdsvae.io import UserError, atomic_open, atomic_write_text

FRAMES_FILE = "frames.npy"
LABELS_FILE = "labels.npz"
FACTORS_FILE = "factors.yaml"
FACTOR_KINDS = ("static", "dynamic")

# The keys of ``data`` for ``data.type: video``, declared once, here (besides the common ones of
# cdsvae.experiment.schema); other keys belong to the loader and are ignored.
VIDEO_DATA = Section({
    "root": Field("data", "any"),  # the directory holding the splits
    "frames": Field(FRAMES_FILE, "str"),
    "labels": Field(True, "bool"),
    "max_items": Field(None, "int", optional=True, minimum=1),
}, open=True)


@dataclass(frozen=True)
class Factor:
    """One labelled generative factor: static (per sequence) or dynamic (motion)."""

    name: str
    num_classes: int
    kind: str

    def as_dict(self) -> dict:
        return {"name": self.name, "num_classes": self.num_classes, "kind": self.kind}


def parse_factors(entries, source: str = "factors") -> list[Factor]:
    """Validate a list of ``{name, num_classes, kind}`` mappings (or Factors)."""
    if not isinstance(entries, (list, tuple)) or not entries:
        raise UserError(f"{source}: expected a non-empty list of factors")
    out: list[Factor] = []
    for i, e in enumerate(entries):
        if isinstance(e, Factor):
            e = e.as_dict()
        if not isinstance(e, Mapping):
            raise UserError(f"{source}: factor {i} is not a mapping")
        unknown = set(e) - {"name", "num_classes", "kind"}
        if unknown:
            raise UserError(f"{source}: factor {i} has unknown keys {sorted(unknown)}; valid: kind, name, num_classes")
        name, k, kind = e.get("name"), e.get("num_classes"), e.get("kind")
        if not isinstance(name, str) or not name:
            raise UserError(f"{source}: factor {i} needs a string 'name'")
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise UserError(f"{source}: factor '{name}' needs an integer 'num_classes' >= 2, got {k!r}")
        if kind not in FACTOR_KINDS:
            raise UserError(f"{source}: factor '{name}' has kind {kind!r}; expected one of {FACTOR_KINDS}")
        out.append(Factor(name, int(k), kind))
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: duplicate factor names {names}")
    return out


def read_factors(split_dir: str | os.PathLike) -> list[Factor]:
    path = Path(split_dir) / FACTORS_FILE
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({e.__class__.__name__})") from None
    if not isinstance(doc, Mapping) or "factors" not in doc:
        raise UserError(f"{path}: expected a mapping with key 'factors'")
    return parse_factors(doc["factors"], str(path))


def write_video_split(
    split_dir: str | os.PathLike,
    frames: np.ndarray,
    labels: Mapping[str, np.ndarray],
    factors: Sequence[Factor | Mapping],
) -> Path:
    """Write one split in the layout above, each file atomically; returns the directory.

    ``frames`` must already be (N, T, C, H, W) uint8 or float in [0, 1].
    """
    split_dir = Path(split_dir)
    factors = parse_factors(list(factors), f"{split_dir}/{FACTORS_FILE}")
    _check_frames_array(frames, f"{split_dir}/{FRAMES_FILE}", full=True)
    arrays = _check_labels(dict(labels), factors, len(frames), f"{split_dir}/{LABELS_FILE}")
    split_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(split_dir / FRAMES_FILE, "wb") as f:
        np.save(f, np.ascontiguousarray(frames))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_open(split_dir / LABELS_FILE, "wb") as f:
        f.write(buf.getvalue())
    atomic_write_text(
        split_dir / FACTORS_FILE,
        yaml.safe_dump({"factors": [fa.as_dict() for fa in factors]}, sort_keys=False),
    )
    return split_dir


def _check_frames_array(frames: np.ndarray, source: str, full: bool) -> None:
    if frames.ndim != 5:
        raise UserError(f"{source}: expected frames of shape (N, T, C, H, W), got shape {tuple(frames.shape)}")
    if frames.shape[0] == 0 or frames.shape[1] == 0:
        raise UserError(f"{source}: no sequences or no frames, shape {tuple(frames.shape)}")
    if frames.shape[2] not in (1, 3):
        raise UserError(f"{source}: expected 1 or 3 channels in axis 2 (N, T, C, H, W), got shape {tuple(frames.shape)}")
    if frames.dtype == np.uint8:
        return
    if frames.dtype not in (np.float16, np.float32, np.float64):
        raise UserError(f"{source}: dtype {frames.dtype} not supported; expected uint8 or float in [0, 1]")
    sample = frames if full else frames[: min(len(frames), 16)]
    lo, hi = float(np.min(sample)), float(np.max(sample))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise UserError(f"{source}: float frames must lie in [0, 1], found values in [{lo:g}, {hi:g}]")


def _check_labels(labels: dict, factors: list[Factor], n: int, source: str) -> dict[str, np.ndarray]:
    names = [f.name for f in factors]
    missing = [m for m in names if m not in labels]
    if missing:
        raise UserError(f"{source}: no labels for factors {missing} (has {sorted(labels)})")
    out = {}
    for fa in factors:
        a = np.asarray(labels[fa.name])
        if a.shape != (n,):
            raise UserError(f"{source}: labels '{fa.name}' have shape {a.shape}, expected ({n},) to match the frames")
        if not np.issubdtype(a.dtype, np.integer):
            if not np.issubdtype(a.dtype, np.floating) or not np.all(a == np.round(a)):
                raise UserError(f"{source}: labels '{fa.name}' must be integer class indices, got dtype {a.dtype}")
        a = a.astype(np.int64)
        if n and (a.min() < 0 or a.max() >= fa.num_classes):
            raise UserError(
                f"{source}: labels '{fa.name}' must lie in [0, {fa.num_classes - 1}], found [{a.min()}, {a.max()}]"
            )
        out[fa.name] = a
    return out


class VideoDataset(Dataset):
    """Items ``{"x": (T, C, H, W) float32 in [0, 1], "labels": {factor: long}, "index": int}``."""

    def __init__(self, split_dir: str | os.PathLike, frames_file: str = FRAMES_FILE, labels: bool = True,
                 max_items: int | None = None):
        self.split_dir = Path(split_dir)
        self.frames_path = self.split_dir / frames_file
        if not self.frames_path.is_file():
            raise UserError(f"{self.frames_path}: no such frames file (prepare the data first)")
        try:
            self.frames = np.load(self.frames_path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise UserError(f"{self.frames_path}: not a readable npy array ({e})") from None
        _check_frames_array(self.frames, str(self.frames_path), full=False)
        self.num_items = len(self.frames) if max_items is None else min(int(max_items), len(self.frames))
        self.factors: list[Factor] = []
        self.labels: dict[str, np.ndarray] = {}
        if labels:
            self.factors = read_factors(self.split_dir)
            lpath = self.split_dir / LABELS_FILE
            if not lpath.is_file():
                raise UserError(f"{lpath}: no such labels file")
            try:
                with np.load(lpath, allow_pickle=False) as z:
                    raw = {k: z[k] for k in z.files}
            except (ValueError, OSError) as e:
                raise UserError(f"{lpath}: not a readable npz archive ({e})") from None
            self.labels = _check_labels(raw, self.factors, len(self.frames), str(lpath))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, C, H, W) of one item."""
        return tuple(int(d) for d in self.frames.shape[1:])

    def __len__(self) -> int:
        return self.num_items

    def factor_names(self, kind: str | None = None) -> list[str]:
        return [f.name for f in self.factors if kind is None or f.kind == kind]

    def get_frames(self, index: int) -> torch.Tensor:
        a = np.asarray(self.frames[index])
        if a.dtype == np.uint8:
            return torch.from_numpy(a.astype(np.float32) / 255.0)
        x = torch.from_numpy(a.astype(np.float32))
        lo, hi = float(x.min()), float(x.max())
        if not (lo >= 0.0 and hi <= 1.0):
            raise UserError(f"{self.frames_path}: item {index} has values in [{lo:g}, {hi:g}], expected [0, 1]")
        return x

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_items:
            raise IndexError(index)
        item = {"x": self.get_frames(index), "index": index}
        if self.factors:
            item["labels"] = {k: torch.tensor(int(v[index]), dtype=torch.long) for k, v in self.labels.items()}
        return item


def resolve_split_dir(data_cfg: Mapping, split: str) -> Path:
    """``split`` is a directory holding the frames, or a name under ``data_cfg["root"]``."""
    direct = Path(split)
    if (direct / data_cfg.get("frames", FRAMES_FILE)).is_file():
        return direct
    root = data_cfg.get("root", VIDEO_DATA.fields["root"].default)
    return Path(root) / split


def build_video_dataset(data_cfg: Mapping | None, split: str) -> VideoDataset:
    """Dataset over a prepared split; keys of ``data_cfg`` not declared in :data:`VIDEO_DATA`
    belong to the loader (batch size, workers...) and are ignored here."""
    given = {k: v for k, v in dict(data_cfg or {}).items() if k in VIDEO_DATA.fields}
    cfg = validate({"data": given}, {"data": VIDEO_DATA}, "data (video)")["data"]
    split_dir = resolve_split_dir(cfg, split)
    if not split_dir.is_dir():
        raise UserError(f"{split_dir}: no such data directory (data.root={cfg['root']!r}, split={split!r})")
    return VideoDataset(split_dir, frames_file=cfg["frames"], labels=bool(cfg["labels"]), max_items=cfg["max_items"])
