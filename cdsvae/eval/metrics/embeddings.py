"""Per-utterance speaker (s) and content (z) embeddings from a trained sequential VAE.

The model sees fixed-length segments in training, so at test time each utterance is cut into
non-overlapping segments of the same length (the tail shorter than a segment is dropped):
s is the mean over segments of the posterior mean of s, z the mean over time and segments of
the posterior mean of z. Segments of several utterances share one batch; the model is in
evaluation mode, so batch composition does not change any utterance's result.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import kaldiio
import numpy as np
import torch
from tqdm import tqdm

from cdsvae.data.feats import FeatureWriter
from cdsvae.io import UserError

log = logging.getLogger(__name__)

Normaliser = Callable[[np.ndarray], np.ndarray]


@dataclass
class UtteranceEmbeddings:
    """Embeddings keyed by utterance id (insertion order = input order) and the skipped ids."""

    s: dict[str, np.ndarray] = field(default_factory=dict)
    z: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def cut_segments(feats: np.ndarray, segment_frames: int) -> np.ndarray:
    """``(T, F)`` -> ``(T // L, L, F)`` non-overlapping segments; the tail is dropped."""
    if segment_frames < 1:
        raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
    n = feats.shape[0] // segment_frames
    return feats[: n * segment_frames].reshape(n, segment_frames, *feats.shape[1:])


def _encode_means(model: torch.nn.Module, segments: np.ndarray, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means per segment: s ``(N, Ds)`` and z averaged over time ``(N, Dz)``."""
    s_parts, z_parts = [], []
    for start in range(0, segments.shape[0], batch_size):
        x = torch.from_numpy(segments[start : start + batch_size]).to(device=device, dtype=torch.float32)
        out = model.encode(x)
        s_parts.append(out.s_mean.float().cpu())
        z_parts.append(out.z_mean.float().mean(dim=1).cpu())
    return torch.cat(s_parts), torch.cat(z_parts)


@torch.no_grad()
def iter_embeddings(
    model: torch.nn.Module,
    utterances: Iterable[tuple[str, np.ndarray]],
    segment_frames: int,
    batch_size: int = 64,
    normalise: Normaliser | None = None,
    skip_bad: bool = False,
    skipped: list[str] | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(utt, s, z)`` in input order.

    An utterance shorter than one segment, or with non-finite features, is an error naming it;
    with ``skip_bad`` it is left out and its id appended to ``skipped``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    pending_ids: list[str] = []
    pending_segs: list[np.ndarray] = []
    n_pending = 0

    def flush() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        segs = np.concatenate(pending_segs)
        s_seg, z_seg = _encode_means(model, segs, batch_size, device)
        counts = torch.tensor([p.shape[0] for p in pending_segs])
        owner = torch.repeat_interleave(torch.arange(len(pending_ids)), counts)
        s_sum = torch.zeros(len(pending_ids), s_seg.shape[1]).index_add_(0, owner, s_seg)
        z_sum = torch.zeros(len(pending_ids), z_seg.shape[1]).index_add_(0, owner, z_seg)
        s_utt = (s_sum / counts[:, None]).numpy()
        z_utt = (z_sum / counts[:, None]).numpy()
        for k, utt in enumerate(pending_ids):
            if not (np.isfinite(s_utt[k]).all() and np.isfinite(z_utt[k]).all()):
                raise UserError(f"utterance {utt}: the model produced a non-finite embedding")
            yield utt, s_utt[k].copy(), z_utt[k].copy()

    def reject(utt: str, why: str) -> None:
        if not skip_bad:
            raise UserError(f"utterance {utt}: {why} (use --skip_bad true to skip such utterances)")
        log.warning("skipping utterance %s: %s", utt, why)
        if skipped is not None:
            skipped.append(utt)

    for utt, feats in utterances:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2:
            raise UserError(f"utterance {utt}: expected a (frames, dims) matrix, got shape {feats.shape}")
        if feats.shape[0] < segment_frames:
            reject(utt, f"{feats.shape[0]} frames, shorter than one segment of {segment_frames}")
            continue
        if not np.isfinite(feats).all():
            reject(utt, "non-finite feature values")
            continue
        if normalise is not None:
            feats = np.asarray(normalise(feats), dtype=np.float32)
        segs = cut_segments(feats, segment_frames)
        pending_ids.append(utt)
        pending_segs.append(segs)
        n_pending += segs.shape[0]
        if n_pending >= batch_size:
            yield from flush()
            pending_ids, pending_segs, n_pending = [], [], 0
    if pending_ids:
        yield from flush()


def extract_embeddings(
    model: torch.nn.Module,
    utterances: Iterable[tuple[str, np.ndarray]],
    segment_frames: int,
    batch_size: int = 64,
    normalise: Normaliser | None = None,
    skip_bad: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = False,
    total: int | None = None,
) -> UtteranceEmbeddings:
    """All embeddings of ``utterances`` (see :func:`iter_embeddings`), with a tqdm bar if asked."""
    result = UtteranceEmbeddings()
    it = iter_embeddings(model, utterances, segment_frames, batch_size, normalise, skip_bad, result.skipped, device)
    with tqdm(total=total, desc="embeddings", unit="utt", disable=not progress) as bar:
        for utt, s, z in it:
            result.s[utt] = s
            result.z[utt] = z
            bar.update(1)
        bar.update(len(result.skipped))
    return result


def write_vectors(outdir: str | os.PathLike, name: str, vectors: Mapping[str, np.ndarray]) -> Path:
    """Write ``<outdir>/<name>.ark`` and ``<name>.scp`` (Kaldi float vectors, in the given order).

    Written by the feature-file writer: each file appears complete or not at all, the ark
    before the scp that points into it.
    """
    outdir = Path(outdir)
    scp = outdir / f"{name}.scp"
    with FeatureWriter(outdir / f"{name}.ark", scp, vectors=True) as writer:
        for key, vec in vectors.items():
            writer.write(key, vec)
    return scp


def speech_model_settings(cfg: Mapping, expdir: Path) -> tuple[int, Normaliser]:
    """Training segment length and feature normalisation from an experiment's resolved config."""
    from cdsvae.data.speech import SPEECH_DATA, feature_normaliser

    model_cfg = cfg.get("model", {})
    if model_cfg.get("frame") not in ("mlp", "conv1d"):
        raise UserError(
            f"{expdir / 'config.yaml'}: model.frame is {model_cfg.get('frame')!r}; speech embeddings need a "
            "spectral frame coder (mlp or conv1d)"
        )
    data_cfg = cfg.get("data", {})
    segment_frames = int(data_cfg.get("segment_frames") or SPEECH_DATA.fields["segment_frames"].default)
    return segment_frames, feature_normaliser(data_cfg)


def read_feature_table(feats_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``feats.scp`` and ``utt2spk`` of a feature dir; every utterance needs a speaker."""
    from cdsvae.data.datadir import read_scp

    scp, u2s = feats_dir / "feats.scp", feats_dir / "utt2spk"
    for path in (scp, u2s):
        if not path.is_file():
            raise UserError(f"{path}: not found (expected a feature dir with feats.scp and utt2spk)")
    feats = read_scp(scp)
    utt2spk = read_scp(u2s)
    missing = [u for u in feats if u not in utt2spk]
    if missing:
        raise UserError(f"{u2s}: no speaker for utterance {missing[0]} of {scp}")
    if not feats:
        raise UserError(f"{scp}: no utterances")
    return feats, utt2spk


def iter_feature_matrices(feats: Mapping[str, str], scp: Path, feat_dim: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """``(utt, matrix)`` in C order; an unreadable entry or a wrong dimension is an error naming it."""
    from cdsvae.data.datadir import sorted_c

    fds: dict = {}
    try:
        for utt in sorted_c(feats):
            try:
                mat = np.asarray(kaldiio.load_mat(feats[utt], fd_dict=fds), dtype=np.float32)
            except (OSError, ValueError, KeyError) as e:
                raise UserError(f"{scp}: cannot read features of utterance {utt} ({feats[utt]}): {e}") from None
            if feat_dim is not None and (mat.ndim != 2 or mat.shape[1] != feat_dim):
                raise UserError(
                    f"{scp}: utterance {utt} has features of shape {mat.shape}, the model expects {feat_dim} per frame"
                )
            yield utt, mat
    finally:
        for f in fds.values():
            f.close()


def evenly_spaced_subset(table: Mapping[str, str], n: int) -> dict[str, str]:
    """At most ``n`` entries of ``table``, evenly spaced over its keys in C-locale order."""
    from cdsvae.data.datadir import sorted_c

    keys = sorted_c(table)
    if n >= len(keys):
        return {k: table[k] for k in keys}
    picks = np.unique(np.linspace(0, len(keys) - 1, n).round().astype(np.int64))
    return {keys[i]: table[keys[i]] for i in picks.tolist()}


def extract_feature_dir(
    expdir: str | os.PathLike,
    feats_dir: str | os.PathLike,
    outdir: str | os.PathLike,
    segment_frames: int | None = None,
    batch_size: int = 64,
    skip_bad: bool = False,
    device: str = "cpu",
    progress: bool = False,
    max_utts: int | None = None,
) -> dict:
    """Stage 5: embeddings of every utterance of ``feats_dir`` with the model of ``expdir``.

    ``max_utts`` keeps that many utterances evenly spaced in sorted order (ids start with the
    speaker, so the subset spreads over speakers): enough for the mean embedding that
    mean-normalised scoring subtracts, without embedding a whole large training set.

    Writes ``s``/``z`` ark+scp, the ``utt2spk`` of the embedded utterances and ``meta.json``
    (where the features came from, the segment length, the skipped utterances, and which
    checkpoint was used and why).
    """
    import json

    from cdsvae.data.datadir import write_scp
    from cdsvae.io import atomic_write_text
    from cdsvae.experiment.load import load_model_with_info

    expdir, feats_dir, outdir = Path(expdir), Path(feats_dir), Path(outdir)
    feats, utt2spk = read_feature_table(feats_dir)
    n_available = len(feats)
    if max_utts is not None:
        if max_utts < 1:
            raise UserError(f"--max_utts must be >= 1, got {max_utts}")
        feats = evenly_spaced_subset(feats, max_utts)
    model, cfg, checkpoint = load_model_with_info(expdir, device=device)
    cfg_segment, normalise = speech_model_settings(cfg, expdir)
    segment_frames = int(segment_frames or cfg_segment)
    if segment_frames < 1:
        raise UserError(f"--segment_frames must be >= 1, got {segment_frames}")
    if batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {batch_size}")
    feat_dim = int(cfg["model"]["feat_dim"])
    result = extract_embeddings(
        model,
        iter_feature_matrices(feats, feats_dir / "feats.scp", feat_dim),
        segment_frames,
        batch_size=batch_size,
        normalise=normalise,
        skip_bad=skip_bad,
        device=device,
        progress=progress,
        total=len(feats),
    )
    if not result.s:
        raise UserError(f"{feats_dir / 'feats.scp'}: no utterance has {segment_frames} frames or more")
    outdir.mkdir(parents=True, exist_ok=True)
    write_vectors(outdir, "s", result.s)
    write_vectors(outdir, "z", result.z)
    write_scp(outdir / "utt2spk", {u: utt2spk[u] for u in result.s})
    meta = {
        "expdir": str(expdir),
        "feats": str(feats_dir),
        "segment_frames": segment_frames,
        "cmvn": cfg.get("data", {}).get("cmvn"),
        "n_utts": len(result.s),
        "n_available": n_available,
        "n_skipped": len(result.skipped),
        "skipped": result.skipped,
        "s_dim": int(next(iter(result.s.values())).shape[0]),
        "z_dim": int(next(iter(result.z.values())).shape[0]),
        "checkpoint": checkpoint,
    }
    atomic_write_text(outdir / "meta.json", json.dumps(meta, indent=2) + "\n")
    log.info("%s: %d utterances embedded, %d skipped", outdir, meta["n_utts"], meta["n_skipped"])
    return meta
