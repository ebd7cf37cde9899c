import json

import kaldiio
import numpy as np
import pytest
import torch

from cdsvae.eval.metrics.embeddings import cut_segments, extract_embeddings, extract_feature_dir, write_vectors
from cdsvae.io import UserError

FEAT_DIM = 6
MODEL_CFG = {"frame": "mlp", "feat_dim": FEAT_DIM, "s_dim": 4, "z_dim": 3, "hidden_dim": 8, "g_dim": 8,
             "frame_hidden": 16, "init": "default"}


def tiny_model(seed=0):
    from cdsvae.models import build_model

    torch.manual_seed(seed)
    return build_model(MODEL_CFG).eval()


def save_exp(expdir, model, data_cfg):
    """An experiment dir written with the trainer's own config and checkpoint functions."""
    from cdsvae import checkpoint as ckpt
    from cdsvae.config import dump_config
    from cdsvae.experiment.schema import check_config

    cfg = check_config({"model": MODEL_CFG, "data": {"type": "speech", **data_cfg}})
    expdir.mkdir(parents=True)
    dump_config(cfg, expdir / "config.yaml")
    ckpt.save_checkpoint(ckpt.step_path(expdir / "checkpoints", 7), {"model": model.state_dict(), "step": 7})
    return cfg


def make_feats_dir(path, lengths, seed=0):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    feats = {f"spk{k % 2}_utt{k}": rng.normal(size=(n, FEAT_DIM)).astype(np.float32) * 2 + 1
             for k, n in enumerate(lengths)}
    kaldiio.save_ark(str(path / "feats.ark"), feats, scp=str(path / "feats.scp"))
    (path / "utt2spk").write_text("".join(f"{u} {u.split('_')[0]}\n" for u in sorted(feats)))
    (path / "utt2num_frames").write_text("".join(f"{u} {m.shape[0]}\n" for u, m in sorted(feats.items())))
    return feats


@torch.no_grad()
def brute_force(model, feats, segment_frames, normalise=lambda m: m):
    """One segment at a time, the definition written plainly."""
    s_out, z_out = {}, {}
    for utt, mat in feats.items():
        mat = normalise(mat)
        s_list, z_list = [], []
        for k in range(mat.shape[0] // segment_frames):
            seg = torch.from_numpy(np.ascontiguousarray(mat[k * segment_frames:(k + 1) * segment_frames]))
            enc = model.encode(seg[None].float())
            s_list.append(enc.s_mean[0].numpy())
            z_list.append(enc.z_mean[0].numpy())  # (L, Dz)
        s_out[utt] = np.mean(s_list, axis=0)
        z_out[utt] = np.mean(np.concatenate(z_list), axis=0)  # over time and segments
    return s_out, z_out


def test_cut_segments_drops_the_tail():
    x = np.arange(22).reshape(11, 2)
    segs = cut_segments(x, 4)
    assert segs.shape == (2, 4, 2)
    np.testing.assert_array_equal(segs[1], x[4:8])
    assert cut_segments(x, 12).shape == (0, 12, 2)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batched_extraction_matches_one_segment_at_a_time(batch_size):
    model = tiny_model()
    rng = np.random.default_rng(1)
    feats = {f"u{k}": rng.normal(size=(n, FEAT_DIM)).astype(np.float32) for k, n in enumerate([5, 17, 10, 9, 30])}
    got = extract_embeddings(model, feats.items(), segment_frames=5, batch_size=batch_size)
    s_ref, z_ref = brute_force(model, feats, 5)
    assert list(got.s) == list(feats)
    for u in feats:
        np.testing.assert_allclose(got.s[u], s_ref[u], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.z[u], z_ref[u], rtol=1e-5, atol=1e-6)
    assert got.s["u0"].shape == (4,) and got.z["u0"].shape == (3,)
    # different utterances give different embeddings (the test can fail)
    assert not np.allclose(got.s["u1"], got.s["u2"])


def test_short_utterance_is_an_error_unless_skipped():
    model = tiny_model()
    feats = {"a": np.zeros((10, FEAT_DIM), np.float32), "b": np.zeros((4, FEAT_DIM), np.float32)}
    with pytest.raises(UserError, match="utterance b: 4 frames, shorter than one segment of 5"):
        extract_embeddings(model, feats.items(), 5)
    got = extract_embeddings(model, feats.items(), 5, skip_bad=True)
    assert list(got.s) == ["a"] and got.skipped == ["b"]


def test_non_finite_features_are_named():
    bad = np.zeros((10, FEAT_DIM), np.float32)
    bad[3, 2] = np.nan
    with pytest.raises(UserError, match="utterance x: non-finite"):
        extract_embeddings(tiny_model(), [("x", bad)], 5)


def test_write_vectors_is_readable_by_kaldiio(tmp_path):
    vecs = {"b": np.arange(3.0), "a": np.ones(3)}
    scp = write_vectors(tmp_path / "emb", "s", vecs)
    table = kaldiio.load_scp(str(scp))
    assert list(table) == ["b", "a"]
    np.testing.assert_array_equal(table["b"], [0, 1, 2])
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == ["s.ark", "s.scp"]


def test_extract_feature_dir_applies_training_cmvn(tmp_path):
    from cdsvae.data.feats import CMVNStats

    model = tiny_model(3)
    feats = make_feats_dir(tmp_path / "dump" / "test", [12, 25, 8, 3, 16])
    stats = CMVNStats()
    for m in feats.values():
        stats.accumulate(m)
    stats.save(tmp_path / "cmvn.npz")
    save_exp(tmp_path / "exp", model, {"segment_frames": 4, "cmvn": str(tmp_path / "cmvn.npz")})

    with pytest.raises(UserError, match="utterance spk1_utt3: 3 frames"):
        extract_feature_dir(tmp_path / "exp", tmp_path / "dump" / "test", tmp_path / "emb")
    meta = extract_feature_dir(tmp_path / "exp", tmp_path / "dump" / "test", tmp_path / "emb", batch_size=5,
                               skip_bad=True)
    assert meta["n_utts"] == 4 and meta["skipped"] == ["spk1_utt3"] and meta["segment_frames"] == 4
    assert json.loads((tmp_path / "emb" / "meta.json").read_text())["n_skipped"] == 1
    assert (tmp_path / "emb" / "utt2spk").read_text().splitlines()[0] == "spk0_utt0 spk0"

    kept = {u: m for u, m in feats.items() if u != "spk1_utt3"}
    s_ref, z_ref = brute_force(model, kept, 4, stats.apply)
    s_got = dict(kaldiio.load_scp(str(tmp_path / "emb" / "s.scp")))
    z_got = dict(kaldiio.load_scp(str(tmp_path / "emb" / "z.scp")))
    assert sorted(s_got) == sorted(kept)
    for u in kept:
        np.testing.assert_allclose(s_got[u], s_ref[u], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(z_got[u], z_ref[u], rtol=1e-5, atol=1e-6)
    # without CMVN the embeddings differ: the normalisation really is applied
    s_raw, _ = brute_force(model, kept, 4)
    assert not np.allclose(s_raw["spk0_utt0"], s_got["spk0_utt0"], atol=1e-4)


def test_segment_length_override_and_dimension_check(tmp_path):
    model = tiny_model()
    make_feats_dir(tmp_path / "feats", [12, 12])
    save_exp(tmp_path / "exp", model, {"segment_frames": 4})
    meta = extract_feature_dir(tmp_path / "exp", tmp_path / "feats", tmp_path / "emb", segment_frames=6)
    assert meta["segment_frames"] == 6 and meta["cmvn"] is None

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    kaldiio.save_ark(str(wrong / "f.ark"), {"a_1": np.zeros((9, FEAT_DIM + 1), np.float32)}, scp=str(wrong / "feats.scp"))
    (wrong / "utt2spk").write_text("a_1 a\n")
    with pytest.raises(UserError, match=f"utterance a_1 has features of shape \\(9, {FEAT_DIM + 1}\\)"):
        extract_feature_dir(tmp_path / "exp", wrong, tmp_path / "emb2")


def test_missing_inputs_are_named(tmp_path):
    (tmp_path / "feats").mkdir()
    with pytest.raises(UserError, match="feats.scp: not found"):
        extract_feature_dir(tmp_path / "exp", tmp_path / "feats", tmp_path / "emb")
    make_feats_dir(tmp_path / "f2", [8])
    with pytest.raises(UserError, match="config.yaml"):
        extract_feature_dir(tmp_path / "noexp", tmp_path / "f2", tmp_path / "emb")


def test_evenly_spaced_subset_known_answer():
    from cdsvae.eval.metrics.embeddings import evenly_spaced_subset

    table = {f"spk{s}_u{u}": f"p{s}{u}" for s in range(3) for u in range(4)}
    got = evenly_spaced_subset(table, 4)
    assert list(got) == ["spk0_u0", "spk1_u0", "spk1_u3", "spk2_u3"]  # sorted indices 0, 4 (3.67), 7 (7.33), 11
    assert got["spk1_u3"] == "p13"
    assert evenly_spaced_subset(table, 50) == {k: table[k] for k in sorted(table)}
    assert len(evenly_spaced_subset(table, 1)) == 1
