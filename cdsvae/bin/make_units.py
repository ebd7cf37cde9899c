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
import hashlib
import io
import json
import re
import sys
import unicodedata
from pathlib import Path
from typing import Sequence

import sentencepiece as spm

from cdsvae.bin import run_main, str2bool
from cdsvae.data.datadir import read_scp, sorted_c
from cdsvae.errors import UserError
from cdsvae.io import atomic_write_bytes, atomic_write_text

SEED = 1
MODEL_TYPES = ("unigram", "bpe", "char")
_APOSTROPHE_IN_WORD = re.compile(r"(?<=\w)['’](?=\w)")


def normalise(text: str, lowercase: bool = False, strip_punct: bool = False) -> str:
    """``text`` with whitespace collapsed; lower-cased and without punctuation when asked.

    ``strip_punct`` removes every Unicode punctuation character (category P*) except an
    apostrophe between two letters (``don't``), which becomes ``'``.
    """
    if strip_punct:
        text = _APOSTROPHE_IN_WORD.sub("\0", text)
        text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text).replace("\0", "'")
    if lowercase:
        text = text.lower()
    return " ".join(text.split())


def read_text(path: Path) -> dict[str, str]:
    """The ``text`` table of a data dir (a missing file is a one-line UserError)."""
    if not path.is_file():
        raise UserError(f"{path}: no such text file")
    return read_scp(path, allow_empty_value=True)


def train_model(train_text: Path, sentences: list[str], model_dir: Path, options: dict) -> bool:
    """Train ``model_dir/spm.model`` on ``sentences`` unless its stamp says it is up to date; True when trained."""
    stamp = {"options": options, "sentencepiece": spm.__version__,
             "text_sha256": hashlib.sha256("\n".join(sentences).encode()).hexdigest()}
    stamp_path = model_dir / "stamp.json"
    if (model_dir / "spm.model").is_file() and stamp_path.is_file():
        try:
            if json.loads(stamp_path.read_text(encoding="utf-8")) == stamp:
                return False
        except (OSError, json.JSONDecodeError):
            pass
    model_dir.mkdir(parents=True, exist_ok=True)
    stamp_path.unlink(missing_ok=True)
    spm.set_random_generator_seed(SEED)
    model = io.BytesIO()
    try:
        with open(model_dir / "train.log", "w", encoding="utf-8") as log:
            # sentences in memory and the model to memory: the model holds no file or folder name
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=model, model_type=options["model_type"],
                vocab_size=options["vocab_size"], character_coverage=1.0, input_sentence_size=0,
                shuffle_input_sentence=False, num_threads=1, normalization_rule_name="identity", logstream=log)
    except RuntimeError as e:
        # "INTERNAL: src/trainer_interface.cc(744) [check] Vocabulary size too high ...": the last part
        message = re.sub(r"^.*\]\s*", "", " ".join(str(e).split()))
        raise UserError(f"{train_text}: sentencepiece cannot train a {options['model_type']} model of "
                        f"--vocab_size {options['vocab_size']} on it: {message}") from None
    atomic_write_bytes(model_dir / "spm.model", model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    atomic_write_text(model_dir / "spm.vocab", "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n"
                                                       for i in range(sp.get_piece_size())))
    atomic_write_text(stamp_path, json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    return True


def encode(sp: spm.SentencePieceProcessor, text: str) -> list[str]:
    """The pieces of ``text``; an id the model does not know is ``<unk>``."""
    return [sp.id_to_piece(i) for i in sp.encode(text)]


def write_if_changed(path: Path, content: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return False
    atomic_write_text(path, content)
    return True


def main(argv: Sequence[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    if args.vocab_size < 2:
        raise UserError(f"--vocab_size {args.vocab_size}: must be at least 2")
    options = {"model_type": args.model_type, "vocab_size": args.vocab_size, "lowercase": args.lowercase,
               "strip_punct": args.strip_punct}
    train_text = Path(args.train_text)
    train = read_text(train_text)
    sentences = [s for s in (normalise(train[u], args.lowercase, args.strip_punct) for u in sorted_c(train)) if s]
    if not sentences:
        raise UserError(f"{train_text}: no transcript to train on (empty after normalisation)")
    texts = {d: read_text(Path(d) / "text") for d in args.data_dirs}
    model_dir = Path(args.model_dir)
    trained = train_model(train_text, sentences, model_dir, options)
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "spm.model"))
    print(f"make_units: {model_dir}: {'trained' if trained else 'up to date'} ({args.model_type}, "
          f"{sp.get_piece_size()} pieces, {len(sentences)} training transcripts)", file=sys.stderr)
    for data_dir, text in texts.items():
        lines, empty, unknown = [], 0, 0
        for utt in sorted_c(text):
            pieces = encode(sp, normalise(text[utt], args.lowercase, args.strip_punct))
            if not pieces:
                empty += 1
                continue
            unknown += "<unk>" in pieces
            lines.append(f"{utt} {' '.join(pieces)}\n")
        if not lines:
            raise UserError(f"{Path(data_dir) / 'text'}: no transcript left after normalisation")
        changed = write_if_changed(Path(data_dir) / "units", "".join(lines))
        print(f"make_units: {Path(data_dir) / 'units'}: {'written' if changed else 'unchanged'}, "
              f"{len(lines)} utterances"
              + (f", {empty} left out (empty after normalisation)" if empty else "")
              + (f", {unknown} with <unk> pieces" if unknown else ""), file=sys.stderr)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
