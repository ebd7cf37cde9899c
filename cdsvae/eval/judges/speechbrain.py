"""Pretrained speechbrain speaker models as speaker judges, and the input checks all judges share.

A speechbrain speaker model (a directory with ``hyperparams.yaml`` and its checkpoints, say an
ECAPA-TDNN trained on VoxCeleb) listens to audio, while the recipe's judges are given log-mel
matrices. ``SpeechBrainSpeakerJudge`` therefore turns each matrix back into a waveform with
Griffin-Lim (``cdsvae.fbank.logmel_to_waveform``) and embeds that. It hears the reconstruction
for real and converted utterances alike: both pass through the same inversion, so its artefacts
favour neither. The model is read from the directory alone (see ``SpeechBrainSpeakerJudge``).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from cdsvae.io import UserError


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else e.__class__.__name__


def equal_length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped by equal length (never padded together), at most ``batch_size`` per batch."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(int(n), []).append(i)
    for n in sorted(groups):
        idx = groups[n]
        for s in range(0, len(idx), batch_size):
            yield idx[s:s + batch_size]


def check_logmel_inputs(mats: Sequence[np.ndarray], dim: int, min_frames: int) -> list[np.ndarray]:
    out = []
    for i, m in enumerate(mats):
        m = np.asarray(m, dtype=np.float32)
        if m.ndim != 2 or m.shape[1] != dim:
            raise UserError(f"speaker judge: input {i} has shape {m.shape}, expected (frames, {dim})")
        if m.shape[0] < min_frames:
            raise UserError(f"speaker judge: input {i} has {m.shape[0]} frames, fewer than the {min_frames} it needs")
        if not np.isfinite(m).all():
            raise UserError(f"speaker judge: input {i} has non-finite values")
        out.append(m)
    return out



class SpeechBrainSpeakerJudge:
    """A pretrained speechbrain speaker model (a directory with ``hyperparams.yaml``) as the judge.

    It listens to audio, so ``embed`` inverts each log-mel matrix with Griffin-Lim
    (``n_iter`` iterations) and resamples it to the model's rate. Real and converted utterances
    go through the same inversion. The model is loaded from the directory only: a
    ``pretrained_path`` in its hparams is pointed at the directory and the network is disabled.
    """

    def __init__(self, model_dir: str | os.PathLike, fbank_cfg, device: str = "cpu", n_iter: int = 32):
        from speechbrain.inference.speaker import EncoderClassifier
        from speechbrain.utils.fetching import FetchConfig

        from cdsvae.fbank import load_fbank_config

        self.model_dir, self.n_iter = Path(model_dir).resolve(), int(n_iter)
        self.fbank_cfg = load_fbank_config(fbank_cfg)
        self.feat_dim = int(self.fbank_cfg["n_mels"])
        hparams = self.model_dir / "hyperparams.yaml"
        text = hparams.read_text(encoding="utf-8")
        overrides = {"pretrained_path": str(self.model_dir)} if re.search(r"^pretrained_path\s*:", text, re.M) else {}
        try:
            with tempfile.TemporaryDirectory(prefix="sb-judge-") as savedir:
                self.model = EncoderClassifier.from_hparams(
                    source=str(self.model_dir), savedir=savedir, overrides=overrides,
                    run_opts={"device": device}, fetch_config=FetchConfig(allow_network=False))
        except Exception as e:
            raise UserError(f"{hparams}: cannot load the speechbrain speaker model "
                            f"({e.__class__.__name__}: {first_line(e)})") from None
        self.model.eval()
        self.sample_rate = _model_sample_rate(self.model)

    @property
    def name(self) -> str:
        return f"speechbrain speaker model {self.model_dir} (Griffin-Lim audio, {self.n_iter} iterations)"

    def waveform(self, mat: np.ndarray) -> np.ndarray:
        """The audio this judge hears for a log-mel matrix, at the model's sample rate."""
        from cdsvae.fbank import logmel_to_waveform

        wave = logmel_to_waveform(mat, self.fbank_cfg, self.n_iter)
        src = int(self.fbank_cfg["sample_rate"])
        if src != self.sample_rate:
            import torchaudio

            wave = torchaudio.functional.resample(torch.from_numpy(wave), src, self.sample_rate).numpy()
        return wave

    @torch.no_grad()
    def embed(self, mats: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """``(N, D)`` embeddings of raw log-mel matrices, in input order (equal-length batches)."""
        waves = [self.waveform(m) for m in check_logmel_inputs(mats, self.feat_dim, 1)]
        out: np.ndarray | None = None
        for idx in equal_length_batches([w.size for w in waves], batch_size):
            emb = self.model.encode_batch(torch.from_numpy(np.stack([waves[i] for i in idx])))
            emb = emb.reshape(len(idx), -1).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(waves), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _model_sample_rate(model) -> int:
    hp = vars(model.hparams)
    if "sample_rate" in hp:
        return int(hp["sample_rate"])
    stft = getattr(hp.get("compute_features"), "compute_STFT", None)
    if stft is not None and hasattr(stft, "sample_rate"):
        return int(stft.sample_rate)
    return int(getattr(getattr(model, "audio_normalizer", None), "sample_rate", 16000))
