"""Keep some speakers of a Kaldi data dir: a chosen list, or N drawn at random with a seed.

    python -m cdsvae.bin.subset_data_dir --num_spk 8 data/train data/train_spk8
    python -m cdsvae.bin.subset_data_dir --spk_list spk.list data/train data/train_sub

Every table keeps the rows of the kept speakers' utterances (and their recordings); the
output is validated and written table by table, each file atomically.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from cdsvae.bin import run_main
from cdsvae.data.subset import subset_speakers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="subset_data_dir", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="source data dir")
    parser.add_argument("dst", help="output data dir")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--num_spk", type=int, help="keep this many speakers, drawn at random with --seed")
    group.add_argument("--spk_list", help="file with the speakers to keep, one per line")
    parser.add_argument("--seed", type=int, default=0, help="seed of the speaker draw (default: 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kept, there, n_utts = subset_speakers(args.src, args.dst, args.spk_list, args.num_spk, args.seed)
    print(f"subset_data_dir: {args.dst}: {kept} of {there} speakers, {n_utts} utterances", file=sys.stderr)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
