"""Feature files: the ark+scp writer, utt2num_frames, frame alignment, CMVN statistics."""

import kaldiio
import numpy as np
import pytest

from cdsvae.data.feats import CMVNStats, FeatureWriter, match_num_frames, read_utt2num_frames
from cdsvae.io import UserError


def test_feature_writer_roundtrip_and_atomicity(tmp_path):
    rng = np.random.default_rng(1)
    mats = {f"u{i}": rng.standard_normal((5 + i, 4)).astype(np.float32) for i in range(3)}
    with FeatureWriter(tmp_path / "f.ark", tmp_path / "f.scp", tmp_path / "u2n") as w:
        for k, v in mats.items():
            w.write(k, v)
    loaded = kaldiio.load_scp(str(tmp_path / "f.scp"))
    for k, v in mats.items():
        np.testing.assert_array_equal(loaded[k], v)
    assert (tmp_path / "u2n").read_text() == "u0 5\nu1 6\nu2 7\n"

    bad = np.ones((3, 4), dtype=np.float32)
    bad[1, 2] = np.inf
    with pytest.raises(UserError, match="non-finite.*frame 1.*u9"):
        with FeatureWriter(tmp_path / "g.ark", tmp_path / "g.scp") as w:
            w.write("u0", mats["u0"])
            w.write("u9", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.ark", "f.scp", "u2n"]


def test_cmvn_stats_against_a_loop(tmp_path):
    rng = np.random.default_rng(2)
    mats = [rng.normal(3.0, 2.0, (n, 6)).astype(np.float32) for n in (7, 1, 12)]
    stats = CMVNStats()
    for m in mats:
        stats.accumulate(m)
    # brute force: one frame at a time
    count, total, total_sq = 0, np.zeros(6), np.zeros(6)
    for m in mats:
        for frame in m.astype(np.float64):
            count += 1
            total += frame
            total_sq += frame * frame
    mean = total / count
    std = np.sqrt(total_sq / count - mean ** 2)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, std, rtol=1e-9)
    np.testing.assert_allclose(stats.std, np.concatenate(mats).std(0), rtol=1e-5)
    for name in ("cmvn.npz", "cmvn.ark"):
        stats.save(tmp_path / name)
        back = CMVNStats.load(tmp_path / name)
        assert back.count == 20
        np.testing.assert_allclose(back.mean, mean, rtol=1e-12)
        normed = back.apply(mats[0])
        np.testing.assert_allclose(normed, (mats[0] - mean) / std, rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError, match="not found"):
        CMVNStats.load(tmp_path / "nope.npz")


def test_match_num_frames():
    feats = np.arange(12, dtype=np.float32).reshape(6, 2)
    assert match_num_frames(feats, 6, "u").shape == (6, 2)
    np.testing.assert_array_equal(match_num_frames(feats, 5, "u"), feats[:5])
    np.testing.assert_array_equal(match_num_frames(feats, 7, "u")[-1], feats[-1])
    with pytest.raises(UserError, match="8 were expected.*u"):
        match_num_frames(feats, 8, "u")


def test_feature_writer_of_vectors(tmp_path):
    """Kaldi vectors (what embeddings are written as): one length, finite, no utt2num_frames."""
    vecs = {"b": np.arange(3.0), "a": np.ones(3)}
    with FeatureWriter(tmp_path / "v.ark", tmp_path / "v.scp", vectors=True) as w:
        for k, v in vecs.items():
            w.write(k, v)
    table = kaldiio.load_scp(str(tmp_path / "v.scp"))
    assert list(table) == ["b", "a"] and table["b"].shape == (3,)
    np.testing.assert_array_equal(table["b"], [0, 1, 2])
    assert (tmp_path / "v.scp").read_text().splitlines()[0] == f"b {tmp_path / 'v.ark'}:2"
    for bad, why in ((np.ones((2, 3)), "1-D"), (np.ones(4), "dim 4, earlier ones 3"), (np.array([1.0, np.nan, 0.0]),
                                                                                       "non-finite")):
        with pytest.raises(UserError, match=why):
            with FeatureWriter(tmp_path / "w.ark", tmp_path / "w.scp", vectors=True) as w:
                w.write("a", np.ones(3))
                w.write("b", bad)
    assert not (tmp_path / "w.ark").exists() and not (tmp_path / "w.scp").exists()
    with pytest.raises(ValueError, match="utt2num_frames"):
        FeatureWriter(tmp_path / "x.ark", tmp_path / "x.scp", tmp_path / "u2n", vectors=True)


def test_read_utt2num_frames(tmp_path):
    (tmp_path / "u2n").write_text("a 12\nb 7\n")
    assert read_utt2num_frames(tmp_path / "u2n") == {"a": 12, "b": 7}
    (tmp_path / "u2n").write_text("a 12\nb seven\n")
    with pytest.raises(UserError, match="u2n:2: expected 'utt num_frames', got 'b seven'"):
        read_utt2num_frames(tmp_path / "u2n")
    (tmp_path / "u2n").write_text("a 12\n\nb 7\n")
    with pytest.raises(UserError, match="u2n:2: empty line"):
        read_utt2num_frames(tmp_path / "u2n")
