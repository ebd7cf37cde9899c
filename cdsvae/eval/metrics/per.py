"""Unit error rates (phone, token or character error rate) of decoded sequences, as speech
recognition scores them: the Levenshtein alignment of each hypothesis to its reference, with
substitutions, deletions and insertions counted, and the rate = errors / reference units.

Units can be folded before scoring with a mapping (``read_unit_map``): each unit becomes its
class, and a unit mapped to nothing is deleted from both sides (e.g. TIMIT's 61 phones folded
to 39 classes; the mapping file belongs to the recipe that needs it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from cdsvae.data.datadir import iter_table_lines
from cdsvae.io import UserError


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations of the best alignment(s); ``ref_units`` is the length of the reference(s)."""

    sub: int = 0
    dels: int = 0
    ins: int = 0
    ref_units: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dels + self.ins

    @property
    def rate(self) -> float:
        """errors / reference units (nan for an empty reference)."""
        return self.errors / self.ref_units if self.ref_units else float("nan")

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.sub + other.sub, self.dels + other.dels, self.ins + other.ins,
                           self.ref_units + other.ref_units)


def align_counts(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    """Counts of one minimum-edit alignment of ``hyp`` to ``ref`` (ties: fewest substitutions).

    Dynamic programming over (errors, substitutions) pairs, one row at a time: O(len(ref) x
    len(hyp)) time, O(len(hyp)) memory.
    """
    ref, hyp = list(ref), list(hyp)
    # cell = (errors, sub, dels, ins); compared on (errors, sub) so ties prefer deletions+insertions
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            e, s, d, n = prev[j - 1]
            if ref[i - 1] == hyp[j - 1]:
                best = (e, s, d, n)
            else:
                best = (e + 1, s + 1, d, n)
            e, s, d, n = prev[j]
            best = min(best, (e + 1, s, d + 1, n), key=lambda c: (c[0], c[1]))
            e, s, d, n = cur[j - 1]
            best = min(best, (e + 1, s, d, n + 1), key=lambda c: (c[0], c[1]))
            cur.append(best)
        prev = cur
    _, s, d, n = prev[-1]
    return ErrorCounts(sub=s, dels=d, ins=n, ref_units=len(ref))


def error_counts(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, Sequence[str]]) -> ErrorCounts:
    """Summed counts over utterances; every reference needs a hypothesis (a missing one is an error)."""
    missing = [u for u in refs if u not in hyps]
    if missing:
        raise UserError(f"no hypothesis for {len(missing)} reference utterance(s), e.g. {missing[0]}")
    total = ErrorCounts()
    for utt, ref in refs.items():
        total = total + align_counts(ref, hyps[utt])
    return total


def read_unit_map(path: str | os.PathLike) -> dict[str, str | None]:
    """A folding map, one ``unit [class]`` per line; a unit without a class is deleted when folding."""
    mapping: dict[str, str | None] = {}
    for lineno, key, value in iter_table_lines(path):
        if key in mapping:
            raise UserError(f"{path}:{lineno}: unit '{key}' mapped twice")
        if value is not None and len(value.split()) != 1:
            raise UserError(f"{path}:{lineno}: expected '<unit> [<class>]', got '{key} {value}'")
        mapping[key] = value
    if not mapping:
        raise UserError(f"{path}: empty unit map")
    return mapping


def fold_units(units: Iterable[str], mapping: Mapping[str, str | None]) -> list[str]:
    """Each unit replaced by its class; units mapped to nothing are dropped; an unknown unit is an error."""
    out = []
    for unit in units:
        if unit not in mapping:
            raise UserError(f"unit '{unit}' is not in the folding map")
        if mapping[unit] is not None:
            out.append(mapping[unit])
    return out
