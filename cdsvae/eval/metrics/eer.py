"""Exact equal error rate and minimum detection cost for verification scores.

Conventions (shared by every function here):

* A trial is accepted when ``score >= threshold``.  For each distinct score
  ``u_1 < ... < u_m`` the operating point at ``threshold = u_k`` is
  ``FAR = #{nontarget >= u_k} / N_nontarget`` and
  ``FRR = #{target < u_k} / N_target``; a last point at ``threshold = +inf``
  rejects everything (FAR 0, FRR 1).  The first point accepts everything
  (FAR 1, FRR 0).
* Between two consecutive operating points the curve is the straight line
  obtained by accepting the trials tied at ``u_k`` with a probability that goes
  from 1 to 0 (randomised tie-breaking).  This is the ROC that scikit-learn's
  ``roc_curve`` draws, so ties never bias the result towards either class.
* The EER is where that piecewise-linear curve crosses ``FAR == FRR``.  Because
  ``FRR - FAR`` strictly increases from one operating point to the next, the
  crossing is unique.  The returned threshold is the score whose trials are
  being split at the crossing: accepting ``score >= threshold`` (and randomising
  the trials tied at exactly ``threshold``) reaches the EER point.  With
  continuous, untied scores the curve is a staircase and the EER equals the
  FAR (or FRR) of the step the diagonal meets; no grid of thresholds is used.
* minDCF is the minimum over the operating points (the cost is linear along
  each segment, so randomised ties never do better than an endpoint) of
  ``c_miss * P_miss * p_target + c_fa * P_fa * (1 - p_target)``, divided by
  ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the better
  trivial system, as in Kaldi's ``compute_min_dcf.py`` and the NIST SRE plans.

Everything is a sort and cumulative sums: O(N log N) for N trials.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np

from cdsvae.io import UserError

__all__ = ["compute_eer", "compute_min_dcf", "det_curve", "read_scored_trials"]


def _as_scores(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as e:
        raise UserError(f"{name} scores are not numbers: {e}") from None
    if arr.size == 0:
        raise UserError(f"no {name} scores: EER and minDCF need at least one target and one nontarget trial")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise UserError(f"{name} scores contain {int(bad.sum())} non-finite value(s) (NaN or Inf), "
                        f"first at index {int(np.flatnonzero(bad)[0])}")
    return arr


def _operating_points(target_scores, nontarget_scores):
    """Return (far, frr, thresholds) at every distinct score plus the reject-all point."""
    tgt = _as_scores(target_scores, "target")
    non = _as_scores(nontarget_scores, "nontarget")
    scores = np.concatenate([tgt, non])
    is_target = np.concatenate([np.ones(tgt.size, dtype=np.int64), np.zeros(non.size, dtype=np.int64)])
    order = np.argsort(scores, kind="stable")
    scores = scores[order]
    is_target = is_target[order]
    # last index of every block of equal scores
    block_end = np.flatnonzero(np.diff(scores) != 0)
    block_end = np.append(block_end, scores.size - 1)
    targets_below = np.cumsum(is_target)[block_end]
    nontargets_below = (block_end + 1) - targets_below
    frr = np.concatenate([[0.0], targets_below / tgt.size])
    far = np.concatenate([[1.0], (non.size - nontargets_below) / non.size])
    thresholds = np.concatenate([scores[block_end], [np.inf]])
    return far, frr, thresholds


def det_curve(target_scores, nontarget_scores):
    """Operating points ``(far, frr)`` for plotting a DET curve, by increasing threshold.

    The points are those described in the module docstring; joining them with
    straight lines gives the curve on which the EER is measured.

    >>> far, frr = det_curve([3.0, 1.0], [2.0, 0.0])
    >>> far.tolist(), frr.tolist()
    ([1.0, 0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5, 1.0])
    """
    far, frr, _ = _operating_points(target_scores, nontarget_scores)
    return far, frr


def compute_eer(target_scores, nontarget_scores):
    """Equal error rate (a fraction in [0, 1]) and its threshold; see the module docstring.

    Only the two classes are sorted (separately); the crossing is then found by
    bisection on ``FRR - FAR``, which is monotone in the threshold, so no pass
    over every operating point is needed.

    >>> compute_eer([0.6, 0.7, 0.8, 0.5], [0.4, 0.3, 0.2, 0.1])
    (0.0, 0.5)
    >>> compute_eer([3.0, 1.0], [2.0, 0.0])
    (0.5, 2.0)
    >>> compute_eer([1.0, 1.0], [1.0, 1.0])  # all tied: the diagonal of the ROC
    (0.5, 1.0)
    >>> compute_eer([2.0, 3.0, 4.0], [1.0, 2.5, 5.0])  # FAR and FRR both 1/3 at threshold 3
    (0.3333333333333333, 3.0)
    """
    tgt = np.sort(_as_scores(target_scores, "target"))
    non = np.sort(_as_scores(nontarget_scores, "nontarget"))
    n_tgt, n_non = tgt.size, non.size

    def rates(threshold):
        frr = np.searchsorted(tgt, threshold, side="left") / n_tgt
        far = (n_non - np.searchsorted(non, threshold, side="left")) / n_non
        return frr, far

    def first_crossing(sorted_scores):
        """Index of the first score whose operating point has FRR >= FAR (len if none)."""
        def key(i):
            frr, far = rates(sorted_scores[i])
            return frr - far
        return bisect.bisect_left(range(sorted_scores.size), 0.0, key=key)

    # the first operating point (over all distinct scores, then +inf) with FRR - FAR >= 0
    i, j = first_crossing(tgt), first_crossing(non)
    upper = min(tgt[i] if i < n_tgt else np.inf, non[j] if j < n_non else np.inf)
    frr_hi, far_hi = (1.0, 0.0) if upper == np.inf else rates(upper)
    if frr_hi - far_hi == 0.0:
        return float(frr_hi), float(upper)
    # the distinct score just below: the tie block whose randomised split reaches the crossing
    k_t = np.searchsorted(tgt, upper, side="left")
    k_n = np.searchsorted(non, upper, side="left")
    lower = max(tgt[k_t - 1] if k_t > 0 else -np.inf, non[k_n - 1] if k_n > 0 else -np.inf)
    frr_lo, far_lo = rates(lower)
    d_lo, d_hi = frr_lo - far_lo, frr_hi - far_hi
    alpha = -d_lo / (d_hi - d_lo)
    eer = frr_lo + alpha * (frr_hi - frr_lo)
    return float(eer), float(lower)


def compute_min_dcf(target_scores, nontarget_scores, p_target=0.01, c_miss=1, c_fa=1):
    """Normalised minimum detection cost; see the module docstring.

    >>> compute_min_dcf([3.0, 1.0], [2.0, 0.0], p_target=0.5)
    0.5
    >>> compute_min_dcf([0.6, 0.7], [0.4, 0.3])
    0.0
    >>> round(compute_min_dcf([3.0, 1.0], [2.0, 0.0], p_target=0.01), 6)  # FAR 0, FRR 1/2
    0.5
    >>> round(compute_min_dcf([1.0, 3.0], [2.0, 4.0], p_target=0.01), 6)  # reject all
    1.0
    """
    if not 0.0 < float(p_target) < 1.0:
        raise UserError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise UserError(f"c_miss and c_fa must be positive, got {c_miss}, {c_fa}")
    tgt = np.sort(_as_scores(target_scores, "target"))
    non = np.sort(_as_scores(nontarget_scores, "nontarget"))
    n_tgt, n_non = tgt.size, non.size
    # Passing a block of tied scores adds the misses of its targets and removes the false alarms
    # of its nontargets, so the cost can only fall right after a nontarget score: the minimum is
    # at accept-all or just above some nontarget non[i], where FRR = #{tgt <= non[i]} / n_tgt.
    # Taking FAR = (n_non - 1 - i) / n_non there overstates it inside a tie block (same FRR,
    # higher cost) and is exact at its last member, so the minimum is unchanged; no merged
    # sort of all trials is needed.
    cost = np.searchsorted(tgt, non, side="right") * (c_miss * p_target / n_tgt)
    far_cost = np.arange(n_non - 1, -1, -1, dtype=np.float64)
    far_cost *= c_fa * (1.0 - p_target) / n_non
    cost += far_cost
    accept_all = c_fa * (1.0 - p_target)
    default_cost = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(min(cost.min(), accept_all) / default_cost)


def _pair_lines(path: Path, what: str):
    """Yield (lineno, enroll, test, third field) from a three-column Kaldi text file."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3:
                raise UserError(f"{path}:{lineno}: expected '{what}', got {line.strip()!r}")
            yield lineno, fields[0], fields[1], fields[2]


def read_scored_trials(trials_path, scores_path, max_listed: int = 3):
    """Pair a Kaldi ``trials`` file with a ``scores`` file; return (target, nontarget) score arrays.

    Both files must hold exactly the same set of (enroll, test) pairs, each once: a
    verification result over a different set of trials would silently change the EER.
    """
    trials_path, scores_path = Path(trials_path), Path(scores_path)
    labels = {"target": True, "nontarget": False}
    is_target: dict[tuple[str, str], bool] = {}
    for lineno, enroll, test, label in _pair_lines(trials_path, "enroll test target|nontarget"):
        if label not in labels:
            raise UserError(f"{trials_path}:{lineno}: expected 'target' or 'nontarget', got {label!r}")
        if (enroll, test) in is_target:
            raise UserError(f"{trials_path}:{lineno}: duplicate trial {enroll} {test}")
        is_target[(enroll, test)] = labels[label]
    if not is_target:
        raise UserError(f"{trials_path}: no trials")

    tgt: list[float] = []
    non: list[float] = []
    seen: set[tuple[str, str]] = set()
    extra: list[tuple[str, str]] = []
    for lineno, enroll, test, text in _pair_lines(scores_path, "enroll test score"):
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{scores_path}:{lineno}: score is not a number: {text!r}") from None
        if not np.isfinite(value):
            raise UserError(f"{scores_path}:{lineno}: score is not finite: {text!r}")
        key = (enroll, test)
        if key in seen:
            raise UserError(f"{scores_path}:{lineno}: duplicate score for {enroll} {test}")
        label = is_target.get(key)
        if label is None:
            extra.append(key)
            continue
        seen.add(key)
        (tgt if label else non).append(value)

    n_missing = len(is_target) - len(seen)
    if n_missing or extra:
        problems = []
        if n_missing:
            missing = [k for k in is_target if k not in seen][:max_listed]
            problems.append(f"{n_missing} trial(s) of {trials_path} have no score (e.g. "
                            + ", ".join(f"'{e} {t}'" for e, t in missing) + ")")
        if extra:
            problems.append(f"{len(extra)} score(s) in {scores_path} are for pairs not in the trials (e.g. "
                            + ", ".join(f"'{e} {t}'" for e, t in extra[:max_listed]) + ")")
        raise UserError("; ".join(problems))
    if not tgt or not non:
        raise UserError(f"{trials_path}: needs both target and nontarget trials "
                        f"(has {len(tgt)} target, {len(non)} nontarget)")
    return np.asarray(tgt, dtype=np.float64), np.asarray(non, dtype=np.float64)
