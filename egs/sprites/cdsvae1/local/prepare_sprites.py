#!/usr/bin/env python3
"""Sprites -> data/{train,test} in the cdsvae video layout (frames.npy, labels.npz, factors.yaml).

Sources, by what ``--sprites`` points at:

- the C-DSVAE authors' ``data.pkl`` (a file, or a directory holding it): ``X_train``/``X_test``
  (N, 8, 64, 64, 3) floats in [0, 1], ``A_train``/``A_test`` attribute classes (N, 4) in the order
  [skin, pant, top, hair] (one-hot (N, 8, 4, 6) is accepted too), ``D_train``/``D_test`` motion
  (N,) 0..8 (or one-hot (N, 8, 9)); the precomputed ``c_augs_*``/``m_augs_*`` are not used (views are
  made on the fly);
- the output directory of Li & Mandt's generator (``frame_to_npy.py``), i.e. ``npy/`` or its parent:
  ``{action}_{direction}_frames_{split}.npy`` (n, 8, 64, 64, 3) floats (pixel / 256) and
  ``{action}_{direction}_attributes_{split}.npy`` one-hot (n, 8, 4, 6) [body, bottom, top, hair],
  actions ``walk spellcard slash``, directions ``front left right``, motion label
  3 * action + direction; the ``*_directions_*`` files are not read (the generator writes the test
  directions over the train file). Sequences are shuffled with ``--seed`` like its loader;
- nothing (empty): the procedural corpus of ``make_sprites.py``.

Frames are stored as uint8 by default (``round(255 x)``; a quarter of the float32 size).
A re-run with the same source and options leaves the data as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cdsvae.bin import run_main  # noqa: E402
from cdsvae.data.video import Factor, write_video_split  # noqa: E402
from cdsvae.io import UserError, atomic_write_text  # noqa: E402

ATTRIBUTES = ("skin", "pant", "top", "hair")
FACTORS = [Factor(a, 6, "static") for a in ATTRIBUTES] + [Factor("motion", 9, "dynamic")]
GEN_ACTIONS = ("walk", "spellcard", "slash")  # the generator's spelling
GEN_DIRECTIONS = ("front", "left", "right")
SPLITS = ("train", "test")
CHUNK = 512


def to_frames(x: np.ndarray, source: str, dtype: str) -> np.ndarray:
    """(N, T, H, W, 3) float in [0, 1] -> (N, T, 3, H, W) ``dtype``, converted in chunks."""
    if x.ndim != 5 or x.shape[-1] != 3:
        raise UserError(f"{source}: expected frames (N, T, 64, 64, 3), got shape {x.shape}")
    n, t, h, w, c = x.shape
    out = np.empty((n, t, c, h, w), dtype=np.uint8 if dtype == "uint8" else np.float32)
    for i in range(0, n, CHUNK):
        part = np.asarray(x[i:i + CHUNK], dtype=np.float32)
        lo, hi = float(part.min()), float(part.max())
        if lo < 0 or hi > 1 or not np.isfinite(lo + hi):
            raise UserError(f"{source}: frame values must lie in [0, 1], found [{lo:g}, {hi:g}]")
        part = part.transpose(0, 1, 4, 2, 3)
        out[i:i + CHUNK] = np.rint(part * 255) if dtype == "uint8" else part
    return out


def attr_classes(a: np.ndarray, n: int, source: str) -> np.ndarray:
    """(N, 4) classes, or one-hot (N, T, 4, 6) / (N, 4, 6) -> (N, 4) int64."""
    a = np.asarray(a)
    if a.ndim == 4:
        a = a[:, 0]
    if a.ndim == 3:
        a = a.argmax(axis=-1)
    if a.shape != (n, 4):
        raise UserError(f"{source}: expected attributes (N, 4) or one-hot (N, T, 4, 6) with N={n}, got {a.shape}")
    return a.astype(np.int64)


def motion_classes(d: np.ndarray, n: int, source: str) -> np.ndarray:
    d = np.asarray(d)
    if d.ndim == 3:
        d = d[:, 0]
    if d.ndim == 2:
        d = d.argmax(axis=-1)
    if d.shape != (n,):
        raise UserError(f"{source}: expected motion labels (N,) or one-hot (N, T, 9) with N={n}, got {d.shape}")
    return d.astype(np.int64)


def labels_from(attrs: np.ndarray, motions: np.ndarray) -> dict[str, np.ndarray]:
    out = {name: attrs[:, k] for k, name in enumerate(ATTRIBUTES)}
    out["motion"] = motions
    return out


def load_pkl(path: Path, dtype: str):
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)  # the user's own file, as the authors distribute it
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
        raise UserError(f"{path}: not a readable pickle ({e.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a dict with keys X_train, X_test, A_*, D_*")
    out = {}
    for split in SPLITS:
        keys = [f"X_{split}", f"A_{split}", f"D_{split}"]
        missing = [k for k in keys if k not in data]
        if missing:
            raise UserError(f"{path}: missing keys {missing} (has {sorted(data)})")
        x = np.asarray(data[f"X_{split}"])
        frames = to_frames(x, f"{path}:X_{split}", dtype)
        n = len(frames)
        attrs = attr_classes(data[f"A_{split}"], n, f"{path}:A_{split}")
        motions = motion_classes(data[f"D_{split}"], n, f"{path}:D_{split}")
        out[split] = (frames, labels_from(attrs, motions))
    return out


def find_npy_dir(root: Path) -> Path | None:
    probe = f"{GEN_ACTIONS[0]}_{GEN_DIRECTIONS[0]}_frames_train.npy"
    for d in (root, root / "npy"):
        if (d / probe).is_file():
            return d
    return None


def load_generator_npy(npy_dir: Path, dtype: str, seed: int):
    out = {}
    for split in SPLITS:
        frames, attrs, motions = [], [], []
        for ai, act in enumerate(GEN_ACTIONS):
            for di, direc in enumerate(GEN_DIRECTIONS):
                fx = npy_dir / f"{act}_{direc}_frames_{split}.npy"
                fa = npy_dir / f"{act}_{direc}_attributes_{split}.npy"
                for f in (fx, fa):
                    if not f.is_file():
                        raise UserError(f"{f}: missing (expected the 18 frames/attributes files of the generator)")
                x = to_frames(np.load(fx, mmap_mode="r"), str(fx), dtype)
                frames.append(x)
                attrs.append(attr_classes(np.load(fa), len(x), str(fa)))
                motions.append(np.full(len(x), 3 * ai + di, dtype=np.int64))
        frames = np.concatenate(frames)
        perm = np.random.RandomState(seed).permutation(len(frames))
        out[split] = (frames[perm], labels_from(np.concatenate(attrs)[perm], np.concatenate(motions)[perm]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="prepare_sprites", description=__doc__.split("\n\n")[0])
    p.add_argument("--sprites", default="", help="data.pkl, or the generator's npy dir; empty: procedural corpus")
    p.add_argument("--outdir", default="data", help="writes OUTDIR/train and OUTDIR/test (default: %(default)s)")
    p.add_argument("--train_size", type=int, default=9000, help="procedural corpus only (default: %(default)s)")
    p.add_argument("--test_size", type=int, default=2664, help="procedural corpus only (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="character permutation / shuffling seed")
    p.add_argument("--dtype", choices=("uint8", "float32"), default="uint8", help="frames storage type")
    args = p.parse_args(argv)

    outdir = Path(args.outdir)
    src = Path(args.sprites) if args.sprites else None
    stamp = {"sprites": str(src.resolve()) if src else "", "dtype": args.dtype, "seed": args.seed}
    if src is not None:
        if not src.exists():
            raise UserError(f"{src}: no such file or directory (SPRITES in db.sh)")
        st = src.stat()
        stamp.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    else:
        stamp.update(train_size=args.train_size, test_size=args.test_size, generator="make_sprites")
    stamp_file = outdir / ".prepare_sprites.json"
    done = all((outdir / s / "factors.yaml").is_file() for s in SPLITS)
    if done and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        print(f"prepare_sprites: {outdir}/train and {outdir}/test are up to date; skipping")
        return 0

    if src is None:
        from make_sprites import make_sprites

        if args.train_size < 1 or args.test_size < 1:
            raise UserError("--train_size and --test_size must be >= 1")
        (xtr, ytr), (xte, yte) = make_sprites(args.train_size, args.test_size, args.seed)
        if args.dtype == "float32":
            xtr, xte = xtr.astype(np.float32) / 255, xte.astype(np.float32) / 255
        splits = {"train": (xtr, ytr), "test": (xte, yte)}
        what = "procedural Sprites"
    elif src.is_file() or (src / "data.pkl").is_file():
        pkl = src if src.is_file() else src / "data.pkl"
        splits = load_pkl(pkl, args.dtype)
        what = str(pkl)
    else:
        npy_dir = find_npy_dir(src)
        if npy_dir is None:
            raise UserError(f"{src}: expected data.pkl or the generator's npy files "
                            f"(e.g. {src}/npy/walk_front_frames_train.npy)")
        splits = load_generator_npy(npy_dir, args.dtype, args.seed)
        what = str(npy_dir)
    for split, (frames, labels) in splits.items():
        write_video_split(outdir / split, frames, labels, FACTORS)
        counts = np.bincount(labels["motion"], minlength=9).tolist()
        print(f"prepare_sprites: {outdir / split}: {len(frames)} sequences of {frames.shape[1:]} "
              f"from {what}; per motion {counts}")
    atomic_write_text(stamp_file, json.dumps(stamp, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
