"""Unit error rates: known answers, a brute-force twin of the alignment, and unit folding."""

import functools
import itertools
import math
import random

import pytest

from cdsvae.eval.metrics.per import ErrorCounts, align_counts, error_counts, fold_units, read_unit_map
from cdsvae.io import UserError


def brute_force_distance(ref, hyp):
    """The edit distance by plain recursion over the three operations (no table)."""
    @functools.lru_cache(maxsize=None)
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (ref[i - 1] != hyp[j - 1]))
    return d(len(ref), len(hyp))


@pytest.mark.parametrize("ref, hyp, sub, dels, ins", [
    ("a b c", "a b c", 0, 0, 0),
    ("a b c", "a x c", 1, 0, 0),          # one substitution
    ("a b c", "a c", 0, 1, 0),            # one deletion
    ("a b c", "a b b c", 0, 0, 1),        # one insertion
    ("a b c d", "b c d e", 0, 1, 1),      # shifted: deletion + insertion beat 4 substitutions
    ("k ae t", "", 0, 3, 0),              # empty hypothesis: all deleted
    ("", "k ae t", 0, 0, 3),              # empty reference: all inserted
    ("s ih t ih ng", "s iy t ng", 1, 1, 0),  # sitting -> s iy t ng: ih->iy, ih deleted
])
def test_known_answers(ref, hyp, sub, dels, ins):
    counts = align_counts(ref.split(), hyp.split())
    assert (counts.sub, counts.dels, counts.ins) == (sub, dels, ins)
    assert counts.ref_units == len(ref.split())
    assert counts.errors == brute_force_distance(tuple(ref.split()), tuple(hyp.split()))


def test_rate_and_sums():
    total = error_counts({"u1": ["a", "b", "c", "d"], "u2": ["a", "b"]}, {"u1": ["a", "x", "c", "d"], "u2": []})
    assert total == ErrorCounts(sub=1, dels=2, ins=0, ref_units=6)
    assert total.rate == pytest.approx(0.5)
    assert math.isnan(ErrorCounts().rate)
    with pytest.raises(UserError, match="no hypothesis for 1 reference utterance"):
        error_counts({"u1": ["a"]}, {})


def test_alignment_matches_brute_force_on_random_sequences():
    rng = random.Random(0)
    for _ in range(300):
        ref = tuple(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        hyp = tuple(rng.choice("abcd") for _ in range(rng.randint(0, 7)))
        counts = align_counts(ref, hyp)
        assert counts.errors == brute_force_distance(ref, hyp), (ref, hyp)
        # the operations account for both lengths: matches + sub + del = |ref|, matches + sub + ins = |hyp|
        assert len(ref) - counts.dels - len(hyp) + counts.ins == 0


def test_fold_units_maps_and_deletes(tmp_path):
    path = tmp_path / "map"
    path.write_text("ao aa\naa aa\nq\nh# sil\n")
    mapping = read_unit_map(path)
    assert mapping == {"ao": "aa", "aa": "aa", "q": None, "h#": "sil"}
    assert fold_units(["h#", "ao", "q", "aa", "h#"], mapping) == ["sil", "aa", "aa", "sil"]
    with pytest.raises(UserError, match="unit 'zz' is not in the folding map"):
        fold_units(["zz"], mapping)
    path.write_text("aa aa\naa ao\n")
    with pytest.raises(UserError, match="map:2: unit 'aa' mapped twice"):
        read_unit_map(path)
    path.write_text("aa a a\n")
    with pytest.raises(UserError, match="expected '<unit> \\[<class>\\]'"):
        read_unit_map(path)


def test_folding_changes_the_score_by_hand():
    """'ix' and 'ih' are one class after folding, 'q' is not scored: 2 errors in 61 phones, 0 in 39."""
    mapping = {"ih": "ih", "ix": "ih", "q": None, "t": "t", "s": "s"}
    ref, hyp = ["s", "ix", "q", "t"], ["s", "ih", "t"]
    assert align_counts(ref, hyp).errors == 2
    assert align_counts(fold_units(ref, mapping), fold_units(hyp, mapping)).errors == 0
    assert list(itertools.chain(fold_units(ref, mapping))) == ["s", "ih", "t"]
