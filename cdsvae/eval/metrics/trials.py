"""Speaker-verification trial lists: Kaldi's ``enroll test target|nontarget`` and VoxCeleb's ``1|0 path1 path2``.

A VoxCeleb line names recordings by relative path (``1 id10270/x6uYqmx31kE/00001.wav
id10270/8jEAjG6SegY/00008.wav``); the utterance id of a path is the path with its extension
dropped and every ``/`` replaced by ``-`` (``id10270-x6uYqmx31kE-00001``), the ids that Kaldi's
VoxCeleb recipe (``egs/voxceleb/v2/local/make_voxceleb1_v2.pl``) gives. Which of the two formats a
file holds is read from its first line (``load_trials``).

Trials are held as integer index pairs into one utterance list, so a test set with thousands
of utterances (millions of pairs) costs a few arrays, not millions of strings.
``iter_pair_lines`` is the one parser of ``a b value`` lines, which scores files share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Container, Iterator, Mapping, TypeVar

import numpy as np

from cdsvae.io import UserError, atomic_open

_LABELS = {"target": True, "nontarget": False}
_VOXCELEB_LABELS = {"1": True, "0": False}
TRIALS_FORMATS = ("kaldi", "voxceleb")
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
    return SpeakerVerificationTrials(utts, enroll_idx.astype(np.int64, copy=False),
                                     test_idx.astype(np.int64, copy=False), target)


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


def _from_pairs(path: Path, pairs: Iterator[tuple[str, str, bool]]) -> SpeakerVerificationTrials:
    index: dict[str, int] = {}
    enroll: list[int] = []
    test: list[int] = []
    target: list[bool] = []
    for a, b, is_target in pairs:
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


def read_trials(path: str | os.PathLike) -> SpeakerVerificationTrials:
    """Read a Kaldi trials file; a malformed line is an error naming the file and line."""
    path = Path(path)
    return _from_pairs(path, iter_pair_lines(path, "enroll test target|nontarget", _label))


def voxceleb_utt_id(rel_path: str) -> str:
    """The utterance id of a VoxCeleb trial path: extension dropped, ``/`` replaced by ``-``.

    >>> voxceleb_utt_id("id10270/x6uYqmx31kE/00001.wav")
    'id10270-x6uYqmx31kE-00001'
    """
    parts = [p for p in rel_path.split("/") if p not in ("", ".")]
    if parts:
        parts[-1] = os.path.splitext(parts[-1])[0]
    return "-".join(parts)


def read_voxceleb_trials(path: str | os.PathLike, known: Container[str] | None = None,
                         known_from: str = "the test set") -> SpeakerVerificationTrials:
    """Read a VoxCeleb trial list (``1|0 path1 path2``; 1 = same speaker) as utterance-id trials.

    Paths become utterance ids by ``voxceleb_utt_id``. With ``known`` (the test set's utterance
    ids), the first path whose id is not among them is an error naming the line, the path, the id
    and ``known_from``.
    """
    path = Path(path)

    def pairs():
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 3 or fields[0] not in _VOXCELEB_LABELS:
                    raise UserError(f"{path}:{lineno}: expected '1|0 path1 path2', got {line.strip()!r}")
                ids = []
                for rel in fields[1:]:
                    utt = voxceleb_utt_id(rel)
                    if known is not None and utt not in known:
                        raise UserError(f"{path}:{lineno}: path {rel} maps to utterance id {utt}, which is not in "
                                        f"{known_from} (ids are the path without extension, '/' replaced by '-')")
                    ids.append(utt)
                yield ids[0], ids[1], _VOXCELEB_LABELS[fields[0]]

    return _from_pairs(path, pairs())


def detect_trials_format(path: str | os.PathLike) -> str:
    """``"kaldi"`` or ``"voxceleb"``, from the first non-blank line of ``path``.

    A third field ``target``/``nontarget`` means Kaldi; a first field ``1``/``0`` means VoxCeleb.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) == 3 and fields[2] in _LABELS:
                return "kaldi"
            if len(fields) == 3 and fields[0] in _VOXCELEB_LABELS:
                return "voxceleb"
            raise UserError(f"{path}:{lineno}: not a trials line in either format ('enroll test target|nontarget' "
                            f"or '1|0 path1 path2'): {line.strip()!r}")
    raise UserError(f"{path}: no trials")


def load_trials(path: str | os.PathLike, trials_format: str = "auto", known: Container[str] | None = None,
                known_from: str = "the test set") -> tuple[SpeakerVerificationTrials, str]:
    """(trials, format) of a Kaldi or VoxCeleb list; ``trials_format`` ``auto`` detects it.

    With ``known``, an utterance (or VoxCeleb path) outside it is an error naming the first one.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: trials file not found")
    if trials_format == "auto":
        trials_format = detect_trials_format(path)
    if trials_format == "voxceleb":
        return read_voxceleb_trials(path, known, known_from), trials_format
    if trials_format != "kaldi":
        raise UserError(f"unknown trials format {trials_format!r}; expected auto, {' or '.join(TRIALS_FORMATS)}")
    trials = read_trials(path)
    if known is not None:
        unknown = [u for u in trials.utts if u not in known]
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise UserError(f"{path}: utterance {unknown[0]}{more} is not in {known_from}")
    return trials, trials_format


def select_trials(trials: SpeakerVerificationTrials,
                  keep: Container[str]) -> tuple[SpeakerVerificationTrials, list[str]]:
    """The trials whose two utterances are both in ``keep``, and the utterances left out (in list order)."""
    dropped = [u for u in trials.utts if u not in keep]
    if not dropped:
        return trials, []
    kept_utt = np.array([u in keep for u in trials.utts], dtype=bool)
    new_index = np.cumsum(kept_utt) - 1
    mask = kept_utt[trials.enroll_idx] & kept_utt[trials.test_idx]
    utts = [u for u, k in zip(trials.utts, kept_utt.tolist()) if k]
    return SpeakerVerificationTrials(utts, new_index[trials.enroll_idx[mask]], new_index[trials.test_idx[mask]],
                                     trials.target[mask]), dropped
