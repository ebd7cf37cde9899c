"""Check a Kaldi data dir against the contract every stage relies on.

Reports every problem found, one per line with file:line where there is one, instead of
stopping at the first: sorting under ``LC_ALL=C``, duplicate keys, malformed lines,
utt2spk/spk2utt agreement, speaker-prefixed utterance ids, matching key sets (``units`` may
leave utterances out, but names no unknown one and no line without units), segments
pointing at known recordings, audio files that exist.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cdsvae.data.datadir import TABLE_FILES, UTT_TABLES, c_sort_key, iter_table_lines
from cdsvae.io import UserError

REQUIRED_FILES = ("wav.scp", "utt2spk", "spk2utt")
# Keyed by utterance id but covering only some utterances (``units``: those with a transcript).
PARTIAL_UTT_TABLES = ("units",)
MAX_REPORTED_PER_CHECK = 20
_ARK_OFFSET = re.compile(r"^(.+):\d+$")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    check: str = ""  # the kind of problem, e.g. "audio" for a missing audio file

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


@dataclass
class _Table:
    """The well-formed entries of one file: key -> (line number, value)."""

    path: Path
    entries: dict[str, tuple[int, str]]


class _Report:
    """Collects problems, at most MAX_REPORTED_PER_CHECK per (file, check)."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, path: Path, line: int | None, check: str, message: str) -> None:
        key = (str(path), check)
        n = self._counts.get(key, 0) + 1
        self._counts[key] = n
        if n <= MAX_REPORTED_PER_CHECK:
            self.problems.append(Problem(str(path), line, message, check))

    def finish(self) -> list[Problem]:
        for (path, check), n in self._counts.items():
            if n > MAX_REPORTED_PER_CHECK:
                extra = n - MAX_REPORTED_PER_CHECK
                self.problems.append(Problem(path, None, f"... and {extra} more problems of this kind ({check})",
                                             check))
        return self.problems


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_value(name: str, value: str) -> str | None:
    """Why ``value`` is malformed for file ``name``, or None when it is fine."""
    fields = value.split()
    if name == "utt2spk" and len(fields) != 1:
        return f"expected one speaker id, got '{value}'"
    if name == "wav.scp" and not value.rstrip().endswith("|") and len(fields) != 1:
        return f"expected a file path or a command ending in '|', got '{value}'"
    if name == "feats.scp" and len(fields) != 1:
        return f"expected one rxfilename (ark:offset), got '{value}'"
    if name == "units" and value != " ".join(fields):
        return f"expected units separated by single spaces, got '{value}'"
    if name in ("utt2dur", "reco2dur"):
        if len(fields) != 1 or not _is_float(fields[0]) or not float(fields[0]) > 0:
            return f"expected a positive duration in seconds, got '{value}'"
    if name == "utt2num_frames":
        if len(fields) != 1 or not fields[0].isdigit() or int(fields[0]) <= 0:
            return f"expected a positive number of frames, got '{value}'"
    if name == "segments":
        if len(fields) != 3 or not _is_float(fields[1]) or not _is_float(fields[2]):
            return f"expected '<recording-id> <start> <end>', got '{value}'"
        start, end = float(fields[1]), float(fields[2])
        if start < 0 or not (end > start or end == -1):
            return f"bad segment times: start {fields[1]}, end {fields[2]} (need 0 <= start < end, or end -1)"
    return None


def _read_table(path: Path, report: _Report) -> _Table:
    """Parse one file, reporting malformed lines, unsorted keys and duplicates."""
    name = path.name
    entries: dict[str, tuple[int, str]] = {}
    previous: str | None = None
    unsorted_reported = False
    problems: list[tuple[int, str]] = []

    def report_problems() -> None:  # the lines iter_table_lines skipped, in line order
        for lineno, message in problems:
            report.add(path, lineno, "malformed", message)
        problems.clear()

    for lineno, key, value in iter_table_lines(path, problems):
        report_problems()
        value = value or ""
        if not value.strip() and name != "text":
            report.add(path, lineno, "malformed", f"'{key}' has no {'units' if name == 'units' else 'value'}")
            continue
        why = _check_value(name, value)
        if why is not None:
            report.add(path, lineno, "malformed", why)
        if key in entries:
            report.add(path, lineno, "duplicate", f"duplicate key '{key}' (first at line {entries[key][0]})")
            continue
        if previous is not None and c_sort_key(key) < c_sort_key(previous) and not unsorted_reported:
            report.add(path, lineno, "unsorted",
                       f"not sorted under LC_ALL=C: '{key}' comes after '{previous}' (sort with LC_ALL=C sort)")
            unsorted_reported = True
        previous = key
        if why is None:
            entries[key] = (lineno, value)
    report_problems()
    if path.stat().st_size == 0:
        report.add(path, None, "empty", "empty file")
    return _Table(path, entries)


def _compare_keys(reference: _Table, other: _Table, report: _Report, what: str = "utterance") -> None:
    """Report keys of ``reference`` missing from ``other`` and keys of ``other`` not in ``reference``."""
    for key, (lineno, _) in reference.entries.items():
        if key not in other.entries:
            report.add(other.path, None, f"missing {what}",
                       f"{what} '{key}' ({reference.path.name} line {lineno}) has no entry")
    for key, (lineno, _) in other.entries.items():
        if key not in reference.entries:
            report.add(other.path, lineno, f"extra {what}", f"{what} '{key}' is not in {reference.path.name}")


def _check_subset(reference: _Table, other: _Table, report: _Report, what: str = "utterance") -> None:
    """Report keys of ``other`` not in ``reference`` (``other`` may leave some of them out)."""
    for key, (lineno, _) in other.entries.items():
        if key not in reference.entries:
            report.add(other.path, lineno, f"extra {what}", f"{what} '{key}' is not in {reference.path.name}")


def _check_speakers(utt2spk: _Table, spk2utt: _Table, report: _Report) -> None:
    listed: dict[str, tuple[str, int]] = {}
    for spk, (lineno, value) in spk2utt.entries.items():
        utts = value.split()
        if utts != sorted(utts, key=c_sort_key):
            report.add(spk2utt.path, lineno, "order", f"utterances of speaker '{spk}' are not sorted under LC_ALL=C")
        for utt in utts:
            if utt in listed:
                report.add(spk2utt.path, lineno, "duplicate utterance",
                           f"utterance '{utt}' is listed again (first under '{listed[utt][0]}', line {listed[utt][1]})")
                continue
            listed[utt] = (spk, lineno)
            if utt not in utt2spk.entries:
                report.add(spk2utt.path, lineno, "disagreement",
                           f"utterance '{utt}' of speaker '{spk}' is not in utt2spk")
            elif utt2spk.entries[utt][1] != spk:
                report.add(spk2utt.path, lineno, "disagreement",
                           f"utterance '{utt}' is listed under '{spk}' but utt2spk line "
                           f"{utt2spk.entries[utt][0]} says '{utt2spk.entries[utt][1]}'")
    for utt, (lineno, spk) in utt2spk.entries.items():
        if utt in listed:
            continue
        if spk not in spk2utt.entries:
            message = f"speaker '{spk}' of utterance '{utt}' is not in spk2utt"
        else:
            message = f"utterance '{utt}' is missing from the spk2utt line of speaker '{spk}'"
        report.add(utt2spk.path, lineno, "disagreement", message)


def _check_prefixes(utt2spk: _Table, report: _Report) -> None:
    prefixed = True
    for utt, (lineno, spk) in utt2spk.entries.items():
        if not utt.startswith(spk):
            report.add(utt2spk.path, lineno, "prefix", f"utterance id '{utt}' does not start with its speaker id '{spk}'")
            prefixed = False
    if not prefixed:
        return
    # Sorted by utterance must also mean sorted by speaker (Kaldi's rule), which prefixes
    # alone do not ensure: 's1-a' < 's10-a' < 's1_b'.
    ordered = sorted(utt2spk.entries.items(), key=lambda kv: c_sort_key(kv[0]))
    for (prev_utt, (_, prev_spk)), (utt, (lineno, spk)) in zip(ordered, ordered[1:]):
        if c_sort_key(spk) < c_sort_key(prev_spk):
            report.add(utt2spk.path, lineno, "speaker order",
                       f"speaker ids are not in order when utterances are: '{utt}' ('{spk}') "
                       f"follows '{prev_utt}' ('{prev_spk}')")
            break


def _audio_exists(path: str) -> bool:
    if os.path.isfile(path):
        return True
    match = _ARK_OFFSET.match(path)
    return bool(match) and os.path.isfile(match.group(1))


def _check_audio(wav_scp: _Table, report: _Report) -> None:
    for key, (lineno, value) in wav_scp.entries.items():
        value = value.strip()
        if value.endswith("|"):
            continue
        if not _audio_exists(value):
            report.add(wav_scp.path, lineno, "audio", f"audio file of '{key}' not found: {value}")


def validate_data_dir(data_dir: str | os.PathLike, check_audio: bool = True) -> list[Problem]:
    """All problems of ``data_dir`` (empty list: valid).

    Relative audio paths in wav.scp are resolved against the current directory, as the
    recipes run from the recipe directory.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: not a directory")
    report = _Report()
    for name in REQUIRED_FILES:
        if not (data_dir / name).is_file():
            report.add(data_dir / name, None, "missing", "required file is missing")
    tables: dict[str, _Table] = {}
    for name in TABLE_FILES:
        if (data_dir / name).is_file():
            tables[name] = _read_table(data_dir / name, report)

    utt2spk = tables.get("utt2spk")
    if utt2spk is not None:
        _check_prefixes(utt2spk, report)
        if "spk2utt" in tables:
            _check_speakers(utt2spk, tables["spk2utt"], report)
        segments = tables.get("segments")
        for name in UTT_TABLES:
            if name in PARTIAL_UTT_TABLES and name in tables:
                _check_subset(utt2spk, tables[name], report)
            elif name != "utt2spk" and name in tables:
                _compare_keys(utt2spk, tables[name], report)
        if segments is None and "wav.scp" in tables:
            _compare_keys(utt2spk, tables["wav.scp"], report)
        if "spk2gender" in tables and "spk2utt" in tables:
            _compare_keys(tables["spk2utt"], tables["spk2gender"], report, what="speaker")
    if "segments" in tables and "wav.scp" in tables:
        recordings = tables["wav.scp"].entries
        for utt, (lineno, value) in tables["segments"].entries.items():
            reco = value.split()[0]
            if reco not in recordings:
                report.add(tables["segments"].path, lineno, "recording",
                           f"segment '{utt}' refers to unknown recording '{reco}' (not in wav.scp)")
    if check_audio and "wav.scp" in tables:
        _check_audio(tables["wav.scp"], report)
    return report.finish()
