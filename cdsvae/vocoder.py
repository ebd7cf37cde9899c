"""A speechbrain vocoder directory (HiFi-GAN) turning decoded log-mel frames into audio.

The directory is what speechbrain's pretrained vocoders hold: ``hyperparams.yaml`` declaring a
``generator`` and ``generator.ckpt`` with its weights. It is loaded from the directory only
(the network is disabled). The vocoder must have been trained on features like the model's:
the same number of mel bins (checked) and, for good audio, the same log-mel definition, rate and
hop; Griffin-Lim (:func:`cdsvae.fbank.logmel_to_waveform`) needs none of that.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from cdsvae.io import UserError


class SpeechBrainVocoder:
    """``vocoder(logmel (T, n_mels)) -> samples (N,)`` at ``sample_rate``."""

    def __init__(self, model_dir: str | os.PathLike, fbank_cfg: Mapping | None, device: str = "cpu"):
        from speechbrain.inference.vocoders import HIFIGAN
        from speechbrain.utils.fetching import FetchConfig

        self.model_dir = Path(model_dir).resolve()
        hparams = self.model_dir / "hyperparams.yaml"
        if not hparams.is_file():
            raise UserError(f"{self.model_dir}: not a speechbrain vocoder directory (no hyperparams.yaml)")
        text = hparams.read_text(encoding="utf-8")
        overrides = {"pretrained_path": str(self.model_dir)} if re.search(r"^pretrained_path\s*:", text, re.M) else {}
        try:
            with tempfile.TemporaryDirectory(prefix="sb-vocoder-") as savedir:
                self.model = HIFIGAN.from_hparams(source=str(self.model_dir), savedir=savedir, overrides=overrides,
                                                  run_opts={"device": device},
                                                  fetch_config=FetchConfig(allow_network=False))
        except Exception as e:  # speechbrain raises many kinds; all mean the same to the user
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise UserError(f"{hparams}: cannot load the speechbrain vocoder ({e.__class__.__name__}: {first})") from None
        n_mels = int(fbank_cfg["n_mels"]) if fbank_cfg else None
        conv_pre = getattr(self.model.hparams.generator, "conv_pre", None)
        conv = getattr(conv_pre, "conv", conv_pre)
        in_channels = getattr(conv, "in_channels", None)
        if n_mels is not None and in_channels is not None and int(in_channels) != n_mels:
            raise UserError(f"{hparams}: the vocoder takes {in_channels} mel bins, the model's features have {n_mels}")
        rate = getattr(self.model.hparams, "sample_rate", None)
        self.sample_rate = int(rate) if rate else int(fbank_cfg["sample_rate"]) if fbank_cfg else 16000

    def __call__(self, logmel: np.ndarray) -> np.ndarray:
        import torch

        mel = torch.from_numpy(np.ascontiguousarray(np.asarray(logmel, dtype=np.float32).T))[None]
        wave = self.model.decode_batch(mel)
        return wave.reshape(-1).float().cpu().numpy()
