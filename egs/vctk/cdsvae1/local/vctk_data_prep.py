#!/usr/bin/env python3
"""VCTK (0.92 or 0.80) -> Kaldi data dirs ``train``, ``dev`` and ``test`` over fixed speaker lists.

Layouts read:
  0.92: ``ROOT/wav48_silence_trimmed/pNNN/pNNN_MMM_mic1.flac`` (``--mic mic2`` for the other
        microphone) and ``ROOT/txt/pNNN/pNNN_MMM.txt``;
  0.80: ``ROOT/wav48/pNNN/pNNN_MMM.wav`` and ``ROOT/txt/pNNN/pNNN_MMM.txt``.
Audio stays at 48 kHz on disk: wav.scp holds plain paths and the feature stage resamples to
16 kHz on reading (``resample: true`` in conf/fbank.yaml). Utterance ids are ``pNNN_MMM``
(the microphone is a corpus option, not part of the id), so ids start with the speaker id.
Utterances without a transcript (all of p315, a few others) are skipped and counted.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

import soundfile as sf
from tqdm import tqdm

from cdsvae.bin import str2bool
from cdsvae.data import datadir
from cdsvae.errors import UserError

ROOT_EXPECTED = ("expected wav48_silence_trimmed/pNNN/pNNN_MMM_mic1.flac (0.92) or wav48/pNNN/pNNN_MMM.wav (0.80), "
                 "and txt/pNNN/pNNN_MMM.txt")
SETS = ("train", "dev", "test")



def detect_layout(root: str, mic: str) -> tuple[Path, re.Pattern]:
    """Audio folder and file-name pattern (groups: utt, spk) of the release found at ``root``."""
    if not root:
        raise UserError(f"VCTK is not set: set it in db.sh to the VCTK root ({ROOT_EXPECTED})")
    path = Path(root)
    if not path.is_dir():
        raise UserError(f"VCTK={root}: no such directory; {ROOT_EXPECTED}")
    if not (path / "txt").is_dir():
        raise UserError(f"VCTK={root}: no txt/ folder; {ROOT_EXPECTED}")
    if (path / "wav48_silence_trimmed").is_dir():
        return path / "wav48_silence_trimmed", re.compile(rf"^(?P<utt>(?P<spk>[a-z]+\d+)_\d+)_{mic}\.flac$")
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




def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vctk_root", help="VCTK root holding txt/ and wav48_silence_trimmed/ (or wav48/)")
    parser.add_argument("data_dir", help="output: <data_dir>/{train,dev,test}")
    parser.add_argument("--spk_list_dir", required=True, help="folder with {train,dev,test}_spk.list")
    parser.add_argument("--mic", default="mic1", choices=("mic1", "mic2"), help="microphone of the 0.92 release")
    parser.add_argument("--skip_bad", type=str2bool, default=False,
                        help="skip (and count) unreadable audio files instead of stopping")
    args = parser.parse_args(argv)

    audio_dir, pattern = detect_layout(args.vctk_root, args.mic)
    txt_dir = Path(args.vctk_root) / "txt"
    spk2set: dict[str, str] = {}
    for name in SETS:
        list_path = Path(args.spk_list_dir) / f"{name}_spk.list"
        for spk in load_list(str(list_path)):
            if spk in spk2set:
                raise UserError(f"{list_path}: speaker {spk} is also in {spk2set[spk]}_spk.list")
            spk2set[spk] = name

    found = sorted(p for p in audio_dir.iterdir() if p.is_dir())
    unlisted = [p.name for p in found if p.name not in spk2set]
    missing_spk = sorted(set(spk2set) - {p.name for p in found})
    entries: dict[str, list[tuple[str, str, str, str]]] = {s: [] for s in SETS}
    no_text = bad = 0
    files = [(spk_dir.name, f) for spk_dir in found if spk_dir.name in spk2set for f in sorted(spk_dir.iterdir())]
    for spk, wav in tqdm(files, desc="vctk", unit="file", disable=None, file=sys.stderr):
        m = pattern.match(wav.name)
        if m is None:
            continue
        if m["spk"] != spk:
            raise UserError(f"{wav}: file of speaker {m['spk']} in the folder of {spk}")
        txt = txt_dir / spk / f"{m['utt']}.txt"
        if not txt.is_file():
            no_text += 1
            continue
        try:
            dur = duration(wav.absolute())
        except UserError as e:
            if not args.skip_bad:
                raise
            bad += 1
            print(f"skipped: {e}", file=sys.stderr)
            continue
        entries[spk2set[spk]].append((m["utt"], spk, str(wav.absolute()), read_transcript(txt), dur))

    for name in SETS:
        rows = entries[name]
        if not rows:
            raise UserError(f"VCTK={args.vctk_root}: no {args.mic} utterances with transcripts for the {name} speakers "
                            f"of {Path(args.spk_list_dir) / f'{name}_spk.list'}")
        datadir.save_if_changed(datadir.DataDir({
            "wav.scp": {u: w for u, _, w, _, _ in rows},
            "utt2spk": {u: s for u, s, _, _, _ in rows},
            "text": {u: t for u, _, _, t, _ in rows},
            "utt2dur": {u: f"{d:.7f}".rstrip("0").rstrip(".") for u, _, _, _, d in rows},
        }), Path(args.data_dir) / name)
        hours = sum(r[4] for r in rows) / 3600
        print(f"{name}: {len({r[1] for r in rows})} speakers, {len(rows)} utterances, {hours:.2f} h", file=sys.stderr)
    print(f"layout {audio_dir.name} ({args.mic if audio_dir.name != 'wav48' else 'single mic'}); "
          f"skipped without transcript: {no_text}; speakers on no list (unused): {len(unlisted)}"
          + (f" ({' '.join(unlisted)})" if unlisted else "")
          + (f"; listed speakers absent from the corpus: {len(missing_spk)}" if missing_spk else "")
          + (f"; bad audio skipped: {bad}" if bad else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    from cdsvae.bin import run_main

    main.__module__ = Path(__file__).stem
    run_main(main)
