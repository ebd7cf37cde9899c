#!/usr/bin/env python3
"""Stochastic Moving MNIST -> data/{train,test} in the cdsvae video layout.

Each sequence: ``--num_digits`` (default 2, as in Denton & Fergus' stochastic moving MNIST) 28x28
digits moving on a black 64x64 canvas for 15 frames, composited by pixel-wise maximum. A digit
starts with a velocity drawn from 8 directions (E, SE, S, SW, W, NW, N, NE; image y points down)
times a speed of 2..4 pixels per frame; whenever it would leave the canvas it is clamped to the wall
and draws a new random velocity (each component in -4..4, pointing away from the wall it hit), so
the motion is not predictable from the first frames alone.

Labels per digit slot k (slots are ordered left to right: slot k starts in the k-th vertical band
of the canvas, so "the left digit" is well defined):

- ``digit<k>``  (static, 10 classes): the digit's identity;
- ``direction<k>`` (dynamic, 8 classes): its initial direction. Starting positions keep every
  digit at least one step from the walls, so the first move always shows this direction; this is
  what the judge classifies in protocol A on SM-MNIST.

Digits come from MNIST IDX files (``--mnist DIR`` with train-images-idx3-ubyte[.gz],
train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]; the test
split uses the t10k digits) or, without a path, from scikit-learn's bundled 8x8 digits upscaled to
28x28 (a seeded 80/20 split of its 1797 images). Everything is drawn from ``--seed``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from pathlib import Path

import numpy as np

from cdsvae.bin import run_main
from cdsvae.data.video import Factor, write_video_split
from cdsvae.io import UserError, atomic_write_text

SIZE = 64
DIGIT = 28
FRAMES = 15
MAX_SPEED = 4
# (dx, dy) of the 8 direction classes, image coordinates (y down).
DIRECTIONS = np.array([(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)], dtype=np.int64)
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (optionally gzipped): 2 zero bytes, a type code, the number of dimensions,
    big-endian int32 sizes, then the data in C order."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise UserError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - header != count * dtype.itemsize:
        raise UserError(f"{path}: IDX sizes {dims} need {count * dtype.itemsize} data bytes, "
                        f"file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise UserError(f"{root}: no {stem}[.gz] (MNIST in db.sh must point at the directory of the IDX files)")


def load_mnist(root: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images (N, 28, 28) uint8, labels (N,) int64)} from the four IDX files."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such directory (MNIST in db.sh)")
    out = {}
    for split, (img_stem, lab_stem) in MNIST_FILES.items():
        ip, lp = _find(root, img_stem), _find(root, lab_stem)
        images, labels = read_idx(ip), read_idx(lp)
        if images.ndim != 3 or images.shape[1:] != (DIGIT, DIGIT) or images.dtype != np.uint8:
            raise UserError(f"{ip}: expected uint8 images (N, 28, 28), got {images.dtype} {images.shape}")
        if labels.shape != (len(images),):
            raise UserError(f"{lp}: {labels.shape} labels for {len(images)} images in {ip}")
        if labels.min() < 0 or labels.max() > 9:
            raise UserError(f"{lp}: labels must lie in 0..9")
        out[split] = (images, labels.astype(np.int64))
    return out


def load_bundled_digits(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 8x8 digits (values 0..16) as 28x28 uint8: bilinear to 24x24, 2-pixel border."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    d = load_digits()
    small = d.images.astype(np.float32) / 16.0
    big = np.clip(zoom(small, (1, 3, 3), order=1), 0, 1)  # (N, 24, 24)
    images = np.zeros((len(big), DIGIT, DIGIT), dtype=np.uint8)
    images[:, 2:26, 2:26] = np.rint(big * 255)
    perm = np.random.RandomState(seed).permutation(len(images))
    cut = int(0.8 * len(images))
    return {"train": (images[perm[:cut]], d.target[perm[:cut]].astype(np.int64)),
            "test": (images[perm[cut:]], d.target[perm[cut:]].astype(np.int64))}


def factors(num_digits: int) -> list[Factor]:
    return ([Factor(f"digit{k}", 10, "static") for k in range(num_digits)]
            + [Factor(f"direction{k}", 8, "dynamic") for k in range(num_digits)])


def start_positions(rng: np.random.RandomState, n: int, num_digits: int) -> np.ndarray:
    """(N, D, 2) integer (x, y) top-left corners, slot k in the k-th band, >= MAX_SPEED from the walls."""
    lim = SIZE - DIGIT
    lo, hi = MAX_SPEED, lim - MAX_SPEED
    edges = np.linspace(lo, hi + 1, num_digits + 1)
    pos = np.empty((n, num_digits, 2), dtype=np.int64)
    for k in range(num_digits):
        a, b = int(np.ceil(edges[k])), int(np.floor(edges[k + 1]))
        # Bands are half-open and separated by at least a pixel, so the slot order is strict.
        pos[:, k, 0] = rng.randint(a, max(a + 1, b - (1 if num_digits > 1 else 0)), size=n)
    pos[:, :, 1] = rng.randint(lo, hi + 1, size=(n, num_digits))
    return pos


def trajectories(rng: np.random.RandomState, n: int, num_digits: int, frames: int = FRAMES):
    """Positions (N, T, D, 2) and initial direction classes (N, D) of bouncing digits."""
    lim = SIZE - DIGIT
    pos = start_positions(rng, n, num_digits)
    direction = rng.randint(0, 8, size=(n, num_digits))
    speed = rng.randint(2, MAX_SPEED + 1, size=(n, num_digits, 1))
    vel = DIRECTIONS[direction] * speed
    out = np.empty((n, frames, num_digits, 2), dtype=np.int64)
    out[:, 0] = pos
    for t in range(1, frames):
        new = pos + vel
        low, high = new < 0, new > lim
        hit = (low | high).any(axis=-1, keepdims=True)
        new = np.clip(new, 0, lim)
        # A new random velocity at every bounce, pointing away from the wall on the axes that hit it.
        fresh = rng.randint(-MAX_SPEED, MAX_SPEED + 1, size=vel.shape)
        mag = rng.randint(1, MAX_SPEED + 1, size=vel.shape)
        fresh = np.where(low, mag, np.where(high, -mag, fresh))
        vel = np.where(hit, fresh, vel)
        pos = new
        out[:, t] = pos
    return out, direction


def render(images: np.ndarray, traj: np.ndarray) -> np.ndarray:
    """(N, T, 1, 64, 64) uint8 frames: digit ``images`` (N, D, 28, 28) at ``traj`` (N, T, D, 2)."""
    n, frames, num_digits, _ = traj.shape
    out = np.zeros((n, frames, SIZE, SIZE), dtype=np.uint8)
    ni = np.arange(n)[:, None, None]
    ar = np.arange(DIGIT)
    for t in range(frames):
        for k in range(num_digits):
            rows = (traj[:, t, k, 1][:, None] + ar)[:, :, None]  # (N, 28, 1)
            cols = (traj[:, t, k, 0][:, None] + ar)[:, None, :]  # (N, 1, 28)
            frame = out[:, t]
            frame[ni, rows, cols] = np.maximum(frame[ni, rows, cols], images[:, k])
    return out[:, :, None]


def make_split(images: np.ndarray, labels: np.ndarray, n: int, num_digits: int, rng: np.random.RandomState,
               frames: int = FRAMES):
    """Frames (N, T, 1, 64, 64) uint8 and labels {digit<k>, direction<k>}; digit classes balanced by
    cycling 0..9 through a shuffled order before picking an image of that class."""
    by_class = [np.nonzero(labels == c)[0] for c in range(10)]
    if any(len(b) == 0 for b in by_class):
        raise UserError("digit source: every class 0..9 needs at least one image")
    cls = np.stack([rng.permutation(np.arange(n) % 10) for _ in range(num_digits)], axis=1)  # (N, D)
    pick = np.empty((n, num_digits), dtype=np.int64)
    for c in range(10):
        m = cls == c
        pick[m] = by_class[c][rng.randint(0, len(by_class[c]), size=int(m.sum()))]
    traj, direction = trajectories(rng, n, num_digits, frames)
    x = render(images[pick], traj)
    out = {f"digit{k}": cls[:, k].astype(np.int64) for k in range(num_digits)}
    out.update({f"direction{k}": direction[:, k].astype(np.int64) for k in range(num_digits)})
    return x, out, traj


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="make_smmnist", description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist", default="", help="dir of the MNIST IDX files; empty: scikit-learn's digits")
    p.add_argument("--outdir", default="data")
    p.add_argument("--train_size", type=int, default=10000)
    p.add_argument("--test_size", type=int, default=2000)
    p.add_argument("--num_digits", type=int, default=2)
    p.add_argument("--frames", type=int, default=FRAMES)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.num_digits < 1 or args.num_digits > 3:
        raise UserError("--num_digits must be 1, 2 or 3 (bands of a 64-pixel canvas)")
    if args.train_size < 1 or args.test_size < 1 or args.frames < 2:
        raise UserError("--train_size and --test_size must be >= 1 and --frames >= 2")
    outdir = Path(args.outdir)
    stamp = {k: getattr(args, k) for k in ("train_size", "test_size", "num_digits", "frames", "seed")}
    stamp["mnist"] = str(Path(args.mnist).resolve()) if args.mnist else "sklearn-digits"
    stamp_file = outdir / ".make_smmnist.json"
    if (all((outdir / s / "factors.yaml").is_file() for s in ("train", "test")) and stamp_file.is_file()
            and json.loads(stamp_file.read_text()) == stamp):
        print(f"make_smmnist: {outdir}/train and {outdir}/test are up to date; skipping")
        return 0
    source = load_mnist(args.mnist) if args.mnist else load_bundled_digits(args.seed)
    rng = np.random.RandomState(args.seed)
    for split, n in (("train", args.train_size), ("test", args.test_size)):
        images, labels = source[split]
        x, y, _ = make_split(images, labels, n, args.num_digits, rng, args.frames)
        write_video_split(outdir / split, x, y, factors(args.num_digits))
        print(f"make_smmnist: {outdir / split}: {n} sequences of {x.shape[1:]} "
              f"({args.num_digits} digits from {stamp['mnist']})")
    atomic_write_text(stamp_file, json.dumps(stamp, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
