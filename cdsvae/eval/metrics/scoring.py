"""Cosine scoring of trials between per-utterance embeddings, written as ``enroll test score``, and the
speaker-verification step of an embedding dir (``score_embeddings``: trials, scores, EER, minDCF)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import kaldiio
import numpy as np

from cdsvae.eval.metrics.trials import SpeakerVerificationTrials, iter_pair_lines
from cdsvae.io import UserError, atomic_open, atomic_write_text

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


FACTORS = ("s", "z")


def skipped_utterances(emb_dir: Path) -> set[str]:
    """Utterances the extraction skipped on purpose (--skip_bad), from its meta.json."""
    meta = emb_dir / "meta.json"
    if not meta.is_file():
        return set()
    try:
        return set(json.loads(meta.read_text(encoding="utf-8")).get("skipped", []))
    except (json.JSONDecodeError, AttributeError):
        raise UserError(f"{meta}: not a valid embeddings meta.json") from None


def embedded_utterances(emb_dir: Path) -> set[str]:
    """The utterances with an s embedding (the keys of s.scp)."""
    from cdsvae.data.datadir import read_scp
    return set(read_scp(emb_dir / "s.scp"))


def _verification_trials(utt2spk: dict[str, str], utt2spk_path: Path, embedded: set[str], outdir: Path,
                         trials_from: Path | None, trials_format: str, emit: Callable[[str], None]):
    """The trials to score (``trials_from`` or all pairs of the embedded utterances), written to
    ``outdir/trials``, and what results.json records of a given list."""
    from cdsvae.eval.metrics.trials import all_pairs_trials, load_trials, select_trials, write_trials

    trials_path = outdir / "trials"
    extra: dict = {}
    if trials_from is not None:
        trials, fmt = load_trials(trials_from, trials_format, utt2spk, str(utt2spk_path))
        n_listed = len(trials)
        trials, dropped = select_trials(trials, embedded)
        extra = {"trials_from": str(trials_from), "trials_format": fmt, "n_listed_trials": n_listed,
                 "n_trials_without_embedding": n_listed - len(trials)}
        if dropped:
            emit(f"{n_listed - len(trials)} of {n_listed} trial(s) of {trials_from} name an utterance without "
                 f"embedding and are left out")
        if trials_path.resolve() != trials_from.resolve():
            write_trials(trials_path, trials)
        elif fmt != "kaldi" or dropped:
            raise UserError(f"{trials_from}: is also the trials file this run writes to {outdir}; "
                            "give another --outdir")
    else:
        trials = all_pairs_trials({u: s for u, s in utt2spk.items() if u in embedded})
        write_trials(trials_path, trials)
    if trials.n_target == 0 or trials.n_nontarget == 0:
        raise UserError(
            f"{trials_path}: {trials.n_target} target and {trials.n_nontarget} nontarget trials; need both "
            "(every speaker needs two test utterances and there must be two speakers)"
        )
    return trials, extra


def _score_factor(emb_dir: Path, outdir: Path, trials, factor: str, mean, suffix: str, p_target: float,
                  emit: Callable[[str], None]) -> dict:
    from cdsvae.eval.metrics.eer import compute_eer, compute_min_dcf

    scores = score_trials(emb_dir / f"{factor}.scp", trials, mean)
    write_scores(outdir / f"scores_{factor}{suffix}", trials, scores)
    tgt, non = scores[trials.target], scores[~trials.target]
    eer, threshold = compute_eer(tgt, non)
    min_dcf = compute_min_dcf(tgt, non, p_target=p_target)
    label = f"{factor}{' (mean-normalised)' if suffix else ''}"
    emit(f"{label}: EER {100 * eer:.2f}%  minDCF({p_target:g}) {min_dcf:.4f}")
    return {"eer": float(eer), "min_dcf": float(min_dcf), "threshold": float(threshold)}


def score_embeddings(emb_dir: Path, utt2spk_path: Path, outdir: Path, trials_from: Path | None = None,
                     trials_format: str = "auto", p_target: float = 0.01, mean_from: Path | None = None,
                     emit: Callable[[str], None] = print) -> dict:
    """Speaker verification with the s and z embeddings of ``emb_dir`` on the utterances of ``utt2spk_path``:
    ``trials``, ``scores_s``, ``scores_z`` (and ``*_meannorm`` after subtracting the mean embedding of
    ``mean_from``) and ``results.json`` in ``outdir``; utterances without embedding are counted and left out.
    The figures go to ``emit`` line by line; returns what results.json holds."""
    from cdsvae.data.datadir import read_utt2spk

    for factor in FACTORS:
        if not (emb_dir / f"{factor}.scp").is_file():
            raise UserError(f"{emb_dir / (factor + '.scp')}: embedding scp not found")
    utt2spk = read_utt2spk(utt2spk_path)
    embedded = embedded_utterances(emb_dir)
    missing = [u for u in utt2spk if u not in embedded]
    if missing:
        at_extraction = skipped_utterances(emb_dir)
        n_ext = sum(u in at_extraction for u in missing)
        emit(f"{len(missing)} of {len(utt2spk)} utterance(s) of {utt2spk_path} have no embedding and are left "
             f"out of the trials ({n_ext} skipped at extraction, {len(missing) - n_ext} without features): "
             f"{' '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    trials, extra = _verification_trials(utt2spk, utt2spk_path, embedded, outdir, trials_from, trials_format, emit)

    means: dict[str, np.ndarray] = {}
    n_mean = None
    if mean_from is not None:
        for factor in FACTORS:
            means[factor], n_mean = mean_embedding(mean_from / f"{factor}.scp")

    results: dict = {}
    for factor in FACTORS:
        results[factor] = _score_factor(emb_dir, outdir, trials, factor, None, "", p_target, emit)
    if means:
        results["mean_norm"] = {factor: _score_factor(emb_dir, outdir, trials, factor, means[factor], "_meannorm",
                                                      p_target, emit) for factor in FACTORS}
        results["mean_norm"].update(mean_from=str(mean_from), n_utts=n_mean)
    results.update(n_target=trials.n_target, n_nontarget=trials.n_nontarget, p_target=p_target, **extra)
    results.update(n_utts=len(utt2spk), n_without_embedding=len(missing), without_embedding=missing)
    atomic_write_text(outdir / "results.json", json.dumps(results, indent=2) + "\n")
    emit(f"{trials.n_target} target / {trials.n_nontarget} nontarget trials; wrote {outdir / 'results.json'}")
    return results

