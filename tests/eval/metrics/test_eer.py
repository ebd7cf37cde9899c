"""EER / minDCF: known answers, brute-force twins, scikit-learn's ROC, ties and bad input."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from cdsvae.eval.metrics.eer import compute_eer, compute_min_dcf, det_curve
from cdsvae.io import UserError


def brute_force_points(tgt, non):
    """Operating points by counting, one candidate threshold at a time (plain loops)."""
    thresholds = sorted(set(list(tgt) + list(non))) + [math.inf]
    points = []
    for th in thresholds:
        misses = sum(1 for s in tgt if s < th)
        false_alarms = sum(1 for s in non if s >= th)
        points.append((false_alarms / len(non), misses / len(tgt), th))
    return points


def brute_force_eer(tgt, non):
    points = brute_force_points(tgt, non)
    for (far0, frr0, th0), (far1, frr1, th1) in zip(points, points[1:]):
        d0, d1 = frr0 - far0, frr1 - far1
        if d0 == 0:
            return frr0, th0
        if d0 < 0 < d1:
            a = -d0 / (d1 - d0)
            return frr0 + a * (frr1 - frr0), th0
        if d1 == 0:
            return frr1, th1
    raise AssertionError("no crossing")


def brute_force_min_dcf(tgt, non, p_target, c_miss=1.0, c_fa=1.0):
    best = math.inf
    for far, frr, _ in brute_force_points(tgt, non):
        best = min(best, c_miss * frr * p_target + c_fa * far * (1 - p_target))
    return best / min(c_miss * p_target, c_fa * (1 - p_target))


def sklearn_eer(tgt, non):
    """EER where the linearly interpolated scikit-learn ROC meets FAR == FRR."""
    y = np.r_[np.ones(len(tgt)), np.zeros(len(non))]
    fpr, tpr, _ = roc_curve(y, np.r_[tgt, non])
    fnr = 1 - tpr
    # roc_curve runs from reject-all to accept-all: fnr - fpr goes from +1 down to -1
    d = fnr - fpr
    for i in range(len(d) - 1):
        if d[i] >= 0 >= d[i + 1]:
            if d[i] == d[i + 1]:
                return fnr[i]
            a = d[i] / (d[i] - d[i + 1])
            return fnr[i] + a * (fnr[i + 1] - fnr[i])
    raise AssertionError("no crossing")


def test_separable_is_zero():
    eer, th = compute_eer([0.6, 0.7, 0.8, 0.5], [0.4, 0.3, 0.2, 0.1])
    assert eer == 0.0 and th == 0.5
    assert compute_min_dcf([0.6, 0.7, 0.8, 0.5], [0.4, 0.3, 0.2, 0.1]) == 0.0


def test_reversed_scores_is_one():
    assert compute_eer([0.1, 0.2], [0.8, 0.9])[0] == 1.0


def test_identical_distributions_about_half():
    rng = np.random.default_rng(0)
    eer, _ = compute_eer(rng.normal(size=20000), rng.normal(size=20000))
    assert abs(eer - 0.5) < 0.02


def test_gaussian_known_answer():
    # targets N(d, 1), nontargets N(0, 1): EER = Phi(-d/2) at threshold d/2
    rng = np.random.default_rng(1)
    d = 2.0
    eer, th = compute_eer(rng.normal(d, 1, 50000), rng.normal(0, 1, 50000))
    expected = 0.5 * math.erfc(d / 2 / math.sqrt(2))
    assert abs(eer - expected) < 0.005
    assert abs(th - d / 2) < 0.05


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn_roc_and_brute_force_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    tgt = rng.normal(1.0, 1.0, rng.integers(5, 60))
    non = rng.normal(0.0, 1.0, rng.integers(5, 300))
    eer, th = compute_eer(tgt, non)
    assert eer == pytest.approx(sklearn_eer(tgt, non), abs=1e-12)
    b_eer, b_th = brute_force_eer(tgt.tolist(), non.tolist())
    assert eer == pytest.approx(b_eer, abs=1e-12)
    assert th == b_th


@pytest.mark.parametrize("seed", range(5))
def test_ties_agree_with_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    tgt = rng.integers(0, 6, rng.integers(3, 40)).astype(float) + 1
    non = rng.integers(0, 6, rng.integers(3, 80)).astype(float)
    eer, th = compute_eer(tgt, non)
    assert eer == pytest.approx(sklearn_eer(tgt, non), abs=1e-12)
    b_eer, b_th = brute_force_eer(tgt.tolist(), non.tolist())
    assert eer == pytest.approx(b_eer, abs=1e-12)
    assert th == b_th


def test_ties_are_split_evenly():
    # one tie block holding everything: the ROC diagonal, EER 1/2 whatever the class sizes
    assert compute_eer([2.0] * 3, [2.0] * 7) == (0.5, 2.0)
    # a tie block of one target and one nontarget between separable groups
    # (FAR, FRR) is (1/3, 0) at threshold 1 and (0, 1/3) at threshold 5: the tied pair at 1
    # is one diagonal segment, which meets FAR == FRR halfway, at 1/6
    eer, th = compute_eer([1.0, 5.0, 6.0], [0.0, 0.5, 1.0])
    assert eer == pytest.approx(1 / 6) and th == 1.0


def test_symmetry_and_order_invariance():
    rng = np.random.default_rng(7)
    tgt = rng.integers(0, 10, 50).astype(float)
    non = rng.integers(-3, 7, 90).astype(float)
    eer = compute_eer(tgt, non)[0]
    assert compute_eer(-non, -tgt)[0] == pytest.approx(eer, abs=1e-12)
    assert compute_eer(rng.permutation(tgt), rng.permutation(non))[0] == eer


def test_det_curve_matches_brute_force():
    rng = np.random.default_rng(3)
    tgt = rng.integers(0, 5, 20).astype(float)
    non = rng.integers(0, 5, 30).astype(float)
    far, frr = det_curve(tgt, non)
    points = brute_force_points(tgt.tolist(), non.tolist())
    np.testing.assert_allclose(far, [p[0] for p in points])
    np.testing.assert_allclose(frr, [p[1] for p in points])
    assert np.all(np.diff(far) <= 0) and np.all(np.diff(frr) >= 0)


def test_min_dcf_known_answers():
    # p_target 0.5: normalised cost = FAR + FRR, minimum 1/2 at (FAR 1/2, FRR 0) etc.
    assert compute_min_dcf([3.0, 1.0], [2.0, 0.0], p_target=0.5) == pytest.approx(0.5)
    # p_target 0.01: misses are cheap; best is FAR 0, FRR 1/2 -> 0.01*0.5/0.01
    assert compute_min_dcf([3.0, 1.0], [2.0, 0.0], p_target=0.01) == pytest.approx(0.5)
    # useless scores: the best is a trivial system, normalised cost 1
    assert compute_min_dcf([1.0] * 4, [1.0] * 9, p_target=0.01) == pytest.approx(1.0)
    # costs: c_miss=10, p_target=0.5 -> norm = min(5, 0.5) = 0.5; (FAR 1/2, FRR 0) costs 0.25
    assert compute_min_dcf([3.0, 1.0], [2.0, 0.0], p_target=0.5, c_miss=10) == pytest.approx(0.5)


@pytest.mark.parametrize("p_target", [0.5, 0.01, 0.001])
@pytest.mark.parametrize("seed", range(3))
def test_min_dcf_brute_force(seed, p_target):
    rng = np.random.default_rng(seed)
    tgt = np.round(rng.normal(1.5, 1.0, 40), 1)
    non = np.round(rng.normal(0.0, 1.0, 400), 1)
    got = compute_min_dcf(tgt, non, p_target=p_target, c_miss=2, c_fa=1)
    assert got == pytest.approx(brute_force_min_dcf(tgt.tolist(), non.tolist(), p_target, 2, 1), abs=1e-12)
    assert 0.0 <= got <= 1.0


@pytest.mark.parametrize("bad", [[], np.array([[]]), [1.0, float("nan")], [float("inf"), 1.0]])
def test_bad_input_is_user_error(bad):
    with pytest.raises(UserError):
        compute_eer(bad, [0.0, 1.0])
    with pytest.raises(UserError):
        compute_eer([0.0, 1.0], bad)
    with pytest.raises(UserError):
        compute_min_dcf(bad, [0.0])


def test_docstring_examples():
    import doctest

    import cdsvae.eval.metrics.eer as module

    result = doctest.testmod(module)
    assert result.attempted >= 8 and result.failed == 0


def test_bad_cost_parameters():
    with pytest.raises(UserError, match="p_target"):
        compute_min_dcf([1.0], [0.0], p_target=1.0)
    with pytest.raises(UserError):
        compute_min_dcf([1.0], [0.0], c_miss=0)
    with pytest.raises(UserError, match="not numbers"):
        compute_eer(["a"], [0.0])


@pytest.mark.parametrize("seed", range(20))
def test_min_dcf_brute_force_heavy_ties_and_costs(seed):
    """Few distinct scores (many ties across and within classes), overlapping or reversed classes."""
    rng = np.random.default_rng(100 + seed)
    n_tgt, n_non = rng.integers(1, 12), rng.integers(1, 40)
    shift = rng.choice([-2, 0, 2])
    tgt = rng.integers(0, 5, n_tgt) + shift
    non = rng.integers(0, 5, n_non)
    p_target = rng.choice([0.5, 0.05, 0.01, 0.001])
    c_miss, c_fa = rng.choice([1, 3]), rng.choice([1, 10])
    got = compute_min_dcf(tgt, non, p_target=p_target, c_miss=c_miss, c_fa=c_fa)
    want = brute_force_min_dcf(tgt.tolist(), non.tolist(), p_target, c_miss, c_fa)
    assert got == pytest.approx(want, abs=1e-12)
