"""Keep some speakers of a Kaldi data dir: a chosen list, or N drawn at random with a seed.

    python -m cdsvae.bin.subset_data_dir --num_spk 8 data/train data/train_spk8
    python -m cdsvae.bin.subset_data_dir --spk_list spk.list data/train data/train_sub

Every table keeps the rows of the kept speakers' utterances (and their recordings); the
output is validated and written table by table, each file atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from cdsvae.bin import run_main
from cdsvae.data.datadir import DataDir, sorted_c
from cdsvae.data.validate import validate_data_dir
from cdsvae.errors import UserError


def choose_speakers(speakers: Sequence[str], num_spk: int, seed: int) -> list[str]:
    """``num_spk`` of ``speakers`` drawn without replacement with ``seed``, in sorted order."""
    speakers = sorted_c(speakers)
    if not 1 <= num_spk <= len(speakers):
        raise UserError(f"--num_spk must be within 1..{len(speakers)} (the speakers there are), got {num_spk}")
    rng = np.random.default_rng(seed)
    return sorted_c(speakers[i] for i in rng.choice(len(speakers), size=num_spk, replace=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="subset_data_dir", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="source data dir")
    parser.add_argument("dst", help="output data dir")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--num_spk", type=int, help="keep this many speakers, drawn at random with --seed")
    group.add_argument("--spk_list", help="file with the speakers to keep, one per line")
    parser.add_argument("--seed", type=int, default=0, help="seed of the speaker draw (default: 0)")
    args = parser.parse_args(argv)
    src = DataDir.load(args.src)
    speakers = src.speakers
    if args.spk_list is not None:
        path = Path(args.spk_list)
        if not path.is_file():
            raise UserError(f"{path}: no such speaker list")
        keep = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        unknown = [s for s in keep if s not in set(speakers)]
        if unknown:
            raise UserError(f"{path}: speaker '{unknown[0]}' is not in {args.src}")
    else:
        keep = choose_speakers(speakers, args.num_spk, args.seed)
    spk2utt = src.spk2utt or {}
    utts = [u for s in keep for u in spk2utt.get(s, [])]
    if Path(args.dst).resolve() == Path(args.src).resolve():
        raise UserError(f"{args.dst}: the output must not be the source dir")
    src.subset(utts).save(args.dst)
    problems = validate_data_dir(args.dst, check_audio=False)
    if problems:
        raise UserError(f"{args.dst}: the subset is not a valid data dir: {problems[0]}")
    print(f"subset_data_dir: {args.dst}: {len(keep)} of {len(speakers)} speakers, {len(utts)} utterances",
          file=sys.stderr)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
