"""Sentencepiece units of Kaldi data dirs: train a model on the training transcripts, write ``units``.

    python -m cdsvae.bin.make_units --train_text data/train/text --model_dir data/token_unigram300 \\
        --model_type unigram --vocab_size 300 data/train data/dev data/test

The transcripts (the ``text`` of a data dir) are normalised first, as the recipe chooses
(``--lowercase``, ``--strip_punct``; whitespace is always collapsed); the model is trained on
the normalised training transcripts (ESPnet's ``token_type bpe``: ``--model_type unigram`` or
``bpe``, character coverage 1.0, one thread, a fixed seed, every sentence used, unshuffled, so
the same text and options give the same model). ``MODEL_DIR`` holds ``spm.model``,
``spm.vocab`` (piece and score per line), ``train.log`` and ``stamp.json`` (options, a hash of
the normalised training text, the sentencepiece version); when the stamp matches, the model is
kept and not trained again.

Each ``DATA_DIR/units`` gets one line ``<utt-id> <piece1> <piece2> ...`` per utterance of
``DATA_DIR/text``, the pieces of its normalised transcript separated by single spaces
(a character the model does not know becomes ``<unk>``). Utterances whose transcript
normalises to nothing are left out. Files are written atomically, and only when they change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from cdsvae.bin import run_main, str2bool
from cdsvae.data.units import MODEL_TYPES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make_units", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dirs", nargs="+", metavar="DATA_DIR", help="data dirs whose text gets a units file")
    parser.add_argument("--train_text", required=True, help="the transcripts to train on (e.g. data/train/text)")
    parser.add_argument("--model_dir", required=True, help="where the model is written (or found up to date)")
    parser.add_argument("--model_type", default="unigram", choices=MODEL_TYPES, help="sentencepiece model type "
                        "(default: unigram)")
    parser.add_argument("--vocab_size", type=int, default=300, help="number of pieces, special ones included "
                        "(default: 300)")
    parser.add_argument("--lowercase", type=str2bool, default=False, help="lower-case the transcripts "
                        "(default: false)")
    parser.add_argument("--strip_punct", type=str2bool, default=False,
                        help="remove punctuation, keeping apostrophes inside words (default: false)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from cdsvae.data.units import make_units

    make_units(args.data_dirs, Path(args.train_text), Path(args.model_dir), args.model_type, args.vocab_size,
               args.lowercase, args.strip_punct, emit=lambda line: print(line, file=sys.stderr))
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
