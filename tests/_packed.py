"""Packed tiny models for the inference and CLI tests: a speech model with the wavs its
features came from, and a video model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from _signals import harmonic_wave

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _experiments

UTTS = {"spkA_u0": (110.0, 0), "spkA_u1": (110.0, 1), "spkB_u0": (220.0, 0), "spkB_u1": (220.0, 1)}


def packed_speech(root):
    """(experiment dir, packed dir, {utt: wav path}) of ``trained_speech_exp``; the wavs hold the
    audio its test features were computed from (float samples, so nothing is lost)."""
    from _experiments import trained_speech_exp

    from cdsvae.experiment.pack import write_packed

    exp = trained_speech_exp(root)
    wavs = {}
    for utt, (f0, seed) in UTTS.items():
        wavs[utt] = root / f"{utt}.wav"
        sf.write(wavs[utt], harmonic_wave(f0, 0.6, seed=seed), 16000, subtype="FLOAT")
    return exp, write_packed(exp), wavs


def packed_video(root, in_channels=1):
    """(experiment dir, packed dir) of a tiny untrained conv64 model."""
    from cdsvae.models import build_model
    from cdsvae.experiment.pack import write_packed
    from cdsvae import checkpoint as ckpt
    from cdsvae.config import dump_config
    from cdsvae.experiment.schema import check_config

    model_cfg = {"frame": "conv64", "in_channels": in_channels, "s_dim": 3, "z_dim": 2, "hidden_dim": 4,
                 "g_dim": 4, "conv_width": 2, "init": "default"}
    exp = root / "exp" / "video_tiny"
    exp.mkdir(parents=True)
    dump_config(check_config({"model": model_cfg, "data": {"type": "video"}}), exp / "config.yaml")
    torch.manual_seed(0)
    ckpt.save_checkpoint(ckpt.step_path(exp / "checkpoints", 3), {"model": build_model(model_cfg).state_dict()})
    return exp, write_packed(exp)


def frames(t=4, c=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, c, 64, 64), dtype=np.uint8)
