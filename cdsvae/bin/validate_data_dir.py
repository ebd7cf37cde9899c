"""Check a Kaldi data dir: exit 0 when valid, else exit 1 with one line per problem.

    python -m cdsvae.bin.validate_data_dir data/train
    python -m cdsvae.bin.validate_data_dir --no-check-audio data/train
    python -m cdsvae.bin.validate_data_dir --allow-missing-audio data/train   # missing audio: warnings
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from cdsvae.bin import run_main
from cdsvae.data.datadir import DataDir
from cdsvae.data.validate import validate_data_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="validate_data_dir",
        description="Check a Kaldi data dir (sorting, duplicates, utt2spk/spk2utt, speaker-prefixed ids, "
        "matching keys, audio files). Problems go to stdout, one per line as file:line: message.",
    )
    parser.add_argument("data_dir", help="the data directory (wav.scp, utt2spk, spk2utt, ...)")
    parser.add_argument("--no-check-audio", action="store_true",
                        help="do not check that the audio files named in wav.scp exist")
    parser.add_argument("--allow-missing-audio", action="store_true",
                        help="count missing audio files as warnings (on stderr) instead of problems, for "
                             "recipes that skip bad utterances (--skip_bad true)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = validate_data_dir(args.data_dir, check_audio=not args.no_check_audio)
    if args.allow_missing_audio:
        missing = [p for p in problems if p.check == "audio"]
        problems = [p for p in problems if p.check != "audio"]
        for problem in missing:
            print(f"warning: {problem}", file=sys.stderr)
        if missing:
            print(f"validate_data_dir: {args.data_dir}: {len(missing)} audio file(s) missing; "
                  f"their utterances will be skipped", file=sys.stderr)
    if problems:
        for problem in problems:
            print(problem)
        print(f"validate_data_dir: {args.data_dir}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    data = DataDir.load(args.data_dir)
    print(f"validate_data_dir: {args.data_dir}: OK ({len(data.utterances)} utterances, "
          f"{len(data.speakers)} speakers)")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
