#!/usr/bin/env python3
"""VCTK (0.92 or 0.80) -> Kaldi data dirs ``train``, ``dev`` and ``test`` over fixed speaker lists.

Layouts read:
  0.92: ``ROOT/wav48_silence_trimmed/pNNN/pNNN_MMM_mic1.flac`` (``--mic mic2`` for the other
        microphone) and ``ROOT/txt/pNNN/pNNN_MMM.txt``;
  0.80: ``ROOT/wav48/pNNN/pNNN_MMM.wav`` and ``ROOT/txt/pNNN/pNNN_MMM.txt``.
Audio stays at 48 kHz on disk: wav.scp holds plain paths and the feature stage resamples to
16 kHz on reading (``resample: true`` in conf/fbank.yaml). Utterance ids are ``pNNN_MMM``
(the microphone is a corpus option, not part of the id), so ids start with the speaker id.
An utterance of a listed speaker is skipped and counted, by reason, when it has no audio of the
chosen microphone (a transcript or the other microphone's file alone), no transcript (all of p315,
a few others), or unreadable audio (``--skip_bad true``). A corpus holding under half of a speaker
list (a partial copy) is said so on stderr, with the command that makes lists over its speakers.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Sequence

import soundfile as sf
from tqdm import tqdm

from cdsvae.bin import str2bool
from cdsvae.data import datadir
from cdsvae.io import UserError

ROOT_EXPECTED = ("expected wav48_silence_trimmed/pNNN/pNNN_MMM_mic1.flac (0.92) or wav48/pNNN/pNNN_MMM.wav (0.80), "
                 "and txt/pNNN/pNNN_MMM.txt")
SETS = ("train", "dev", "test")


def detect_layout(root: str) -> tuple[Path, re.Pattern]:
    """Audio folder and file-name pattern (groups: utt, spk, and mic for 0.92) of the release found
    at ``root``; the pattern matches the files of every microphone."""
    if not root:
        raise UserError(f"VCTK is not set: set it in db.sh to the VCTK root ({ROOT_EXPECTED})")
    path = Path(root)
    if not path.is_dir():
        raise UserError(f"VCTK={root}: no such directory; {ROOT_EXPECTED}")
    if not (path / "txt").is_dir():
        raise UserError(f"VCTK={root}: no txt/ folder; {ROOT_EXPECTED}")
    if (path / "wav48_silence_trimmed").is_dir():
        return path / "wav48_silence_trimmed", re.compile(r"^(?P<utt>(?P<spk>[a-z]+\d+)_\d+)_(?P<mic>mic\d)\.flac$")
    if (path / "wav48").is_dir():
        return path / "wav48", re.compile(r"^(?P<utt>(?P<spk>[a-z]+\d+)_\d+)\.wav$")
    raise UserError(f"VCTK={root}: {ROOT_EXPECTED}")


def load_list(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").split()
    except OSError as e:
        raise UserError(f"{path}: cannot read speaker list: {e.strerror}") from None


def read_transcript(path: Path) -> str:
    text = " ".join(path.read_text(encoding="utf-8", errors="replace").split())
    if not text:
        raise UserError(f"{path}: empty transcript")
    return text


def duration(path: Path) -> float:
    """Seconds, from the file header (no decoding); an unreadable file is an error naming it."""
    if any(c.isspace() for c in str(path)):
        raise UserError(f"{path}: path contains whitespace, which wav.scp cannot hold")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise UserError(f"{path}: cannot decode audio header: {e}") from None
    if info.frames <= 0:
        raise UserError(f"{path}: no samples")
    return info.frames / info.samplerate


def example(utts: list[str], shown: int = 3) -> str:
    """`` (a b c, ...)``: the first few utterance ids of a count."""
    return f" ({' '.join(utts[:shown])}{', ...' if len(utts) > shown else ''})"


def shown(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it lies below it (conf/, local/ of the recipe)."""
    rel = os.path.relpath(Path(path).resolve())
    return str(Path(path).resolve()) if rel.startswith("..") else rel


def warn_partial(args, lists: dict[str, list[str]], present: set[str]) -> None:
    """Say plainly when the corpus holds under half of a speaker list (a partial copy of VCTK), and
    how to make lists over the speakers it has, with as many test and dev speakers per gender as
    the fixed split has in proportion (6 and 4 of 108 speakers)."""
    counts = {name: (sum(s in present for s in spks), len(spks)) for name, spks in lists.items()}
    if all(2 * n >= total for n, total in counts.values()):
        return
    usable = sum(1 for s in present if re.fullmatch(r"p\d+", s) and s != "p315")
    num_test, num_dev = max(1, round(6 * usable / 108)), max(1, round(4 * usable / 108))
    lists_dir, script = (shown(p) for p in (args.spk_list_dir, Path(__file__).parent / "make_speaker_lists.py"))
    info = Path(args.vctk_root) / "speaker-info.txt"
    print(f"warning: this corpus holds under half of the speaker lists of {lists_dir}/ ("
          + ", ".join(f"{name}: {n} of {total}" for name, (n, total) in counts.items())
          + " listed speakers present): the split is not the recipe's, and its results do not compare with "
          "runs on the whole of VCTK\n"
          f"  to split the {usable} speakers this corpus has: {script} {info} conf/my_split --vctk_root "
          f"{args.vctk_root} --num_test {num_test} --num_dev {num_dev}\n"
          f"  then rerun stage 1 with: --local_data_opts \"--spk_list_dir conf/my_split\"", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vctk_root", help="VCTK root holding txt/ and wav48_silence_trimmed/ (or wav48/)")
    parser.add_argument("data_dir", help="output: <data_dir>/{train,dev,test}")
    parser.add_argument("--spk_list_dir", required=True, help="folder with {train,dev,test}_spk.list")
    parser.add_argument("--mic", default="mic1", choices=("mic1", "mic2"), help="microphone of the 0.92 release")
    parser.add_argument("--skip_bad", type=str2bool, default=False,
                        help="skip (and count) unreadable audio files instead of stopping")
    args = parser.parse_args(argv)

    audio_dir, pattern = detect_layout(args.vctk_root)
    single_mic = audio_dir.name == "wav48"
    txt_dir = Path(args.vctk_root) / "txt"
    spk2set: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for name in SETS:
        list_path = Path(args.spk_list_dir) / f"{name}_spk.list"
        lists[name] = load_list(str(list_path))
        for spk in lists[name]:
            if spk in spk2set:
                raise UserError(f"{list_path}: speaker {spk} is also in {spk2set[spk]}_spk.list")
            spk2set[spk] = name

    found = sorted(p for p in audio_dir.iterdir() if p.is_dir())
    unlisted = [p.name for p in found if p.name not in spk2set]
    missing_spk = sorted(set(spk2set) - {p.name for p in found})
    entries: dict[str, list[tuple[str, str, str, str, float]]] = {s: [] for s in SETS}
    # Every utterance of a listed speaker that has a file of any microphone or a transcript;
    # each one not kept is counted under one reason.
    utts: dict[tuple[str, str], Path | None] = {}
    for spk_dir in found:
        if spk_dir.name not in spk2set:
            continue
        spk = spk_dir.name
        for f in sorted(spk_dir.iterdir()):
            m = pattern.match(f.name)
            if m is None:
                continue
            if m["spk"] != spk:
                raise UserError(f"{f}: file of speaker {m['spk']} in the folder of {spk}")
            if single_mic or m["mic"] == args.mic:
                utts[spk, m["utt"]] = f
            else:
                utts.setdefault((spk, m["utt"]), None)
        if (txt_dir / spk).is_dir():
            for t in sorted((txt_dir / spk).glob(f"{spk}_*.txt")):
                utts.setdefault((spk, t.stem), None)
    no_audio = "no audio" if single_mic else f"no {args.mic} audio"
    skipped: dict[str, list[str]] = {no_audio: [], "no transcript": [], "unreadable audio": []}
    for (spk, utt), wav in tqdm(sorted(utts.items()), desc="vctk", unit="utt", disable=None, delay=2,
                                file=sys.stderr):
        txt = txt_dir / spk / f"{utt}.txt"
        if wav is None:
            skipped[no_audio].append(utt)
            continue
        if not txt.is_file():
            skipped["no transcript"].append(utt)
            continue
        try:
            dur = duration(wav.absolute())
        except UserError as e:
            if not args.skip_bad:
                raise
            skipped["unreadable audio"].append(utt)
            print(f"skipped: {e}", file=sys.stderr)
            continue
        entries[spk2set[spk]].append((utt, spk, str(wav.absolute()), read_transcript(txt), dur))

    for name in SETS:
        rows = entries[name]
        if not rows:
            raise UserError(f"VCTK={args.vctk_root}: no {'' if single_mic else args.mic + ' '}utterances with "
                            f"transcripts for the {name} speakers of {Path(args.spk_list_dir) / f'{name}_spk.list'}")
        datadir.save_if_changed(datadir.DataDir({
            "wav.scp": {u: w for u, _, w, _, _ in rows},
            "utt2spk": {u: s for u, s, _, _, _ in rows},
            "text": {u: t for u, _, _, t, _ in rows},
            "utt2dur": {u: f"{d:.7f}".rstrip("0").rstrip(".") for u, _, _, _, d in rows},
        }), Path(args.data_dir) / name)
        hours = sum(r[4] for r in rows) / 3600
        print(f"{name}: {len({r[1] for r in rows})} speakers, {len(rows)} utterances, {hours:.2f} h", file=sys.stderr)
    print(f"layout {audio_dir.name} ({'single mic' if single_mic else args.mic}); speakers on no list (unused): "
          f"{len(unlisted)}" + (f" ({' '.join(unlisted)})" if unlisted else "")
          + (f"; listed speakers absent from the corpus: {len(missing_spk)}" if missing_spk else ""), file=sys.stderr)
    n_skipped = sum(len(v) for v in skipped.values())
    if n_skipped:
        print(f"skipped {n_skipped} utterance(s) of listed speakers: "
              + "; ".join(f"{why}: {len(u)}{example(u)}" for why, u in skipped.items() if u), file=sys.stderr)
    warn_partial(args, lists, {p.name for p in found})
    return 0


if __name__ == "__main__":
    from cdsvae.bin import run_main

    main.__module__ = Path(__file__).stem
    run_main(main)
