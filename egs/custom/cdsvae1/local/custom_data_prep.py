#!/usr/bin/env python3
"""Your own corpus -> Kaldi data dirs ``train``, ``dev`` and ``test``.

Two ways in:
  --audio_dir DIR   ``DIR/<speaker>/**/<name>.<wav|flac|ogg|sph>``: the first folder under DIR
                    names the speaker; ``<name>.txt`` beside an audio file is its transcript.
  --manifest FILE   a tab-separated table with a header naming the columns ``path``, ``speaker``
                    and, optionally, ``text``; a relative path is read from the manifest's folder.

Each file's header is read (never its name: :func:`cdsvae.audio.audio_file_info`); audio at any
rate and with any number of channels is kept, for the feature stage resamples it and mixes it
down (``resample`` and ``channel`` in conf/fbank.yaml). A file that cannot be read, or that is
shorter than ``--min_dur`` seconds, is left out, counted on the console and listed with its
reason in ``<data_dir>/skipped_audio``; nothing is dropped silently. wav.scp holds each file's
absolute path, or, for a path with whitespace (which a wav.scp line cannot hold), a symbolic link
to it named after the utterance, in ``<data_dir>/links/``.

Speaker ids keep the letters, digits and ``_`` of the speaker's name (anything else becomes
``_``); utterance ids are ``<speaker id>-<name>``, the name being the file's name without its
extension, with letters, digits, ``-``, ``.`` and ``_`` kept (so both ways in give a file the
same id). Ids that would clash (two speakers' names, or two files of a speaker in different
folders) get ``_2``, ``_3``, ... in the order of the sorted paths, so the ids are Kaldi-safe,
unique, and prefixed by the speaker id in sort order (``-`` sorts before every other character
of a speaker id).

Splits, reproducible with ``--split_seed``: ``--test_speakers N`` holds out N speakers for test
(unseen speakers, as TIMIT and VoxCeleb test); ``--test_speakers 0`` instead holds out a
``--test_fraction`` of each speaker's utterances (for corpora with very few speakers). ``dev``
takes a ``--dev_fraction`` of each training speaker's utterances. A set with transcripts gets
``text`` (an utterance without one has an empty transcript); a set without any gets neither
``text`` nor ``units``.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from cdsvae.audio import audio_file_info
from cdsvae.data import datadir
from cdsvae.io import UserError, atomic_write_text

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".sph")
SETS = ("train", "dev", "test")
SKIPPED = "skipped_audio"


@dataclass
class Recording:
    path: Path
    speaker: str         # the speaker's name as given (folder or manifest)
    name: str            # the utterance name below the speaker, before it is made an id
    text: str | None     # the transcript, None when there is none


def safe(name: str, keep: str) -> str:
    """``name`` with every character outside letters, digits and ``keep`` replaced by ``_``."""
    return re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]", "_", name)


def read_transcript(path: Path) -> str | None:
    try:
        text = " ".join(path.read_text(encoding="utf-8", errors="replace").split())
    except OSError as e:
        raise UserError(f"{path}: cannot read transcript: {e.strerror}") from None
    return text or None


def scan_audio_dir(root: Path, skipped: list[tuple[str, str]]) -> list[Recording]:
    """The recordings under ``root/<speaker>/``; other files are listed in ``skipped`` (a ``.txt``
    beside an audio file is its transcript, not a skipped file)."""
    if not root.is_dir():
        raise UserError(f"--audio_dir {root}: no such directory")
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(root)
        ext = path.suffix.lower()
        if ext == ".txt" and any(path.with_suffix(e).is_file() or path.with_suffix(e.upper()).is_file()
                                 for e in AUDIO_EXTENSIONS):
            continue
        if ext not in AUDIO_EXTENSIONS:
            skipped.append((str(path), f"not audio of a known type ({', '.join(AUDIO_EXTENSIONS)})"))
            continue
        if len(rel.parts) < 2:
            skipped.append((str(path), "not in a speaker folder (expected DIR/<speaker>/.../<name>.<ext>)"))
            continue
        txt = path.with_suffix(".txt")
        text = read_transcript(txt) if txt.is_file() else None
        found.append(Recording(Path(os.path.abspath(path)), rel.parts[0], path.stem, text))
    found.sort(key=lambda r: str(r.path))
    return found


def read_manifest(manifest: Path) -> list[Recording]:
    """The rows of a TSV manifest with the columns path, speaker and (optionally) text."""
    if not manifest.is_file():
        raise UserError(f"--manifest {manifest}: no such file")
    try:
        with open(manifest, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as e:
        raise UserError(f"{manifest}: not UTF-8 text (byte {e.start}): save the manifest as UTF-8") from None
    if not rows:
        raise UserError(f"{manifest}: empty manifest (expected a header line: path<TAB>speaker[<TAB>text])")
    header = [c.strip() for c in rows[0]]
    missing = [c for c in ("path", "speaker") if c not in header]
    if missing:
        raise UserError(f"{manifest}:1: the header lacks the column(s) {', '.join(missing)} (it has "
                        f"{', '.join(header) or 'none'}; expected path<TAB>speaker[<TAB>text], tab-separated)")
    col = {name: header.index(name) for name in ("path", "speaker", "text") if name in header}
    found, first_line = [], {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise UserError(f"{manifest}:{lineno}: {len(row)} tab-separated field(s), the header has {len(header)}")
        path, speaker = row[col["path"]].strip(), row[col["speaker"]].strip()
        if not path or not speaker:
            raise UserError(f"{manifest}:{lineno}: empty {'path' if not path else 'speaker'}")
        full = Path(os.path.abspath(manifest.parent / path))
        if full in first_line:
            raise UserError(f"{manifest}:{lineno}: {path} is listed again (first at line {first_line[full]})")
        first_line[full] = lineno
        text = (" ".join(row[col["text"]].split()) or None) if "text" in col else None
        found.append(Recording(full, speaker, full.stem, text))
    found.sort(key=lambda r: str(r.path))
    return found


def check_audio(recs: list[Recording], min_dur: float, skipped: list[tuple[str, str]]) -> dict[int, float]:
    """Duration of each readable recording long enough (by index); the others go to ``skipped``."""
    durations = {}
    for k, rec in enumerate(tqdm(recs, desc="audio headers", unit="file", disable=None, delay=2, file=sys.stderr)):
        try:
            info = audio_file_info(rec.path)
        except UserError as e:
            skipped.append((str(rec.path), f"unreadable: {e}"))
            continue
        dur = info.num_samples / info.sample_rate
        if dur < min_dur:
            skipped.append((str(rec.path), f"too short: {dur:.3f} s, under --min_dur {min_dur:g} s"))
            continue
        durations[k] = dur
    return durations


def unique_ids(names: Sequence[str], keep: str, fallback: str) -> list[str]:
    """Kaldi-safe ids of ``names`` (same order): the safe form of each name, with ``_2``, ``_3``...
    added where two would be the same, in the order of the sorted names (then of their positions)."""
    ids: list[str] = [""] * len(names)
    taken: set[str] = set()
    for k in sorted(range(len(names)), key=lambda k: (names[k], k)):
        base = safe(names[k], keep) or fallback
        cand, n = base, 1
        while cand in taken:
            n += 1
            cand = f"{base}_{n}"
        taken.add(cand)
        ids[k] = cand
    return ids


def wav_entries(paths: dict[str, Path], links: Path) -> dict[str, str]:
    """wav.scp of ``{utt: path}``: the path, or a link ``links/<utt><suffix>`` to a path with
    whitespace; links of utterances no longer there are removed."""
    table, wanted = {}, set()
    for utt, path in paths.items():
        if not any(c.isspace() for c in str(path)):
            table[utt] = str(path)
            continue
        link = links / f"{utt}{path.suffix.lower()}"
        wanted.add(link.name)
        if not (link.is_symlink() and Path(os.readlink(link)) == path):
            links.mkdir(parents=True, exist_ok=True)
            tmp = link.with_name(f".{link.name}.tmp")
            tmp.unlink(missing_ok=True)
            os.symlink(path, tmp)
            os.replace(tmp, link)
        table[utt] = str(link.absolute())
    if links.is_dir():
        for old in links.iterdir():
            if old.name not in wanted:
                old.unlink()
    return table


def share(n: int, fraction: float) -> int:
    """How many of ``n`` utterances a fraction takes: at least one when it is above 0 and ``n`` >= 2,
    and never all of them."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(fraction * n)))


def split(utt2spk: dict[str, str], test_speakers: int, test_fraction: float, dev_fraction: float,
          seed: int) -> dict[str, str]:
    """The set of each utterance (see the module doc)."""
    rng = random.Random(seed)
    spk2utts: dict[str, list[str]] = defaultdict(list)
    for utt in datadir.sorted_c(utt2spk):
        spk2utts[utt2spk[utt]].append(utt)
    speakers = datadir.sorted_c(spk2utts)
    where: dict[str, str] = {}
    if test_speakers > 0:
        if test_speakers == 1:
            raise UserError("--test_speakers 1: speaker verification on the test set needs at least 2 speakers "
                            "(or use --test_speakers 0 to split each speaker's utterances)")
        if test_speakers >= len(speakers):
            raise UserError(f"--test_speakers {test_speakers}: the corpus has {len(speakers)} speaker(s) with usable "
                            "audio; at least one must be left for training (or use --test_speakers 0)")
        held = set(rng.sample(speakers, test_speakers))
        for spk in speakers:
            for utt in spk2utts[spk]:
                where[utt] = "test" if spk in held else "train"
    else:
        if len(speakers) < 2:
            raise UserError(f"the corpus has {len(speakers)} speaker(s) with usable audio; speaker verification "
                            "needs at least 2")
        for spk in speakers:
            utts = list(spk2utts[spk])
            rng.shuffle(utts)
            n_test = share(len(utts), test_fraction)
            for k, utt in enumerate(utts):
                where[utt] = "test" if k < n_test else "train"
    for spk in speakers:
        train = [u for u in spk2utts[spk] if where[u] == "train"]
        rng.shuffle(train)
        for utt in train[:share(len(train), dev_fraction)]:
            where[utt] = "dev"
    return where


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio_dir", type=Path, help="DIR/<speaker>/**/<name>.<wav|flac|ogg|sph> (+ <name>.txt)")
    src.add_argument("--manifest", type=Path, help="TSV with a header: path, speaker and optionally text")
    parser.add_argument("data_dir", type=Path, help="output: <data_dir>/{train,dev,test}")
    parser.add_argument("--test_speakers", type=int, default=2, help="speakers held out for test; 0: split each "
                        "speaker's utterances instead (default: %(default)s)")
    parser.add_argument("--test_fraction", type=float, default=0.2,
                        help="with --test_speakers 0: share of each speaker's utterances for test (default: %(default)s)")
    parser.add_argument("--dev_fraction", type=float, default=0.1,
                        help="share of each training speaker's utterances for dev (default: %(default)s)")
    parser.add_argument("--split_seed", type=int, default=0, help="seed of the splits (default: %(default)s)")
    parser.add_argument("--min_dur", type=float, default=0.5,
                        help="seconds; shorter files are skipped and listed (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.test_speakers < 0:
        raise UserError(f"--test_speakers must be 0 or more, got {args.test_speakers}")
    for name in ("test_fraction", "dev_fraction"):
        if not 0 < getattr(args, name) < 1:
            raise UserError(f"--{name} must be between 0 and 1 (exclusive), got {getattr(args, name)}")

    skipped: list[tuple[str, str]] = []
    recs = scan_audio_dir(args.audio_dir, skipped) if args.audio_dir else read_manifest(args.manifest)
    total = len(recs) + len(skipped)
    source = f"--audio_dir {args.audio_dir}" if args.audio_dir else f"--manifest {args.manifest}"
    if not recs:
        raise UserError(f"{source}: no audio files found" + (
            f" (expected DIR/<speaker>/.../<name>.<{'|'.join(e[1:] for e in AUDIO_EXTENSIONS)}>)" if args.audio_dir
            else ""))
    durations = check_audio(recs, args.min_dur, skipped)
    speakers = sorted({recs[k].speaker for k in durations})
    spk_ids = dict(zip(speakers, unique_ids(speakers, "_", "spk")))
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for k in sorted(durations):
        by_speaker[recs[k].speaker].append(k)
    utt_ids: dict[int, str] = {}
    for speaker, ks in by_speaker.items():  # ks in path order (both ways in list files sorted by path)
        for k, name in zip(ks, unique_ids([recs[k].name for k in ks], "-._", "utt")):
            utt_ids[k] = f"{spk_ids[speaker]}-{name}"
    utt2spk = {utt_ids[k]: spk_ids[recs[k].speaker] for k in utt_ids}
    where = split(utt2spk, args.test_speakers, args.test_fraction, args.dev_fraction, args.split_seed)

    members = {name: [k for k in utt_ids if where[utt_ids[k]] == name] for name in SETS}
    for name, ks in members.items():  # checked before anything is written
        if not ks:
            raise UserError(f"{source}: the {name} set is empty ({len(utt_ids)} usable utterance(s) of "
                            f"{len(spk_ids)} speaker(s); see --test_speakers, --dev_fraction)")
    wav = wav_entries({utt_ids[k]: recs[k].path for k in utt_ids}, args.data_dir / "links")
    for name, ks in members.items():
        tables = {
            "wav.scp": {utt_ids[k]: wav[utt_ids[k]] for k in ks},
            "utt2spk": {utt_ids[k]: utt2spk[utt_ids[k]] for k in ks},
            "utt2dur": {utt_ids[k]: f"{durations[k]:.4f}" for k in ks},
        }
        if any(recs[k].text for k in ks):
            tables["text"] = {utt_ids[k]: recs[k].text or "" for k in ks}
        out = args.data_dir / name
        datadir.save_if_changed(datadir.DataDir(tables), out)
        if "text" not in tables:  # the text and units of an earlier run with transcripts
            for stale in ("text", "units"):
                (out / stale).unlink(missing_ok=True)
        n_text = sum(1 for k in ks if recs[k].text)
        hours = sum(durations[k] for k in ks) / 3600
        print(f"{name}: {len({utt2spk[utt_ids[k]] for k in ks})} speakers, {len(ks)} utterances "
              f"({n_text} with a transcript), {hours:.2f} h", file=sys.stderr)

    args.data_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.data_dir / SKIPPED, "".join(f"{p}\t{why}\n" for p, why in skipped))
    if skipped:
        reasons = Counter(why.split(":")[0].split(" (")[0] for _, why in skipped)
        print(f"skipped {len(skipped)} of {total} file(s) ({'; '.join(f'{why}: {n}' for why, n in reasons.items())}): "
              f"listed in {args.data_dir / SKIPPED}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from cdsvae.bin import run_main

    main.__module__ = Path(__file__).stem
    run_main(main)
