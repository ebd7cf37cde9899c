"""Markdown tables of speech results: known answers for a row and for the paired t-test."""

from pathlib import Path

import numpy as np
import pytest

from cdsvae.eval.report.results import ExperimentResult
from cdsvae.eval.report.tables import group_results, paired_p_value, results_table
from cdsvae.io import UserError


def test_results_table_known_answer():
    r = ExperimentResult(Path("exp/x"), "x", "DSVAE", 0.1, 0.4, 0.2, 0.3, 3, 7)
    assert results_table([r]).markdown().splitlines()[-1] == "| DSVAE | x | 10.00 | 40.00 | 30.00 | 0.2000 | 0.3000 | 10 (3/7) |"


def test_paired_p_value_matches_scipy_ttest_rel():
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(3)
    for n in (2, 3, 5):
        a, b = rng.normal(size=n), rng.normal(size=n) + 0.3
        assert paired_p_value(a - b) == pytest.approx(ttest_rel(a, b).pvalue, rel=1e-10)
    assert paired_p_value([0.0, 0.0]) == 1.0 and paired_p_value([0.5, 0.5]) == 0.0
    with pytest.raises(ValueError):
        paired_p_value([1.0])


def test_seeds_of_one_name_must_be_one_system():
    a = ExperimentResult(Path("exp/x_seed1"), "x_seed1", "DSVAE", 0.1, 0.4, 0.2, 0.3, 3, 7, seed=1)
    b = ExperimentResult(Path("exp/x_seed2"), "x_seed2", "C-DSVAE", 0.1, 0.4, 0.2, 0.3, 3, 7, seed=2)
    c = ExperimentResult(Path("exp/x_seed0"), "x_seed0", "DSVAE", 0.1, 0.4, 0.2, 0.3, 3, 7, seed=0)
    assert [r.tag for r in group_results([a, c])["x"]] == ["x_seed0", "x_seed1"]
    with pytest.raises(UserError, match="share the name x but are different systems"):
        group_results([a, b])
