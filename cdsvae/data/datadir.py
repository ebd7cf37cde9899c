"""Kaldi data directories: read, write, split and merge ``key rest-of-line`` tables.

A data dir holds one table per file (``wav.scp``, ``utt2spk``, ``text``, ...), one entry
per line: a key, whitespace, and the rest of the line as the value (a path, a pipe
command, a speaker id, a full transcript); ``units`` (space-separated content units) may
cover only the utterances that have a transcript.  Files are written sorted by key in
``LC_ALL=C`` byte order, atomically, so reading and writing a valid dir gives the same
bytes back.  Every reader of such a table in the package goes through ``iter_table_lines``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from cdsvae.io import UserError, atomic_open

logger = logging.getLogger(__name__)

UTT_TABLES = ("utt2spk", "text", "utt2dur", "segments", "utt2num_frames", "feats.scp", "units")  # keyed by utt id
SPK_TABLES = ("spk2gender",)  # keyed by speaker id (spk2utt is derived from utt2spk)
RECO_TABLES = ("reco2dur",)  # keyed by recording id (wav.scp too when segments is present)

TABLE_FILES = ("wav.scp", "spk2utt") + UTT_TABLES + SPK_TABLES + RECO_TABLES

_WHITESPACE = re.compile(r"[ \t]+")


def c_sort_key(key: str) -> bytes:
    """The byte order of ``LC_ALL=C sort`` (UTF-8 bytes compare like code points)."""
    return key.encode("utf-8")


def sorted_c(keys: Iterable[str]) -> list[str]:
    return sorted(keys, key=c_sort_key)


def iter_table_lines(path: str | os.PathLike, problems: list | None = None) -> Iterator[tuple[int, str, str | None]]:
    """Yield ``(line_number, key, value)``: the one parser of table lines; ``value`` is None for a lone key.

    A blank line, a line starting with whitespace or text that is not UTF-8 is a UserError naming
    the file and line; with a ``problems`` list, ``(line_number, message)`` goes there instead.
    """
    path = Path(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
                problem = ("empty line" if not line.strip() else
                           "line starts with whitespace" if line[0] in " \t" else None)
            except UnicodeDecodeError:
                problem = "not valid UTF-8"
            if problem is not None:
                if problems is None:
                    raise UserError(f"{path}:{lineno}: {problem}")
                problems.append((lineno, problem))
                continue
            parts = _WHITESPACE.split(line, maxsplit=1)
            yield lineno, parts[0], parts[1] if len(parts) > 1 and parts[1].strip() else None


def read_scp(path: str | os.PathLike, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a ``key rest-of-line`` table (wav.scp, utt2spk, text, utt2dur, feats.scp...).

    The value keeps everything after the whitespace that follows the key (a transcript's
    inner spaces included).  Duplicate keys and keys without a value (unless
    ``allow_empty_value``, e.g. for an empty transcript) are errors naming file:line.
    """
    table: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, key, value in iter_table_lines(path):
        if value is None:
            if not allow_empty_value:
                raise UserError(f"{path}:{lineno}: key '{key}' has no value")
            value = ""
        if key in table:
            raise UserError(f"{path}:{lineno}: duplicate key '{key}' (first at line {first_line[key]})")
        table[key] = value
        first_line[key] = lineno
    return table


def read_utt2spk(path: str | os.PathLike) -> dict[str, str]:
    """The ``utt2spk`` table of a data dir (or an embeddings dir); a missing file is a UserError."""
    if not Path(path).is_file():
        raise UserError(f"{path}: utt2spk not found")
    return read_scp(path)


def write_scp(path: str | os.PathLike, table: Mapping[str, str]) -> None:
    """Write a table sorted by key in C byte order, atomically."""
    lines = []
    for key in sorted_c(table):
        _check_key(path, key)
        value = str(table[key])
        if "\n" in value:
            raise UserError(f"{path}: value of '{key}' contains a newline")
        lines.append(f"{key} {value}\n" if value else f"{key}\n")
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)


def read_spk2utt(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read ``spk utt1 utt2 ...`` lines; the utterance order of each line is kept."""
    return {spk: value.split() for spk, value in read_scp(path).items()}


def write_spk2utt(path: str | os.PathLike, spk2utt: Mapping[str, Sequence[str]]) -> None:
    for spk, utts in spk2utt.items():
        if not utts:
            raise UserError(f"{path}: speaker '{spk}' has no utterances")
    write_scp(path, {spk: " ".join(utts) for spk, utts in spk2utt.items()})


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Group utterances by speaker; both speakers and their utterances in C order."""
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted_c(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return {spk: spk2utt[spk] for spk in sorted_c(spk2utt)}


def spk2utt_to_utt2spk(spk2utt: Mapping[str, Sequence[str]]) -> dict[str, str]:
    utt2spk: dict[str, str] = {}
    for spk, utts in spk2utt.items():
        for utt in utts:
            if utt in utt2spk and utt2spk[utt] != spk:
                raise UserError(f"utterance '{utt}' belongs to two speakers: '{utt2spk[utt]}' and '{spk}'")
            utt2spk[utt] = spk
    return {utt: utt2spk[utt] for utt in sorted_c(utt2spk)}


def _check_key(path: str | os.PathLike, key: str) -> None:
    if not key or _WHITESPACE.search(key) or "\n" in key:
        raise UserError(f"{path}: invalid key {key!r}: keys must be non-empty and contain no whitespace")


class DataDir:
    """The tables of one Kaldi data dir, as ``{file name: {key: value}}``.

    Values stay strings exactly as read, so saving a loaded dir rewrites the same bytes.
    ``spk2utt`` is kept as ``{speaker: [utterances]}`` and derived from ``utt2spk`` when
    the file is absent.
    """

    def __init__(self, tables: Mapping[str, Mapping[str, str]] | None = None,
                 spk2utt: Mapping[str, Sequence[str]] | None = None, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self.tables: dict[str, dict[str, str]] = {name: dict(t) for name, t in (tables or {}).items()}
        unknown = set(self.tables) - (set(TABLE_FILES) - {"spk2utt"})
        if unknown:
            raise UserError(f"unknown data-dir tables {sorted(unknown)} (spk2utt is passed separately); "
                            f"known: {', '.join(TABLE_FILES)}")
        self._spk2utt = {spk: list(utts) for spk, utts in spk2utt.items()} if spk2utt is not None else None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DataDir":
        """Load every known table present in ``path``."""
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: not a data directory")
        tables = {}
        for name in TABLE_FILES:
            if name == "spk2utt" or not (path / name).is_file():
                continue
            tables[name] = read_scp(path / name, allow_empty_value=(name == "text"))
        spk2utt = read_spk2utt(path / "spk2utt") if (path / "spk2utt").is_file() else None
        return cls(tables, spk2utt, path=path)

    def save(self, path: str | os.PathLike) -> None:
        """Write every table (and spk2utt) into ``path``, each file atomically."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, table in self.tables.items():
            write_scp(path / name, table)
        if self.spk2utt is not None:
            write_spk2utt(path / "spk2utt", self.spk2utt)

    def __contains__(self, name: str) -> bool:
        if name == "spk2utt":
            return self.spk2utt is not None
        return name in self.tables

    def get(self, name: str) -> dict[str, str] | None:
        return self.tables.get(name)

    @property
    def wav_scp(self) -> dict[str, str] | None:
        return self.tables.get("wav.scp")

    @property
    def utt2spk(self) -> dict[str, str] | None:
        return self.tables.get("utt2spk")

    @property
    def text(self) -> dict[str, str] | None:
        return self.tables.get("text")

    @property
    def segments(self) -> dict[str, str] | None:
        return self.tables.get("segments")

    @property
    def feats_scp(self) -> dict[str, str] | None:
        return self.tables.get("feats.scp")

    @property
    def spk2utt(self) -> dict[str, list[str]] | None:
        if self._spk2utt is not None:
            return self._spk2utt
        if "utt2spk" in self.tables:
            return utt2spk_to_spk2utt(self.tables["utt2spk"])
        return None

    @property
    def utt2dur(self) -> dict[str, float] | None:
        return self._numeric("utt2dur", float)

    @property
    def utt2num_frames(self) -> dict[str, int] | None:
        return self._numeric("utt2num_frames", int)

    def _numeric(self, name: str, kind: type) -> dict | None:
        table = self.tables.get(name)
        if table is None:
            return None
        out = {}
        for key, value in table.items():
            try:
                out[key] = kind(value)
            except ValueError:
                raise UserError(f"{self._where(name)}: '{key}': expected a {kind.__name__}, got '{value}'") from None
        return out

    def _where(self, name: str) -> str:
        return str(self.path / name) if self.path is not None else name

    @property
    def utterances(self) -> list[str]:
        """Utterance ids in C order (from utt2spk, else from any utterance table)."""
        for name in ("utt2spk",) + UTT_TABLES + (() if "segments" in self.tables else ("wav.scp",)):
            if name in self.tables:
                return sorted_c(self.tables[name])
        return []

    @property
    def speakers(self) -> list[str]:
        return sorted_c(self.spk2utt or ())

    def subset(self, utterances: Iterable[str]) -> "DataDir":
        """The dir restricted to ``utterances``, with speaker and recording tables to match.

        spk2utt of the subset is derived from its utt2spk.
        """
        keep = set(utterances)
        tables: dict[str, dict[str, str]] = {}
        for name in UTT_TABLES:
            if name in self.tables:
                tables[name] = {k: v for k, v in self.tables[name].items() if k in keep}
        speakers = set(tables["utt2spk"].values()) if "utt2spk" in tables else None
        for name in SPK_TABLES:
            if name in self.tables:
                tables[name] = {k: v for k, v in self.tables[name].items() if speakers is None or k in speakers}
        if "segments" in tables:
            recordings = {value.split()[0] for value in tables["segments"].values()}
            for name in ("wav.scp",) + RECO_TABLES:
                if name in self.tables:
                    tables[name] = {k: v for k, v in self.tables[name].items() if k in recordings}
        else:
            if "wav.scp" in self.tables:
                tables["wav.scp"] = {k: v for k, v in self.tables["wav.scp"].items() if k in keep}
            for name in RECO_TABLES:
                if name in self.tables:
                    tables[name] = {k: v for k, v in self.tables[name].items() if k in keep}
        spk2utt = utt2spk_to_spk2utt(tables["utt2spk"]) if "utt2spk" in tables else None
        return DataDir(tables, spk2utt)


def _contiguous_split(weights: Sequence[int], n: int) -> list[tuple[int, int]]:
    """Cut ``weights`` into ``n`` non-empty contiguous runs with sums as equal as possible.

    Each boundary is placed where the running sum is closest to its ideal share, which
    keeps every part's utterances a contiguous, sorted block (so merging is concatenation).
    """
    total = sum(weights)
    cumulative = [0]
    for w in weights:
        cumulative.append(cumulative[-1] + w)
    bounds = [0]
    for k in range(1, n):
        ideal = total * k / n
        lo = bounds[-1] + 1
        hi = len(weights) - (n - k)
        best = min(range(lo, hi + 1), key=lambda i: (abs(cumulative[i] - ideal), i))
        bounds.append(best)
    bounds.append(len(weights))
    return [(bounds[k], bounds[k + 1]) for k in range(n)]


def split_data_dir(data_dir: str | os.PathLike, n: int, out_root: str | os.PathLike | None = None,
                   by: str = "speaker") -> list[Path]:
    """Split a data dir into ``n`` parts, like Kaldi's ``utils/split_data.sh``.

    ``by="speaker"`` keeps each speaker's utterances together (parts of balanced
    utterance counts) and writes ``out_root/split{n}/{1..n}``; ``by="utterance"`` writes
    ``out_root/split{n}utt/{1..n}``.  ``out_root`` defaults to the data dir itself.
    Returns the part directories.
    """
    if by not in ("speaker", "utterance"):
        raise UserError(f"split_data_dir: by must be 'speaker' or 'utterance', got '{by}'")
    if n < 1:
        raise UserError(f"split_data_dir: number of parts must be >= 1, got {n}")
    data = DataDir.load(data_dir)
    if data.utt2spk is None:
        raise UserError(f"{Path(data_dir) / 'utt2spk'}: missing; cannot split {data_dir}")
    if by == "speaker":
        spk2utt = utt2spk_to_spk2utt(data.utt2spk)
        speakers = list(spk2utt)
        if n > len(speakers):
            raise UserError(f"{data_dir}: cannot split {len(speakers)} speakers into {n} parts")
        runs = _contiguous_split([len(spk2utt[s]) for s in speakers], n)
        groups = [[u for s in speakers[a:b] for u in spk2utt[s]] for a, b in runs]
        split_dir = Path(out_root if out_root is not None else data_dir) / f"split{n}"
    else:
        utts = data.utterances
        if n > len(utts):
            raise UserError(f"{data_dir}: cannot split {len(utts)} utterances into {n} parts")
        runs = _contiguous_split([1] * len(utts), n)
        groups = [utts[a:b] for a, b in runs]
        split_dir = Path(out_root if out_root is not None else data_dir) / f"split{n}utt"
    parts = []
    for k, group in enumerate(groups, 1):
        part = split_dir / str(k)
        data.subset(group).save(part)
        parts.append(part)
    return parts


def merge_data_dirs(data_dirs: Sequence[str | os.PathLike], out: str | os.PathLike) -> DataDir:
    """Combine data dirs into ``out`` (Kaldi's ``utils/combine_data.sh``).

    A table is written only if every input has it (others are skipped with a warning);
    a key present in several inputs must have the same value everywhere.
    spk2utt is derived from the merged utt2spk.
    """
    if not data_dirs:
        raise UserError("merge_data_dirs: no input directories")
    loaded = [DataDir.load(d) for d in data_dirs]
    merged: dict[str, dict[str, str]] = {}
    for name in TABLE_FILES:
        if name == "spk2utt":
            continue
        have = [d for d in loaded if name in d.tables]
        if not have:
            continue
        if len(have) < len(loaded):
            missing = [str(d.path) for d in loaded if name not in d.tables]
            logger.warning("merge_data_dirs: skipping %s, missing in %s", name, ", ".join(missing))
            continue
        table: dict[str, str] = {}
        origin: dict[str, Path] = {}
        for d in have:
            for key, value in d.tables[name].items():
                if key in table and table[key] != value:
                    raise UserError(f"{d.path / name}: key '{key}' differs from {origin[key] / name}: "
                                    f"'{value}' vs '{table[key]}'")
                table[key] = value
                origin[key] = d.path
        merged[name] = table
    spk2utt = utt2spk_to_spk2utt(merged["utt2spk"]) if "utt2spk" in merged else None
    result = DataDir(merged, spk2utt, path=out)
    result.save(out)
    return result


def save_if_changed(data: DataDir, out_dir: str | os.PathLike) -> bool:
    """Write ``data`` unless ``out_dir`` already holds exactly these tables.

    Unchanged files keep their timestamps, so a rerun does not look like new input to later
    stages. On a change, other data-dir tables left there by an earlier run are removed, as
    they no longer match.
    """
    out_dir = Path(out_dir)
    if out_dir.is_dir():
        try:
            old = DataDir.load(out_dir)
            if all(old.get(n) == t for n, t in data.tables.items()) and old.spk2utt == data.spk2utt:
                return False
        except UserError:
            pass
        for name in TABLE_FILES:
            if name != "spk2utt" and name not in data.tables and (out_dir / name).is_file():
                (out_dir / name).unlink()
    data.save(out_dir)
    return True
