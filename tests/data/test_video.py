"""The video split layout: writing, memory-mapped loading, labels, and errors that name the file."""

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from cdsvae.data.video import Factor, VideoDataset, build_video_dataset, read_factors, write_video_split
from cdsvae.io import UserError

FACTORS = [Factor("shape", 3, "static"), Factor("move", 4, "dynamic")]


def make(n=6, t=4, c=3, hw=8, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, t, c, hw, hw))
    if dtype == np.uint8:
        x = np.rint(x * 255).astype(np.uint8)
    else:
        x = x.astype(dtype)
    labels = {"shape": np.arange(n) % 3, "move": np.arange(n) % 4}
    return x, labels


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_roundtrip(tmp_path, dtype):
    x, labels = make(dtype=dtype)
    write_video_split(tmp_path / "train", x, labels, FACTORS)
    ds = build_video_dataset({"root": str(tmp_path), "batch_size": 3}, "train")
    assert isinstance(ds.frames, np.memmap)
    assert len(ds) == 6 and ds.shape == (4, 3, 8, 8)
    assert ds.factor_names("static") == ["shape"] and ds.factor_names("dynamic") == ["move"]
    want = x.astype(np.float32) / 255 if dtype == np.uint8 else x
    for i in range(6):
        item = ds[i]
        assert item["x"].dtype == torch.float32
        assert np.allclose(item["x"].numpy(), want[i], atol=1e-7)
        assert item["labels"] == {"shape": i % 3, "move": i % 4}
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["x"].shape == (4, 4, 3, 8, 8)
    assert batch["labels"]["move"].tolist() == [0, 1, 2, 3]
    assert read_factors(tmp_path / "train") == FACTORS


def test_split_given_as_a_path_and_options(tmp_path):
    x, labels = make()
    d = write_video_split(tmp_path / "a" / "test", x, labels, FACTORS)
    ds = build_video_dataset({"max_items": 2, "labels": False}, str(d))
    with pytest.raises(UserError, match=r"'data.max_items' must be an integer >= 1 or null, got 0"):
        build_video_dataset({"max_items": 0}, str(d))
    assert len(ds) == 2 and "labels" not in ds[0]
    with pytest.raises(IndexError):
        ds[2]


def test_missing_dir_names_it(tmp_path):
    with pytest.raises(UserError, match="nope"):
        build_video_dataset({"root": str(tmp_path)}, "nope")


def test_write_rejects_bad_arrays(tmp_path):
    x, labels = make()
    with pytest.raises(UserError, match="frames.npy.*shape"):
        write_video_split(tmp_path / "s", x[:, 0], labels, FACTORS)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        write_video_split(tmp_path / "s", x * 2, labels, FACTORS)
    with pytest.raises(UserError, match="labels.npz.*'shape'.*shape"):
        write_video_split(tmp_path / "s", x, {**labels, "shape": labels["shape"][:4]}, FACTORS)
    with pytest.raises(UserError, match=r"'move' must lie in \[0, 3\]"):
        write_video_split(tmp_path / "s", x, {**labels, "move": labels["move"] + 1}, FACTORS)
    with pytest.raises(UserError, match="no labels for factors"):
        write_video_split(tmp_path / "s", x, {"shape": labels["shape"]}, FACTORS)
    with pytest.raises(UserError, match="kind"):
        write_video_split(tmp_path / "s", x, labels, [{"name": "shape", "num_classes": 3, "kind": "other"}])
    assert not (tmp_path / "s").exists()


def test_load_rejects_bad_files(tmp_path):
    x, labels = make()
    d = write_video_split(tmp_path / "s", x, labels, FACTORS)
    # Out-of-range floats written behind the writer's back: the first items are checked when the
    # split is opened, every other one when it is read.
    bad = x.copy()
    bad[5, 2, 0, 0, 0] = 1.5
    np.save(d / "frames.npy", bad)
    with pytest.raises(UserError, match=r"frames.npy: float frames must lie in \[0, 1\]"):
        VideoDataset(d)
    x20, labels20 = make(n=20)
    d20 = write_video_split(tmp_path / "s20", x20, labels20, FACTORS)
    x20[18, 0, 0, 0, 0] = -0.5
    np.save(d20 / "frames.npy", x20)
    ds = VideoDataset(d20)
    ds[0]
    with pytest.raises(UserError, match=r"frames.npy: item 18"):
        ds[18]
    np.save(d / "frames.npy", x[:4])
    with pytest.raises(UserError, match="labels.npz.*expected \\(4,\\)"):
        VideoDataset(d)
    np.save(d / "frames.npy", x.astype(np.int32))
    with pytest.raises(UserError, match="frames.npy: dtype int32"):
        VideoDataset(d)
    np.save(d / "frames.npy", x)
    (d / "factors.yaml").write_text(yaml.safe_dump({"factors": [{"name": "shape", "num_classes": 1, "kind": "static"}]}))
    with pytest.raises(UserError, match="factors.yaml.*num_classes"):
        VideoDataset(d)
    (d / "factors.yaml").unlink()
    with pytest.raises(FileNotFoundError):
        VideoDataset(d)
    assert len(VideoDataset(d, labels=False)) == 6
