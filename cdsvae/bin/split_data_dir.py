"""Split a Kaldi data dir into N parts for a JOB=1:N job array (Kaldi's utils/split_data.sh).

    python -m cdsvae.bin.split_data_dir data/train 4             # data/train/split4/{1..4}, by speaker
    python -m cdsvae.bin.split_data_dir --per-utt data/train 4   # data/train/split4utt/{1..4}

By speaker, each speaker's utterances stay in one part and the parts have about the same
number of utterances; every part is a data dir of its own (utils/split_data.sh wraps this).
"""

from __future__ import annotations

import argparse
from typing import Sequence

from cdsvae.bin import positive_int, run_main
from cdsvae.data.datadir import split_data_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="split_data_dir", description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-utt", action="store_true",
                        help="split by utterance into <data-dir>/split<N>utt/ instead of by speaker")
    parser.add_argument("data_dir", help="the data dir (utt2spk and the other tables)")
    parser.add_argument("num_parts", type=positive_int, help="number of parts N")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    split_data_dir(args.data_dir, args.num_parts, by="utterance" if args.per_utt else "speaker")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
