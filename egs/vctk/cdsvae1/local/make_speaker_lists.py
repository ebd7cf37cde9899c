#!/usr/bin/env python3
"""Write the fixed speaker-disjoint VCTK split (conf/{train,dev,test}_spk.list) from speaker-info.txt.

The committed lists were made with the defaults below from the corpus's speaker-info.txt, so
the split can be checked or remade, never drawn at random. Rule: per gender, speakers sorted
by number; ``--num_test`` per gender are taken at evenly spaced positions (which spreads them
over the accent groups, since VCTK numbers speakers roughly by recording session), then
``--num_dev`` per gender evenly spaced among the rest; everybody else is train. Speakers
without transcripts (p315) are excluded, and so are ids not of the form pNNN (s5 of 0.92).
``--vctk_root`` keeps only the speakers with an audio folder in that copy of the corpus, for a
split over a partial corpus (then stage 1: ``--local_data_opts "--spk_list_dir DIR"``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

from cdsvae.io import UserError, atomic_write_text


def read_speaker_info(path: Path) -> dict[str, str]:
    """Speaker id (``pNNN``) -> gender letter, from either release's speaker-info.txt."""
    genders = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].upper() == "ID":
            continue
        spk = parts[0] if parts[0][0].isalpha() else f"p{parts[0]}"
        if len(parts) < 3 or parts[2].upper() not in ("F", "M"):
            raise UserError(f"{path}:{lineno}: expected 'ID AGE GENDER ...' with gender F or M")
        genders[spk] = parts[2].upper()
    return genders


def evenly_spaced(items: list[str], count: int) -> list[str]:
    """``count`` items at positions (k + 0.5) * len / count: deterministic and spread over the list."""
    if count > len(items):
        raise ValueError(f"cannot take {count} items from {len(items)}")
    return [items[int((k + 0.5) * len(items) / count)] for k in range(count)]


def split_speakers(genders: dict[str, str], num_test: int, num_dev: int, exclude: set[str]) -> dict[str, list[str]]:
    """The split of the rule above; too few speakers of a gender for a set is a UserError naming both."""
    split: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    pools = {gender: sorted((s for s, g in genders.items() if g == gender and s not in exclude
                             and re.fullmatch(r"p\d+", s)), key=lambda s: int(s[1:])) for gender in ("F", "M")}
    usable = f"usable speakers (pNNN, not excluded): {len(pools['F'])} F, {len(pools['M'])} M"

    def take(items: list[str], count: int, name: str, gender: str) -> list[str]:
        if count > len(items):
            where = "are left after the test set" if name == "dev" else "are usable"
            raise UserError(f"the {name} set needs {count} {gender} speakers (--num_{name} {count} per gender), "
                            f"but only {len(items)} {where}: {usable}")
        return evenly_spaced(items, count)

    for gender, pool in pools.items():
        test = take(pool, num_test, "test", gender)
        rest = [s for s in pool if s not in test]
        dev = take(rest, num_dev, "dev", gender)
        split["test"] += test
        split["dev"] += dev
        split["train"] += [s for s in rest if s not in dev]
    if not split["train"]:
        raise UserError(f"no speaker is left for the train set: {usable}")
    return {k: sorted(v) for k, v in split.items()}


def corpus_speakers(root: Path) -> set[str]:
    """Speakers with an audio folder in the VCTK copy at ``root`` (0.92 or 0.80 layout)."""
    for name in ("wav48_silence_trimmed", "wav48"):
        if (root / name).is_dir():
            return {p.name for p in (root / name).iterdir() if p.is_dir()}
    raise UserError(f"--vctk_root {root}: no wav48_silence_trimmed/ or wav48/ folder")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("speaker_info", help="speaker-info.txt of VCTK 0.80 or 0.92")
    parser.add_argument("conf_dir", help="where {train,dev,test}_spk.list are written")
    parser.add_argument("--num_test", type=int, default=6, help="test speakers per gender")
    parser.add_argument("--num_dev", type=int, default=4, help="dev speakers per gender")
    parser.add_argument("--exclude", default="p315", help="comma-separated speakers to leave out (no transcripts)")
    parser.add_argument("--vctk_root", type=Path, default=None,
                        help="only the speakers with audio in this VCTK copy (default: every speaker of the file)")
    args = parser.parse_args(argv)
    info = Path(args.speaker_info)
    try:
        genders = read_speaker_info(info)
    except OSError as e:
        raise UserError(f"{info}: cannot read speaker info: {e.strerror}") from None
    held = f"{len(genders)} speakers ({sum(g == 'F' for g in genders.values())} F, " \
           f"{sum(g == 'M' for g in genders.values())} M)"
    if args.vctk_root is not None:
        present = corpus_speakers(args.vctk_root)
        genders = {s: g for s, g in genders.items() if s in present}
        held += f", {len(genders)} of them with audio in {args.vctk_root}"
    exclude = set(filter(None, args.exclude.split(",")))
    try:
        split = split_speakers(genders, args.num_test, args.num_dev, exclude)
    except UserError as e:
        raise UserError(f"{info}: {e}; the file lists {held}"
                        + (f", excluded: {','.join(sorted(exclude))}" if exclude else "")
                        + "; lower --num_test and --num_dev") from None
    for name, spks in split.items():
        atomic_write_text(Path(args.conf_dir) / f"{name}_spk.list", "".join(f"{s}\n" for s in spks))
        n_f = sum(genders[s] == "F" for s in spks)
        print(f"{name}: {len(spks)} speakers ({n_f} F, {len(spks) - n_f} M)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from cdsvae.bin import run_main

    main.__module__ = Path(__file__).stem
    run_main(main)
