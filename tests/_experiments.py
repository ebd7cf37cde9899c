"""Experiment directories as the stages leave them, for the report, demo and plot tests.

``make_exp``: a scored speech experiment from made-up embeddings (no model). ``trained_speech_exp``:
a tiny untrained speech model with features, embeddings and scores, enough for a listening demo.
``ChannelModel``: a video "model" whose swap grid is known in advance.
"""

from __future__ import annotations

import json
import types

import numpy as np
import torch
import yaml

from _signals import harmonic_wave
from cdsvae.eval.metrics.embeddings import write_vectors

DSVAE_W = {"con_s": 0.0, "con_z": 0, "mi_sz": 0.0, "kl_s": 1.0}
CDSVAE_W = {"con_s": 10.0, "con_z": 10.0, "mi_sz": 1.0}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEMO_WAVS = ["A_input.wav", "B_input.wav", "A.wav", "B.wav", "A_content_B_speaker.wav", "B_content_A_speaker.wav",
             "A_content_random_speaker.wav", "A_speaker_random_content.wav"]
DEMO_PNGS = [name.replace(".wav", ".png") for name in DEMO_WAVS]


def assert_png(path):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


def results(eer_s, eer_z, dcf_s, dcf_z, nt, nn):
    return {
        "s": {"eer": eer_s, "min_dcf": dcf_s, "threshold": 0.1},
        "z": {"eer": eer_z, "min_dcf": dcf_z, "threshold": 0.2},
        "n_target": nt,
        "n_nontarget": nn,
    }


def make_exp(root, tag, weights, results=None, n_spk=4, n_utt=3, seed=0):
    """An experiment dir as the stages leave it: config, embeddings, and scores from the score CLI."""
    exp = root / tag
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(yaml.safe_dump({"model": {"frame": "mlp", "feat_dim": 8}, "loss": weights}))
    rng = np.random.default_rng(seed)
    utt2spk = {f"spk{s}_u{u}": f"spk{s}" for s in range(n_spk) for u in range(n_utt)}
    centre = {f"spk{s}": rng.normal(size=6) * 3 for s in range(n_spk)}
    emb = exp / "emb_test"
    write_vectors(emb, "s", {u: centre[s] + rng.normal(size=6) * 0.3 for u, s in utt2spk.items()})
    write_vectors(emb, "z", {u: rng.normal(size=4) for u in utt2spk})
    (emb / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    if results is None:
        from cdsvae.bin.score import main as score_main

        assert score_main(["--emb_dir", str(emb), "--utt2spk", str(emb / "utt2spk"), "--outdir", str(exp / "score_test")]) == 0
    else:
        (exp / "score_test").mkdir()
        (exp / "score_test" / "results.json").write_text(json.dumps(results))
    return exp


def trained_speech_exp(root):
    """``root/exp/cdsvae_tiny`` with a checkpoint, emb_test and score_test over ``root/dump/test``
    (two speakers, two utterances each, 58 frames of 16 mel bins, fbank.yaml and CMVN)."""
    from cdsvae.bin.score import main as score_main
    from cdsvae.eval.metrics.embeddings import extract_feature_dir
    from cdsvae.data.feats import CMVNStats, FeatureWriter
    from cdsvae.fbank import compute_fbank, load_fbank_config
    from cdsvae.models import build_model
    from cdsvae import checkpoint as ckpt
    from cdsvae.config import dump_config
    from cdsvae.experiment.schema import check_config

    fbank = load_fbank_config({"n_mels": 16})
    feats_dir = root / "dump" / "test"
    feats_dir.mkdir(parents=True)
    (feats_dir / "fbank.yaml").write_text(yaml.safe_dump(fbank))
    stats = CMVNStats()
    utt2spk = {}
    with FeatureWriter(feats_dir / "feats.ark", feats_dir / "feats.scp", feats_dir / "utt2num_frames") as w:
        for spk, f0 in (("spkA", 110.0), ("spkB", 220.0)):
            for k in range(2):
                utt = f"{spk}_u{k}"
                feats = compute_fbank(harmonic_wave(f0, 0.6, seed=k), fbank)
                w.write(utt, feats)
                stats.accumulate(feats)
                utt2spk[utt] = spk
    (feats_dir / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    stats.save(root / "cmvn.npz")

    model_cfg = {"frame": "mlp", "feat_dim": 16, "s_dim": 4, "z_dim": 3, "hidden_dim": 8, "g_dim": 8,
                 "frame_hidden": 16, "init": "default"}
    exp = root / "exp" / "cdsvae_tiny"
    cfg = check_config({"model": model_cfg, "data": {"type": "speech", "segment_frames": 10,
                                                     "cmvn": str(root / "cmvn.npz")}})
    exp.mkdir(parents=True)
    dump_config(cfg, exp / "config.yaml")
    torch.manual_seed(0)
    ckpt.save_checkpoint(ckpt.step_path(exp / "checkpoints", 1), {"model": build_model(model_cfg).state_dict()})

    extract_feature_dir(exp, feats_dir, exp / "emb_test")
    assert score_main(["--emb_dir", str(exp / "emb_test"), "--utt2spk", str(feats_dir / "utt2spk"),
                       "--outdir", str(exp / "score_test")]) == 0
    return exp


T, HW = 3, 4


class ChannelModel:
    """s = the channel a sequence lights, z_t = its brightness at frame t; decode renders them back."""

    def eval(self):
        return self

    def encode(self, x):
        s = x.mean(dim=(1, 3, 4))  # (B, 3)
        z = x.amax(dim=(2, 3, 4)).unsqueeze(-1)  # (B, T, 1)
        return types.SimpleNamespace(s_mean=s, z_mean=z)

    def decode(self, s, z):
        chan = torch.nn.functional.one_hot(s.argmax(dim=1), 3).float()  # (B, 3)
        return (chan[:, None, :, None, None] * z[:, :, :, None, None]).expand(-1, -1, 3, HW, HW).clone()

    def generate(self, n, length, generator=None):
        return torch.rand(n, length, 3, HW, HW, generator=generator)


def sequences(n=3):
    x = torch.zeros(n, T, 3, HW, HW)
    for i in range(n):
        for t in range(T):
            x[i, t, i % 3] = (i + 1) / (n + 1) * (t + 1) / T
    return x


def judge_result(acc, is_):
    """A judge_results.json of one model (protocols A and B, reference accuracies)."""
    ms = lambda v: {"mean": v, "std": 0.01, "draws": [v]}  # noqa: E731
    return {"protocol_A": {"motion": {"acc": ms(acc), "is": ms(is_), "h_yx": ms(0.1), "h_y": ms(2.19),
                                      "num_classes": 9}},
            "protocol_B": {"skin": {"acc": ms(0.9), "num_classes": 6}},
            "reference": {"real": {"motion": 1.0, "skin": 1.0}, "recon": {"motion": 0.97, "skin": 0.99}}}


def video_exps(root, n_seq=4):
    """``root/test`` (a video split of ``n_seq`` sequences) and experiments ``root/cdsvae``, ``root/dsvae``
    with a config and judge results, but no checkpoint (load_model is patched where one is needed)."""
    from cdsvae.data.video import Factor, write_video_split

    x = sequences(n_seq).numpy()
    write_video_split(root / "test", x, {"k": np.arange(n_seq) % 2}, [Factor("k", 2, "static")])
    weights = {"cdsvae": CDSVAE_W, "dsvae": {"con_s": 0.0, "con_z": 0.0, "mi_sz": 0.0}}
    exps = []
    for name, acc in (("cdsvae", 0.9), ("dsvae", 0.5)):
        exp = root / name
        exp.mkdir()
        (exp / "config.yaml").write_text(yaml.safe_dump({"model": {"frame": "conv64"}, "loss": weights[name],
                                                         "data": {"type": "video"}}))
        (exp / "judge_results.json").write_text(json.dumps(judge_result(acc, 5.0)))
        exps.append(exp)
    return root / "test", exps
