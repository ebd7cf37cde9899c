"""Speaker-verification trial lists in Kaldi format: ``enroll test target|nontarget``.

Trials are held as integer index pairs into one sorted utterance list, so a test set with
thousands of utterances (millions of pairs) costs a few arrays, not millions of strings.
``iter_pair_lines`` is the one parser of ``a b value`` lines, which scores files share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, TypeVar

import numpy as np

from cdsvae.errors import UserError
from cdsvae.io import atomic_open

_LABELS = {"target": True, "nontarget": False}
_WRITE_CHUNK = 100_000
T = TypeVar("T")


@dataclass(frozen=True)
class SpeakerVerificationTrials:
    """Pairs ``(utts[enroll_idx[k]], utts[test_idx[k]])`` with ``target[k]`` true iff same speaker."""

    utts: list[str]
    enroll_idx: np.ndarray
    test_idx: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @property
    def n_target(self) -> int:
        return int(self.target.sum())

    @property
    def n_nontarget(self) -> int:
        return len(self) - self.n_target

    def pairs(self) -> list[tuple[str, str, bool]]:
        """The trials as plain tuples (convenient for small lists and tests)."""
        return [
            (self.utts[i], self.utts[j], bool(t))
            for i, j, t in zip(self.enroll_idx.tolist(), self.test_idx.tolist(), self.target.tolist())
        ]


def all_pairs_trials(utt2spk: Mapping[str, str]) -> SpeakerVerificationTrials:
    """Every unordered pair of distinct utterances once, (i, j) with i < j in sorted order.

    Sorting the ids with plain string order matches ``LC_ALL=C sort`` for UTF-8 text, so the
    written file is sorted the way Kaldi tools expect.
    """
    utts = sorted(utt2spk)
    if len(utts) < 2:
        raise UserError(f"need at least 2 utterances to make trials, got {len(utts)}")
    spk_names = sorted(set(utt2spk.values()))
    spk_index = {s: k for k, s in enumerate(spk_names)}
    spk = np.array([spk_index[utt2spk[u]] for u in utts], dtype=np.int64)
    enroll_idx, test_idx = np.triu_indices(len(utts), k=1)
    target = spk[enroll_idx] == spk[test_idx]
    return SpeakerVerificationTrials(utts, enroll_idx.astype(np.int64), test_idx.astype(np.int64), target)


def write_trials(path: str | os.PathLike, trials: SpeakerVerificationTrials) -> None:
    """Write ``enroll test target|nontarget`` lines atomically, in the trials' order."""
    utts = np.asarray(trials.utts, dtype=object)
    label = np.where(trials.target, "target", "nontarget").astype(object)
    with atomic_open(path, "w", encoding="utf-8") as f:
        for start in range(0, len(trials), _WRITE_CHUNK):
            sl = slice(start, start + _WRITE_CHUNK)
            rows = utts[trials.enroll_idx[sl]] + " " + utts[trials.test_idx[sl]] + " " + label[sl]
            f.write("\n".join(rows.tolist()))
            f.write("\n")


def iter_pair_lines(path: str | os.PathLike, form: str, parse: Callable[[str], T]) -> Iterator[tuple[str, str, T]]:
    """``(a, b, parse(value))`` of every ``a b value`` line (trials, scores); blank lines are skipped.

    A line of another shape, or a value ``parse`` refuses with ValueError, is an error naming
    the file and line and the expected ``form``.
    """
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 3:
                    raise ValueError
                value = parse(fields[2])
            except ValueError:
                raise UserError(f"{path}:{lineno}: expected '{form}', got {line.strip()!r}") from None
            yield fields[0], fields[1], value


def _label(text: str) -> bool:
    if text not in _LABELS:
        raise ValueError(text)
    return _LABELS[text]


def read_trials(path: str | os.PathLike) -> SpeakerVerificationTrials:
    """Read a Kaldi trials file; a malformed line is an error naming the file and line."""
    path = Path(path)
    index: dict[str, int] = {}
    enroll: list[int] = []
    test: list[int] = []
    target: list[bool] = []
    for a, b, is_target in iter_pair_lines(path, "enroll test target|nontarget", _label):
        enroll.append(index.setdefault(a, len(index)))
        test.append(index.setdefault(b, len(index)))
        target.append(is_target)
    if not target:
        raise UserError(f"{path}: no trials")
    return SpeakerVerificationTrials(
        list(index),
        np.asarray(enroll, dtype=np.int64),
        np.asarray(test, dtype=np.int64),
        np.asarray(target, dtype=bool),
    )
