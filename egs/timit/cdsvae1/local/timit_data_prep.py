#!/usr/bin/env python3
"""TIMIT -> Kaldi data dirs ``train``, ``dev`` and ``test``.

Layout read: ``ROOT/{TRAIN,TEST}/DR1..DR8/<SPK>/<UTT>.{WAV,TXT,PHN,WRD}``, 16 kHz audio. Every
path component is matched case-insensitively, so upper-case, lower-case and mixed trees all
work. The copies people have differ in three ways, and all prepare to the same data dirs:

* the LDC's own tree, ``.WAV`` files in NIST SPHERE;
* a widely shared copy with a RIFF/WAVE ``<UTT>.WAV.wav`` beside every SPHERE ``<UTT>.WAV``:
  the ``.WAV`` is used and its twin ignored; a twin is used only where its ``.WAV`` is missing;
* copies with RIFF/WAVE content under the ``.WAV`` name.

The audio format is read from each file's header, never from its name. ROOT is the directory
holding TRAIN/ and TEST/. Pointed one level higher (at the LDC disc's top, or at a copy that
keeps the tree under ``data/``), the prep uses the one sub-directory that holds the tree and
says so; two such sub-directories, or a root below TRAIN/TEST, stop it with an error naming
the directory to set in db.sh.

The sets follow the usual TIMIT recipe: ``train`` is every speaker under TRAIN (462 in the
full corpus), ``dev`` and ``test`` are the speakers under TEST that appear in the 50-speaker
dev list and the 24-speaker core-test list. SA sentences (read by every speaker) are left out
unless ``--include_sa true``, because their shared text lets a system identify speakers from
content.

Each data dir gets wav.scp (plain paths, read by ``cdsvae.audio.read_audio`` downstream;
files in the shorten-compressed SPHERE variant become ``sph2pipe -f wav PATH |`` pipes), text,
utt2spk, spk2utt, utt2dur (sample count / sample rate of the file's header) and ``phones``:
one line ``<utt> <start_s> <end_s> <phone>`` per .PHN segment, in seconds, for analysis, and
``units``: ``<utt> <phone1> <phone2> ...``, the utterance's phones in order (the 61 TIMIT
phones as the .PHN files name them, h#, pau and epi included; folding to 39 happens at
scoring, with local/phones.61-39.map), the targets of the CTC content judge.
An utterance without a .PHN may have an untimed transcript ``<UTT>.PHONES`` instead: one line
of phones separated by spaces; it gives the utterance's ``units`` but no ``phones`` lines.
Where both exist the .PHN is used. An utterance with neither is left out of ``units``.
Utterance ids are ``<spk>_<utt>`` with the lower-cased speaker folder name as speaker id
(``fadg0_si1279``), so every id starts with its speaker id.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cdsvae.audio import audio_file_info, read_sphere_header, sniff_audio_format
from cdsvae.bin import str2bool
from cdsvae.data import datadir
from cdsvae.io import UserError, atomic_write_text

ROOT_EXPECTED = "expected TRAIN/ and TEST/ (or train/ test/) with DR1..DR8 speaker folders"
UTT_RE = re.compile(r"^(sa|si|sx)\d+$")
DR_RE = re.compile(r"^dr[1-8]$")
SETS = ("train", "dev", "test")


@dataclass
class Utterance:
    spk: str
    name: str
    wav: Path
    txt: Path | None
    phn: Path | None
    phones_txt: Path | None = None
    text: str = ""
    wav_entry: str = ""
    num_samples: int = 0
    sample_rate: int = 0
    phones: list[tuple[int, int, str]] = field(default_factory=list)
    units: list[str] = field(default_factory=list)

    @property
    def utt_id(self) -> str:
        return f"{self.spk}_{self.name}"



def child_dirs(parent: Path) -> dict[str, Path]:
    """Sub-directories of ``parent`` keyed by lower-cased name; two names equal but for case are an error."""
    found: dict[str, Path] = {}
    for entry in sorted(os.scandir(parent), key=lambda e: e.name):
        if not entry.is_dir():
            continue
        key = entry.name.lower()
        if key in found:
            raise UserError(f"{parent}: both {found[key].name}/ and {entry.name}/ exist "
                            "(names must differ by more than case)")
        found[key] = Path(entry.path)
    return found


def tree_parts(path: Path) -> dict[str, Path] | None:
    """The TRAIN and TEST folders of ``path`` when both hold DR folders, else None."""
    top = child_dirs(path)
    parts = {name: top.get(name) for name in ("train", "test")}
    if all(sub is not None and any(DR_RE.match(k) for k in child_dirs(sub)) for sub in parts.values()):
        return parts
    return None


def check_root(root: str) -> tuple[Path, dict[str, Path]]:
    """The directory holding the corpus and its TRAIN and TEST folders, or a one-line error saying what to set.

    ``root`` itself, or else its one sub-directory that holds TRAIN/ and TEST/ (the LDC disc
    keeps the tree under ``TIMIT/``, some copies under ``data/``).
    """
    if not root:
        raise UserError(f"TIMIT is not set: set it in db.sh to the TIMIT root ({ROOT_EXPECTED})")
    path = Path(root)
    if not path.is_dir():
        raise UserError(f"TIMIT={root}: no such directory; {ROOT_EXPECTED}")
    parts = tree_parts(path)
    if parts is not None:
        return path, parts
    if any(DR_RE.match(k) for k in child_dirs(path)):
        raise UserError(f"TIMIT={root} is one part of the corpus (it holds the DR folders): "
                        f"set TIMIT in db.sh to {path.parent}, the directory holding TRAIN/ and TEST/")
    found = [(sub, p) for sub in child_dirs(path).values() if (p := tree_parts(sub)) is not None]
    if len(found) > 1:
        raise UserError(f"TIMIT={root}: {len(found)} directories below it hold TRAIN/ and TEST/: "
                        f"{' and '.join(str(sub) for sub, _ in found)}; set TIMIT in db.sh to the one to use")
    if not found:
        raise UserError(f"TIMIT={root}: {ROOT_EXPECTED}")
    return found[0]


def read_text(path: Path) -> str:
    """The words of a TIMIT .TXT file (``<begin> <end> <text>``)."""
    content = path.read_text(encoding="ascii", errors="replace").strip()
    parts = content.split(None, 2)
    if len(parts) < 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        raise UserError(f"{path}: expected '<begin_sample> <end_sample> <text>' on its first line")
    return " ".join(parts[2].split())


def read_phn(path: Path) -> list[tuple[int, int, str]]:
    """Segments ``(start_sample, end_sample, phone)`` of a TIMIT .PHN file."""
    segments = []
    for lineno, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()) or int(parts[1]) < int(parts[0]):
            raise UserError(f"{path}:{lineno}: expected '<start_sample> <end_sample> <phone>', got {line.strip()!r}")
        segments.append((int(parts[0]), int(parts[1]), parts[2]))
    return segments


def read_phones(path: Path) -> list[str]:
    """The phones of an untimed ``<UTT>.PHONES`` transcript: one line, phones separated by spaces."""
    lines = [line for line in path.read_text(encoding="ascii", errors="replace").splitlines() if line.strip()]
    if len(lines) != 1:
        raise UserError(f"{path}: expected one line of phones separated by spaces, got {len(lines)} lines")
    return lines[0].split()


def scan_speaker(spk_dir: Path, spk: str) -> tuple[list[Utterance], int]:
    """Group a speaker folder's files by lower-cased utterance name (SA1, SI1279, SX19...).

    Returns the utterances and how many ``<UTT>.WAV.wav`` twins were left unused because the
    ``<UTT>.WAV`` beside them is read instead; a twin without its ``.WAV`` is the utterance's audio.
    """
    by_name: dict[str, dict[str, Path]] = {}
    for entry in sorted(os.scandir(spk_dir), key=lambda e: e.name):
        if not entry.is_file():
            continue
        stem, dot, ext = entry.name.lower().rpartition(".")
        if dot and ext == "wav" and stem.endswith(".wav"):
            stem, ext = stem[:-4], "wav.wav"
        if not dot or ext not in ("wav", "wav.wav", "txt", "phn", "phones", "wrd") or not UTT_RE.match(stem):
            continue
        files = by_name.setdefault(stem, {})
        if ext in files:
            raise UserError(f"{spk_dir}: both {files[ext].name} and {entry.name} exist "
                            "(names must differ by more than case)")
        files[ext] = Path(entry.path)
    utts = []
    unused_twins = 0
    for name, files in sorted(by_name.items()):
        wav = files.get("wav", files.get("wav.wav"))
        if wav is not None:
            utts.append(Utterance(spk, name, wav, files.get("txt"), files.get("phn"), files.get("phones")))
            unused_twins += "wav" in files and "wav.wav" in files
    return utts, unused_twins


def load_list(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").split()
    except OSError as e:
        raise UserError(f"{path}: cannot read speaker list: {e.strerror}") from None
    return [s.lower() for s in lines]


def fill(utt: Utterance, sample_rate: int) -> None:
    """Read header, transcript and phones of one utterance; raise UserError naming the bad file."""
    if any(c.isspace() for c in str(utt.wav.absolute())):
        raise UserError(f"{utt.wav}: path contains whitespace, which wav.scp cannot hold")
    try:
        with open(utt.wav, "rb") as f:
            fmt = sniff_audio_format(f.read(16))
    except OSError as e:
        raise UserError(f"{utt.wav}: cannot read: {e.strerror}") from None
    utt.wav_entry = str(utt.wav.absolute())
    if fmt == "sphere":
        header = read_sphere_header(utt.wav)
        utt.sample_rate, utt.num_samples = int(header["sample_rate"]), int(header["sample_count"])
        if "shorten" in str(header.get("sample_coding", "")):
            if shutil.which("sph2pipe") is None:
                raise UserError(f"{utt.wav}: shorten-compressed SPHERE needs sph2pipe on PATH (from Kaldi's tools), "
                                "or decompress the corpus first")
            utt.wav_entry = f"sph2pipe -f wav {utt.wav_entry} |"
    else:
        info = audio_file_info(utt.wav)
        if info.channels != 1:
            raise UserError(f"{utt.wav}: {info.channels} channels, expected mono")
        utt.sample_rate, utt.num_samples = info.sample_rate, info.num_samples
    if utt.sample_rate != sample_rate:
        raise UserError(f"{utt.wav}: sample rate {utt.sample_rate} Hz, expected {sample_rate} Hz")
    if utt.num_samples == 0:
        raise UserError(f"{utt.wav}: no samples")
    if utt.txt is None:
        raise UserError(f"{utt.wav}: no transcript ({utt.name.upper()}.TXT or {utt.name}.txt) next to it")
    utt.text = read_text(utt.txt)
    if utt.phn is not None:
        utt.phones = read_phn(utt.phn)
        utt.units = [p for _, _, p in utt.phones]
    elif utt.phones_txt is not None:
        utt.units = read_phones(utt.phones_txt)


def fmt_seconds(samples: int, rate: int) -> str:
    """Seconds with enough digits to be exact at 16 kHz, without trailing zeros."""
    return f"{samples / rate:.7f}".rstrip("0").rstrip(".") or "0"




def write_set(out_dir: Path, utts: list[Utterance]) -> None:
    utts = sorted(utts, key=lambda u: u.utt_id.encode())
    datadir.save_if_changed(datadir.DataDir({
        "wav.scp": {u.utt_id: u.wav_entry for u in utts},
        "utt2spk": {u.utt_id: u.spk for u in utts},
        "text": {u.utt_id: u.text for u in utts},
        "utt2dur": {u.utt_id: fmt_seconds(u.num_samples, u.sample_rate) for u in utts},
    }), out_dir)
    write_if_changed(out_dir / "units", "".join(f"{u.utt_id} {' '.join(u.units)}\n" for u in utts if u.units))
    phones = out_dir / "phones"
    lines = [
        f"{u.utt_id} {fmt_seconds(s, u.sample_rate)} {fmt_seconds(e, u.sample_rate)} {p}\n"
        for u in utts
        for s, e, p in u.phones
    ]
    write_if_changed(phones, "".join(lines))


def write_if_changed(path: Path, content: str) -> None:
    """Write ``content`` atomically unless ``path`` already holds it; no content removes the file."""
    if content:
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            atomic_write_text(path, content)
    elif path.exists():
        path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("timit_root", help="TIMIT root holding TRAIN/ and TEST/ (or its parent)")
    parser.add_argument("data_dir", help="output: <data_dir>/{train,dev,test}")
    parser.add_argument("--dev_spk_list", required=True, help="the 50 dev speakers, one id per line")
    parser.add_argument("--test_spk_list", required=True, help="the 24 core-test speakers, one id per line")
    parser.add_argument("--include_sa", type=str2bool, default=False, help="keep the SA sentences (default false)")
    parser.add_argument("--sample_rate", type=int, default=16000, help="expected sample rate of every file")
    parser.add_argument("--skip_bad", type=str2bool, default=False,
                        help="skip (and count) unreadable or inconsistent utterances instead of stopping")
    args = parser.parse_args(argv)

    root, parts = check_root(args.timit_root)
    if root != Path(args.timit_root):
        print(f"TIMIT={args.timit_root} holds no TRAIN/ and TEST/; using {root}, the one directory below it "
              f"that does (set TIMIT={root} in db.sh to skip this search)", file=sys.stderr)
    dev_spk, test_spk = set(load_list(args.dev_spk_list)), set(load_list(args.test_spk_list))
    overlap = dev_spk & test_spk
    if overlap:
        raise UserError(f"{args.dev_spk_list} and {args.test_spk_list} share speakers: {' '.join(sorted(overlap))}")

    sets: dict[str, list[Utterance]] = {s: [] for s in SETS}
    seen: dict[str, Path] = {}
    unused_spk = misplaced_spk = unused_twins = 0
    for part, part_dir in parts.items():
        for dr_name, dr_dir in sorted(child_dirs(part_dir).items()):
            if not DR_RE.match(dr_name):
                continue
            for spk, spk_dir in sorted(child_dirs(dr_dir).items()):
                if spk in seen:
                    raise UserError(f"speaker {spk} appears twice: {seen[spk]} and {spk_dir}")
                seen[spk] = spk_dir
                if part == "train":
                    target = "train"
                    misplaced_spk += spk in dev_spk or spk in test_spk
                elif spk in dev_spk:
                    target = "dev"
                elif spk in test_spk:
                    target = "test"
                else:
                    unused_spk += 1
                    continue
                utts, twins = scan_speaker(spk_dir, spk)
                sets[target].extend(utts)
                unused_twins += twins

    n_sa = n_bad = 0
    for name in SETS:
        kept = []
        for utt in sets[name]:
            if utt.name.startswith("sa") and not args.include_sa:
                n_sa += 1
                continue
            try:
                fill(utt, args.sample_rate)
            except UserError as e:
                if not args.skip_bad:
                    raise
                n_bad += 1
                print(f"skipped: {e}", file=sys.stderr)
                continue
            kept.append(utt)
        sets[name] = kept

    for name in SETS:
        utts = sets[name]
        if not utts:
            raise UserError(f"TIMIT={args.timit_root}: no utterances for the {name} set ({ROOT_EXPECTED})")
        write_set(Path(args.data_dir) / name, utts)
        n_spk = len({u.spk for u in utts})
        hours = sum(u.num_samples / u.sample_rate for u in utts) / 3600
        no_phn = sum(u.phn is None for u in utts)
        untimed = sum(u.phn is None and u.phones_txt is not None for u in utts)
        no_units = sum(not u.units for u in utts)
        print(f"{name}: {n_spk} speakers, {len(utts)} utterances, {hours:.2f} h"
              + (f", {no_phn} without .PHN (no phones)" if no_phn else "")
              + (f", {untimed} with units from .PHONES" if untimed else "")
              + (f", {no_units} without units" if no_units else ""), file=sys.stderr)
    print(f"SA utterances {'kept' if args.include_sa else f'excluded: {n_sa}'}; "
          f"TEST speakers in neither list (unused): {unused_spk}"
          + (f"; dev/test-list speakers found under TRAIN (kept in train): {misplaced_spk}" if misplaced_spk else "")
          + (f"; bad utterances skipped: {n_bad}" if n_bad else "")
          + (f"; .WAV.wav copies left unused (the .WAV beside each was read): {unused_twins}" if unused_twins else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    from cdsvae.bin import run_main

    main.__module__ = Path(__file__).stem
    run_main(main)
