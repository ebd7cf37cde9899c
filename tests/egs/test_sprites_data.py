"""Sprites data prep: the authors' data.pkl, the generator's npy files, and the procedural corpus."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cdsvae.data.video import VideoDataset
from cdsvae.io import UserError

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "sprites" / "cdsvae1"
sys.path.insert(0, str(RECIPE / "local"))

import make_sprites  # noqa: E402
import prepare_sprites  # noqa: E402

ATTRS = ["skin", "pant", "top", "hair"]


def fake_frames(rng, n):
    """(n, 8, 64, 64, 3) in [0, 1) on the generator's 1/256 grid."""
    return (rng.integers(0, 256, size=(n, 8, 64, 64, 3)) / 256.0).astype(np.float32)


def check_split(d, frames, attrs, motions):
    ds = VideoDataset(d)
    assert len(ds) == len(frames) and ds.shape == (8, 3, 64, 64)
    assert ds.factor_names("static") == ATTRS and ds.factor_names("dynamic") == ["motion"]
    want = frames.transpose(0, 1, 4, 2, 3)
    for i in range(len(frames)):
        assert np.abs(ds[i]["x"].numpy() - want[i]).max() <= 0.5 / 255 + 1e-6
    for k, a in enumerate(ATTRS):
        assert np.array_equal(ds.labels[a], attrs[:, k])
    assert np.array_equal(ds.labels["motion"], motions)


@pytest.mark.parametrize("one_hot", [False, True])
def test_authors_pickle(tmp_path, one_hot):
    rng = np.random.default_rng(0)
    data = {}
    for split, n in (("train", 5), ("test", 3)):
        a = rng.integers(0, 6, size=(n, 4))
        d = rng.integers(0, 9, size=n)
        data[f"X_{split}"] = fake_frames(rng, n)
        data[f"A_{split}"] = np.eye(6)[a][:, None].repeat(8, axis=1) if one_hot else a
        data[f"D_{split}"] = np.eye(9)[d][:, None].repeat(8, axis=1) if one_hot else d
        data[f"c_augs_{split}"] = np.zeros((n, 1, 1))
        data[f"_a_{split}"], data[f"_d_{split}"] = a, d
    pkl = tmp_path / "data.pkl"
    pkl.write_bytes(pickle.dumps(data))
    out = tmp_path / "data"
    assert prepare_sprites.main(["--sprites", str(tmp_path), "--outdir", str(out)]) == 0
    for split in ("train", "test"):
        check_split(out / split, data[f"X_{split}"], data[f"_a_{split}"], data[f"_d_{split}"])


def test_pickle_missing_key(tmp_path):
    (tmp_path / "data.pkl").write_bytes(pickle.dumps({"X_train": np.zeros((1, 8, 64, 64, 3))}))
    with pytest.raises(UserError, match="data.pkl: missing keys"):
        prepare_sprites.main(["--sprites", str(tmp_path / "data.pkl"), "--outdir", str(tmp_path / "o")])


def write_generator_tree(root, n_train=2, n_test=1, seed=0):
    """The generator's npy/ files; every frame of file (action, direction) is filled with a value
    that encodes its motion label, so the label can be checked after shuffling."""
    rng = np.random.default_rng(seed)
    npy = root / "npy"
    npy.mkdir(parents=True)
    truth = {}
    for ai, act in enumerate(["walk", "spellcard", "slash"]):
        for di, d in enumerate(["front", "left", "right"]):
            for split, n in (("train", n_train), ("test", n_test)):
                label = 3 * ai + di
                x = np.full((n, 8, 64, 64, 3), (label + 1) / 16, dtype=np.float32)
                a = rng.integers(0, 6, size=(n, 4))
                att = np.eye(6, dtype=np.float32)[a][:, None].repeat(8, axis=1)  # (n, 8, 4, 6)
                np.save(npy / f"{act}_{d}_frames_{split}.npy", x)
                np.save(npy / f"{act}_{d}_attributes_{split}.npy", att)
                for i in range(n):
                    truth.setdefault(split, []).append((label, tuple(a[i])))
    return truth


def test_generator_npy_files(tmp_path):
    truth = write_generator_tree(tmp_path / "sprites")
    out = tmp_path / "data"
    assert prepare_sprites.main(["--sprites", str(tmp_path / "sprites"), "--outdir", str(out), "--seed", "3"]) == 0
    for split, n in (("train", 18), ("test", 9)):
        ds = VideoDataset(out / split)
        assert len(ds) == n
        got = []
        for i in range(n):
            m = int(ds.labels["motion"][i])
            value = float(ds[i]["x"][0, 0, 0, 0])
            assert round(value * 16) - 1 == m  # the label travelled with its frames
            got.append((m, tuple(int(ds.labels[a][i]) for a in ATTRS)))
        assert sorted(got) == sorted(truth[split])
        assert np.bincount(ds.labels["motion"], minlength=9).tolist() == [n // 9] * 9
        assert ds.labels["motion"].tolist() != sorted(ds.labels["motion"].tolist())  # shuffled


def test_generator_missing_file_is_named(tmp_path):
    write_generator_tree(tmp_path / "s")
    os.unlink(tmp_path / "s" / "npy" / "slash_left_attributes_test.npy")
    with pytest.raises(UserError, match="slash_left_attributes_test.npy"):
        prepare_sprites.main(["--sprites", str(tmp_path / "s"), "--outdir", str(tmp_path / "o")])
    with pytest.raises(UserError, match="expected data.pkl or the generator"):
        prepare_sprites.main(["--sprites", str(tmp_path), "--outdir", str(tmp_path / "o")])


def test_procedural_shapes_labels_and_balance():
    (xtr, ytr), (xte, yte) = make_sprites.make_sprites(90, 27, seed=0)
    assert xtr.shape == (90, 8, 3, 64, 64) and xtr.dtype == np.uint8 and xte.shape == (27, 8, 3, 64, 64)
    assert set(ytr) == set(ATTRS) | {"motion"}
    assert np.bincount(ytr["motion"], minlength=9).tolist() == [10] * 9
    # All 1296 characters: each attribute class exactly 216 times.
    table = make_sprites.character_table(0)
    assert len(np.unique(table, axis=0)) == 1296
    for k in range(4):
        assert np.bincount(table[:, k]).tolist() == [216] * 6
    # Training and test characters are disjoint.
    tr = {tuple(r) for r in np.stack([ytr[a] for a in ATTRS], 1)}
    te = {tuple(r) for r in np.stack([yte[a] for a in ATTRS], 1)}
    assert not tr & te


def test_procedural_is_deterministic():
    a = make_sprites.make_split(18, 0, seed=1)
    b = make_sprites.make_split(18, 0, seed=1)
    c = make_sprites.make_split(18, 0, seed=2)
    assert np.array_equal(a[0], b[0]) and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    assert not all(np.array_equal(a[1][k], c[1][k]) for k in ATTRS)


def test_motions_differ_and_move():
    poses = make_sprites.pose_bank()
    assert poses.shape == (9, 8, 64, 64)
    for m in range(9):
        # Every motion is animated: some frame differs from the first.
        assert max((poses[m, t] != poses[m, 0]).sum() for t in range(8)) > 20
        for m2 in range(m + 1, 9):
            assert (poses[m] != poses[m2]).sum() > 200, (m, m2)  # sequences clearly differ


def test_attributes_only_change_colours():
    attrs = np.array([[0, 1, 2, 3], [5, 4, 3, 2]])
    x = make_sprites.render(attrs, np.array([4, 4])).astype(int)
    assert np.array_equal(x[0].sum(axis=1) > 0, x[1].sum(axis=1) > 0)  # same silhouette
    top = (make_sprites.pose_bank()[4] == make_sprites.TOP)
    assert tuple(x[0, top.nonzero()[0][0], :, top.nonzero()[1][0], top.nonzero()[2][0]]) == make_sprites.PALETTES["top"][2]


def test_data_sh_end_to_end_and_rerun(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", SPRITES="")
    cmd = [str(RECIPE / "local" / "data.sh"), "--outdir", str(tmp_path / "data"), "--train_size", "18",
           "--test_size", "9"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(VideoDataset(tmp_path / "data" / "train")) == 18
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "up to date" in r.stdout
    with pytest.raises(UserError, match="missing: no such file"):
        prepare_sprites.main(["--sprites", str(tmp_path / "missing"), "--outdir", str(tmp_path / "o")])
