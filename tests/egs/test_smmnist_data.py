"""SM-MNIST: IDX parsing from small fakes, bouncing trajectories, labels and their balance."""

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from cdsvae.data.video import VideoDataset
from cdsvae.io import UserError

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "smmnist" / "cdsvae1"
sys.path.insert(0, str(RECIPE / "local"))

import make_smmnist as sm  # noqa: E402


def idx_bytes(a: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[a.dtype]
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def fake_mnist(root: Path, n_train=30, n_test=20, gz=False, seed=0):
    """Digit c is a 28x28 image whose pixel values are all c * 20 + 10 inside a 20x20 square."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 4:24, 4:24] = c * 20 + 10
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            data = idx_bytes(arr)
            name = root / f"{prefix}-{kind}"
            if gz:
                Path(str(name) + ".gz").write_bytes(gzip.compress(data))
            else:
                name.write_bytes(data)
    return root


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    fake_mnist(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    images = sm.read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    labels = sm.read_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}")
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (30,)
    assert np.all(images[:, 10, 10] == labels * 20 + 10)
    wide = np.arange(6, dtype=">i4").reshape(2, 3)
    (tmp_path / "w").write_bytes(idx_bytes(wide))
    assert sm.read_idx(tmp_path / "w").tolist() == [[0, 1, 2], [3, 4, 5]]


def test_read_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(UserError, match="bad: not an IDX"):
        sm.read_idx(tmp_path / "bad")
    good = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    (tmp_path / "short").write_bytes(good[:-10])
    with pytest.raises(UserError, match="short: IDX sizes"):
        sm.read_idx(tmp_path / "short")
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        sm.load_mnist(tmp_path)


def test_make_smmnist_from_idx(tmp_path):
    root = fake_mnist(tmp_path / "mnist", gz=True)
    out = tmp_path / "data"
    args = ["--mnist", str(root), "--outdir", str(out), "--train_size", "40", "--test_size", "20", "--seed", "1"]
    assert sm.main(args) == 0
    for split, n in (("train", 40), ("test", 20)):
        ds = VideoDataset(out / split)
        assert len(ds) == n and ds.shape == (15, 1, 64, 64)
        assert ds.factor_names("static") == ["digit0", "digit1"]
        assert ds.factor_names("dynamic") == ["direction0", "direction1"]
        for k in range(2):
            assert np.bincount(ds.labels[f"digit{k}"], minlength=10).tolist() == [n // 10] * 10
        # The left digit's identity is visible in the first frame: its square has value c * 20 + 10.
        for i in range(n):
            x0 = ds[i]["x"][0, 0].numpy()
            cols = np.nonzero(x0.max(axis=0) > 0)[0]
            left = x0[:, cols[0]:cols[0] + 1].max()
            assert round(left * 255) == ds.labels["digit0"][i] * 20 + 10
    assert sm.main(args) == 0  # second run: up to date


def test_trajectories_stay_inside_and_bounce_randomly():
    rng = np.random.RandomState(0)
    traj, direction = sm.trajectories(rng, 300, 2, frames=15)
    lim = sm.SIZE - sm.DIGIT
    assert traj.min() >= 0 and traj.max() <= lim
    disp = np.diff(traj, axis=1)  # (N, T-1, D, 2)
    # The first move shows the initial direction class.
    assert np.array_equal(np.sign(disp[:, 0]), np.sign(sm.DIRECTIONS[direction]))
    # The velocity only changes when a wall is touched (a bounce, or the clamp onto the wall).
    at_wall = ((traj == 0) | (traj == lim)).any(axis=-1)  # (N, T, D)
    changed = (disp[:, 1:] != disp[:, :-1]).any(axis=-1)  # (N, T-2, D)
    assert not np.any(changed & ~(at_wall[:, 1:-1] | at_wall[:, 2:]))
    assert changed.sum() > 100  # bounces happen, and they change the velocity
    # Slots are ordered left to right at the start.
    assert np.all(traj[:, 0, 0, 0] < traj[:, 0, 1, 0])
    # Direction classes are all used.
    assert np.bincount(direction.ravel(), minlength=8).min() > 30


def test_digits_fully_inside_every_frame():
    rng = np.random.RandomState(0)
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[0, :] = digit[-1, :] = digit[:, 0] = digit[:, -1] = 255  # the border pixels of the digit box
    traj, _ = sm.trajectories(rng, 50, 1, frames=15)
    x = sm.render(np.broadcast_to(digit, (50, 1, 28, 28)), traj)
    assert x.shape == (50, 15, 1, 64, 64)
    assert np.all(x.reshape(50, 15, -1).astype(int).sum(-1) == int(digit.astype(int).sum()))


def test_deterministic_and_bundled_digits(tmp_path):
    src = sm.load_bundled_digits(0)
    images, labels = src["train"]
    assert images.shape[1:] == (28, 28) and images.dtype == np.uint8
    assert set(labels.tolist()) == set(range(10)) and len(images) + len(src["test"][0]) == 1797
    a = sm.make_split(images, labels, 20, 1, np.random.RandomState(5))
    b = sm.make_split(images, labels, 20, 1, np.random.RandomState(5))
    assert np.array_equal(a[0], b[0]) and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    assert a[0].shape == (20, 15, 1, 64, 64)
