"""Unit vocabularies of the CTC recogniser (``cdsvae.eval.judges.ctc``): reading ``units`` transcripts and
mapping units to class ids, with id 0 reserved for the CTC blank.

A ``units`` file is a Kaldi-style table, one utterance per line: ``<utt> u1 u2 ...`` (phones,
tokens or characters separated by whitespace). A unit outside the vocabulary is an error naming it
(there is no ``<unk>`` class: a content judge that silently maps unknown phones to one class would
score them as correct whenever it outputs that class).
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

from cdsvae.data.datadir import c_sort_key, iter_table_lines
from cdsvae.io import UserError

BLANK = "<blank>"


def read_units(path: str | os.PathLike) -> dict[str, list[str]]:
    """``utt -> [unit, ...]`` from a units file; a malformed line (blank, starting with whitespace,
    an utterance without units, a repeated utterance) is a UserError naming ``file:line``."""
    table: dict[str, list[str]] = {}
    for lineno, utt, rest in iter_table_lines(path):
        if rest is None:
            raise UserError(f"{path}:{lineno}: utterance '{utt}' has no units")
        if utt in table:
            raise UserError(f"{path}:{lineno}: utterance '{utt}' listed twice")
        table[utt] = rest.split()
    if not table:
        raise UserError(f"{path}: no utterances")
    return table


class Units:
    """An ordered unit vocabulary: unit ``symbols[i]`` has class id ``i + 1``; id 0 is the blank.

    ``len(units)`` counts the units without the blank; ``units.n_classes`` is ``len + 1``, the
    width of the recogniser's output layer.
    """

    def __init__(self, symbols: Iterable[str]):
        self.symbols: list[str] = [str(s) for s in symbols]
        if not self.symbols:
            raise UserError("a unit vocabulary needs at least one unit")
        self._ids: dict[str, int] = {}
        for i, sym in enumerate(self.symbols, 1):
            if not sym or any(c.isspace() for c in sym):
                raise UserError(f"unit {sym!r} is empty or contains whitespace")
            if sym == BLANK:
                raise UserError(f"'{BLANK}' is reserved for the CTC blank and cannot be a unit")
            if sym in self._ids:
                raise UserError(f"unit '{sym}' listed twice in the vocabulary")
            self._ids[sym] = i

    @classmethod
    def from_transcripts(cls, transcripts: Mapping[str, Sequence[str]] | Iterable[Sequence[str]]) -> "Units":
        """Every unit seen in the transcripts, in ``LC_ALL=C`` byte order (stable across runs)."""
        seqs = transcripts.values() if isinstance(transcripts, Mapping) else transcripts
        seen = {u for seq in seqs for u in seq}
        return cls(sorted(seen, key=c_sort_key))

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Units) and other.symbols == self.symbols

    def __repr__(self) -> str:
        return f"Units({len(self)} units)"

    @property
    def n_classes(self) -> int:
        return len(self.symbols) + 1

    def __contains__(self, unit: str) -> bool:
        return unit in self._ids

    def encode(self, seq: Sequence[str], where: str | None = None) -> list[int]:
        """Class ids (1..len) of ``seq``; an unknown unit is a UserError naming it (and ``where``)."""
        out = []
        for unit in seq:
            try:
                out.append(self._ids[unit])
            except KeyError:
                at = f"{where}: " if where else ""
                raise UserError(f"{at}unit '{unit}' is not in the vocabulary of {len(self)} units") from None
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Units of class ids; blanks (0) are dropped; an id outside the vocabulary is a ValueError."""
        out = []
        for i in ids:
            i = int(i)
            if i == 0:
                continue
            if not 0 < i <= len(self.symbols):
                raise ValueError(f"class id {i} outside 0..{len(self.symbols)}")
            out.append(self.symbols[i - 1])
        return out

    def to_list(self) -> list[str]:
        """The units in id order (without the blank): plain strings, for saving next to weights."""
        return list(self.symbols)

    @classmethod
    def from_list(cls, symbols: Sequence[str]) -> "Units":
        return cls(symbols)
