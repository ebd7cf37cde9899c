"""Whole-utterance factors of a trained speech model, and log-mel decoded from chosen factors.

The model sees fixed-length segments, so an utterance is cut into non-overlapping segments of
the training length (the tail shorter than a segment is dropped, as in
:mod:`cdsvae.eval.metrics.embeddings`). Per utterance this gives s per segment, its mean over the
segments (the utterance's s), and z_1:T per frame over the kept frames. Decoding (s, z_1:T)
runs segment by segment and joins the frames again; :func:`to_log_mel` undoes the feature
normalisation, so speaker and content judges see log-mel on the scale the feature stage wrote.
All posterior values are means; the model is in evaluation mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch

from cdsvae.eval.metrics.embeddings import cut_segments
from cdsvae.io import UserError


@dataclass(frozen=True)
class UtteranceFactors:
    """s per segment ``(n, Ds)`` and z per frame ``(n, L, Dz)`` of one utterance."""

    s_segments: np.ndarray
    z: np.ndarray

    @property
    def s(self) -> np.ndarray:
        """The utterance's s: the mean over its segments."""
        return self.s_segments.mean(axis=0)

    @property
    def z_frames(self) -> np.ndarray:
        """z_1:T as ``(n * L, Dz)``."""
        return self.z.reshape(-1, self.z.shape[-1])

    @property
    def num_frames(self) -> int:
        return int(self.z.shape[0] * self.z.shape[1])

    def s_broadcast(self) -> np.ndarray:
        """The utterance's s repeated at every kept frame, ``(n * L, Ds)``."""
        return np.repeat(self.s[None, :], self.num_frames, axis=0)


@torch.no_grad()
def encode_factors(model: torch.nn.Module, mats: Iterable[tuple[str, np.ndarray]], segment_frames: int,
                   batch_size: int = 64, device: str | torch.device = "cpu") -> dict[str, UtteranceFactors]:
    """Factors of normalised feature matrices ``(utt, (T, F))``; an utterance shorter than one
    segment is an error naming it. Segments of several utterances share a batch."""
    model.eval()
    out: dict[str, UtteranceFactors] = {}
    pending: list[tuple[str, np.ndarray]] = []
    n_pending = 0

    def flush() -> None:
        nonlocal n_pending
        if not pending:
            return
        segs = np.concatenate([s for _, s in pending])
        s_parts, z_parts = [], []
        for start in range(0, segs.shape[0], batch_size):
            x = torch.from_numpy(segs[start:start + batch_size]).to(device=device, dtype=torch.float32)
            enc = model.encode(x)
            s_parts.append(enc.s_mean.float().cpu().numpy())
            z_parts.append(enc.z_mean.float().cpu().numpy())
        s_all, z_all = np.concatenate(s_parts), np.concatenate(z_parts)
        k = 0
        for utt, s in pending:
            n = s.shape[0]
            out[utt] = UtteranceFactors(s_all[k:k + n], z_all[k:k + n])
            k += n
        pending.clear()
        n_pending = 0

    for utt, mat in mats:
        segs = cut_segments(np.ascontiguousarray(mat, dtype=np.float32), segment_frames)
        if segs.shape[0] == 0:
            raise UserError(f"utterance {utt} has {mat.shape[0]} frames, fewer than one segment ({segment_frames})")
        pending.append((utt, segs))
        n_pending += segs.shape[0]
        if n_pending >= batch_size:
            flush()
    flush()
    return out


@torch.no_grad()
def decode_frames(model: torch.nn.Module, s: np.ndarray, z: np.ndarray, batch_size: int = 64,
                  device: str | torch.device = "cpu") -> np.ndarray:
    """Normalised frames ``(n * L, F)`` decoded from one s ``(Ds,)`` (used for every segment) and
    z ``(n, L, Dz)``."""
    if s.ndim != 1 or z.ndim != 3:
        raise ValueError(f"decode_frames expects s (Ds,) and z (n, L, Dz), got {s.shape} and {z.shape}")
    model.eval()
    parts = []
    s_t = torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32)).to(device)
    for start in range(0, z.shape[0], batch_size):
        z_t = torch.from_numpy(np.ascontiguousarray(z[start:start + batch_size], dtype=np.float32)).to(device)
        x = model.decode(s_t[None, :].expand(z_t.shape[0], -1), z_t)
        parts.append(x.float().cpu().numpy())
    frames = np.concatenate(parts)
    return frames.reshape(-1, frames.shape[-1])


class Denormaliser:
    """Undo the CMVN the model's inputs went through (identity without statistics)."""

    def __init__(self, cmvn_path: str | None):
        if cmvn_path is None:
            self.mean, self.std = np.float32(0.0), np.float32(1.0)
        else:
            from cdsvae.data.feats import CMVNStats

            stats = CMVNStats.load(cmvn_path)
            self.mean, self.std = stats.mean.astype(np.float32), stats.std.astype(np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return (np.asarray(frames, dtype=np.float32) * self.std + self.mean).astype(np.float32)


def kept_frames(mats: Mapping[str, np.ndarray], factors: Mapping[str, UtteranceFactors]) -> dict[str, np.ndarray]:
    """Each utterance's input cut to the frames its factors cover (the tail of a partial segment dropped)."""
    return {u: np.asarray(mats[u][: f.num_frames], dtype=np.float32) for u, f in factors.items()}
