"""Cosine scoring of trials between per-utterance embeddings, written as ``enroll test score``."""

from __future__ import annotations

import os
from pathlib import Path

import kaldiio
import numpy as np

from cdsvae.errors import UserError
from cdsvae.eval.metrics.trials import SpeakerVerificationTrials, iter_pair_lines
from cdsvae.io import atomic_open

_WRITE_CHUNK = 100_000


def normalise_rows(embeddings: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Unit-length rows (float64); an all-zero row stays zero so its cosine scores are 0."""
    x = np.asarray(embeddings, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps)


def cosine_scores(
    embeddings: np.ndarray, enroll_idx: np.ndarray, test_idx: np.ndarray, block_rows: int = 2048
) -> np.ndarray:
    """Cosine similarity of rows ``enroll_idx[k]`` and ``test_idx[k]`` of ``embeddings``.

    Normalise once, then one matmul per block of enrolment rows against all rows, and pick the
    trials' entries: the similarity block stays at ``block_rows * N`` however many trials there
    are. Trials already sorted by enrolment row (all pairs, Kaldi lists grouped by enrolment)
    are read in place; others go through one stable argsort.
    """
    e = normalise_rows(embeddings)
    enroll_idx = np.asarray(enroll_idx, dtype=np.int64)
    test_idx = np.asarray(test_idx, dtype=np.int64)
    scores = np.empty(enroll_idx.shape[0], dtype=np.float64)
    in_order = bool(np.all(enroll_idx[1:] >= enroll_idx[:-1]))
    order = None if in_order else np.argsort(enroll_idx, kind="stable")
    sorted_enroll = enroll_idx if in_order else enroll_idx[order]
    for r0 in range(0, e.shape[0], block_rows):
        r1 = min(r0 + block_rows, e.shape[0])
        lo, hi = np.searchsorted(sorted_enroll, [r0, r1])
        if lo == hi:
            continue
        sel = slice(lo, hi) if in_order else order[lo:hi]
        sims = e[r0:r1] @ e.T
        scores[sel] = sims[enroll_idx[sel] - r0, test_idx[sel]]
    return scores


def load_embedding_matrix(scp: str | os.PathLike, utts: list[str] | None = None) -> np.ndarray:
    """Rows of the embeddings in ``scp`` in the order of ``utts`` (default: the scp's order); a missing one is an error."""
    scp = Path(scp)
    if not scp.is_file():
        raise UserError(f"{scp}: embedding scp not found")
    table = kaldiio.load_scp(str(scp))
    if utts is None:
        utts = list(table)
        if not utts:
            raise UserError(f"{scp}: no embeddings")
    missing = [u for u in utts if u not in table]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{scp}: no embedding for utterance {missing[0]}{more}")
    rows = [np.asarray(table[u], dtype=np.float64).reshape(-1) for u in utts]
    dims = {r.shape[0] for r in rows}
    if len(dims) != 1:
        raise UserError(f"{scp}: embeddings have different dimensions {sorted(dims)}")
    matrix = np.stack(rows)
    if not np.isfinite(matrix).all():
        bad = utts[int(np.nonzero(~np.isfinite(matrix).all(axis=1))[0][0])]
        raise UserError(f"{scp}: non-finite embedding for utterance {bad}")
    return matrix


def mean_embedding(scp: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(mean vector, count) of every embedding in ``scp``: what mean-normalised scoring subtracts."""
    matrix = load_embedding_matrix(scp)
    return matrix.mean(axis=0), matrix.shape[0]


def score_trials(scp: str | os.PathLike, trials: SpeakerVerificationTrials,
                 mean: np.ndarray | None = None) -> np.ndarray:
    """Cosine scores of every trial from the embeddings in ``scp``.

    With ``mean`` (e.g. the mean embedding of the training set), it is subtracted from every
    embedding first: the cosine then measures directions relative to the population centre
    instead of the shared offset that makes raw cosines of all pairs similar.
    """
    matrix = load_embedding_matrix(scp, trials.utts)
    if mean is not None:
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        if mean.shape[0] != matrix.shape[1]:
            raise UserError(f"{scp}: embeddings have dimension {matrix.shape[1]}, the mean to subtract has "
                            f"{mean.shape[0]}")
        matrix = matrix - mean
    return cosine_scores(matrix, trials.enroll_idx, trials.test_idx)


def write_scores(path: str | os.PathLike, trials: SpeakerVerificationTrials, scores: np.ndarray) -> None:
    """Write ``enroll test score`` lines atomically, in the trials' order."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(trials),):
        raise ValueError(f"{len(trials)} trials but {scores.shape} scores")
    utts = np.asarray(trials.utts, dtype=object)
    with atomic_open(path, "w", encoding="utf-8") as f:
        for start in range(0, len(trials), _WRITE_CHUNK):
            sl = slice(start, start + _WRITE_CHUNK)
            text = np.array(["%.6f" % v for v in scores[sl].tolist()], dtype=object)
            rows = utts[trials.enroll_idx[sl]] + " " + utts[trials.test_idx[sl]] + " " + text
            f.write("\n".join(rows.tolist()))
            f.write("\n")


def read_scores(path: str | os.PathLike, trials: SpeakerVerificationTrials) -> np.ndarray:
    """Scores from an ``enroll test score`` file, aligned to ``trials``; missing pairs are an error."""
    path = Path(path)
    table = {(e, t): score for e, t, score in iter_pair_lines(path, "enroll test score", float)}
    out = np.empty(len(trials), dtype=np.float64)
    for k, (e, t, _) in enumerate(trials.pairs()):
        try:
            out[k] = table[(e, t)]
        except KeyError:
            raise UserError(f"{path}: no score for trial {e} {t}") from None
    return out
