"""Whole-utterance factors and decoding (cdsvae.eval.metrics.factors) against one segment at a time."""

import numpy as np
import pytest
import torch

from cdsvae.eval.metrics.factors import Denormaliser, decode_frames, encode_factors, kept_frames
from cdsvae.io import UserError

FEAT_DIM = 6
MODEL_CFG = {"frame": "mlp", "feat_dim": FEAT_DIM, "s_dim": 4, "z_dim": 3, "hidden_dim": 8, "g_dim": 8,
             "frame_hidden": 16, "init": "default"}
L = 5


def tiny_model(seed=0):
    from cdsvae.models import build_model

    torch.manual_seed(seed)
    return build_model(MODEL_CFG).eval()


def utterances(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return {f"u{k}": rng.normal(size=(n, FEAT_DIM)).astype(np.float32) for k, n in enumerate(lengths)}


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_factors_match_one_segment_at_a_time(batch_size):
    model = tiny_model()
    mats = utterances([12, 5, 23, 10])
    got = encode_factors(model, mats.items(), L, batch_size=batch_size)
    assert list(got) == list(mats)
    with torch.no_grad():
        for utt, mat in mats.items():
            n = mat.shape[0] // L
            f = got[utt]
            assert f.z.shape == (n, L, 3) and f.s_segments.shape == (n, 4) and f.num_frames == n * L
            for k in range(n):
                enc = model.encode(torch.from_numpy(mat[k * L:(k + 1) * L][None]))
                np.testing.assert_allclose(f.s_segments[k], enc.s_mean[0].numpy(), atol=1e-5)
                np.testing.assert_allclose(f.z[k], enc.z_mean[0].numpy(), atol=1e-5)
            np.testing.assert_allclose(f.s, f.s_segments.mean(axis=0))
            assert np.array_equal(f.s_broadcast(), np.repeat(f.s[None], n * L, axis=0))
            np.testing.assert_array_equal(f.z_frames, f.z.reshape(-1, 3))


def test_decode_joins_segments_in_order():
    model = tiny_model(1)
    f = encode_factors(model, utterances([17]).items(), L)["u0"]
    frames = decode_frames(model, f.s, f.z, batch_size=2)
    assert frames.shape == (15, FEAT_DIM)
    with torch.no_grad():
        for k in range(3):
            want = model.decode(torch.from_numpy(f.s[None]), torch.from_numpy(f.z[k:k + 1]))[0].numpy()
            np.testing.assert_allclose(frames[k * L:(k + 1) * L], want, atol=1e-5)
    with pytest.raises(ValueError):
        decode_frames(model, f.s[None], f.z)


def test_short_utterance_is_named_and_inputs_are_cut_to_the_kept_frames():
    model = tiny_model()
    with pytest.raises(UserError, match="utterance u1 has 3 frames"):
        encode_factors(model, utterances([10, 3]).items(), L)
    mats = utterances([12, 7])
    kept = kept_frames(mats, encode_factors(model, mats.items(), L))
    assert kept["u0"].shape == (10, FEAT_DIM) and kept["u1"].shape == (5, FEAT_DIM)
    np.testing.assert_array_equal(kept["u0"], mats["u0"][:10])


def test_denormaliser_undoes_cmvn(tmp_path):
    from cdsvae.data.feats import CMVNStats

    rng = np.random.default_rng(0)
    feats = (rng.normal(size=(200, FEAT_DIM)) * 3 + 5).astype(np.float32)
    stats = CMVNStats()
    stats.accumulate(feats)
    stats.save(tmp_path / "cmvn.npz")
    back = Denormaliser(str(tmp_path / "cmvn.npz"))(CMVNStats.load(tmp_path / "cmvn.npz").apply(feats))
    np.testing.assert_allclose(back, feats, atol=1e-4)
    np.testing.assert_array_equal(Denormaliser(None)(feats), feats)
