"""Sentencepiece units of Kaldi data dirs: transcripts normalised, a model trained on the training
transcripts (kept while its stamp matches), and a ``units`` file per data dir (the work of
``cdsvae.bin.make_units``, whose help describes the files).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Callable, Sequence

import sentencepiece as spm

from cdsvae.data.datadir import read_scp, sorted_c
from cdsvae.io import UserError, atomic_write_bytes, atomic_write_text

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
    """Write ``content`` to ``path`` atomically unless it holds it already; True when written."""
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return False
    atomic_write_text(path, content)
    return True


def _units_of(text: dict[str, str], sp: spm.SentencePieceProcessor, lowercase: bool,
              strip_punct: bool) -> tuple[list[str], int, int]:
    """The ``units`` lines of a text table, and how many utterances were empty and had ``<unk>`` pieces."""
    lines, empty, unknown = [], 0, 0
    for utt in sorted_c(text):
        pieces = encode(sp, normalise(text[utt], lowercase, strip_punct))
        if not pieces:
            empty += 1
            continue
        unknown += "<unk>" in pieces
        lines.append(f"{utt} {' '.join(pieces)}\n")
    return lines, empty, unknown


def make_units(data_dirs: Sequence[str], train_text: Path, model_dir: Path, model_type: str = "unigram",
               vocab_size: int = 300, lowercase: bool = False, strip_punct: bool = False,
               emit: Callable[[str], None] = print) -> None:
    """Train (or keep) the model of ``model_dir`` on ``train_text`` and write ``units`` in every data dir;
    one line per file to ``emit``."""
    if vocab_size < 2:
        raise UserError(f"--vocab_size {vocab_size}: must be at least 2")
    options = {"model_type": model_type, "vocab_size": vocab_size, "lowercase": lowercase,
               "strip_punct": strip_punct}
    train = read_text(train_text)
    sentences = [s for s in (normalise(train[u], lowercase, strip_punct) for u in sorted_c(train)) if s]
    if not sentences:
        raise UserError(f"{train_text}: no transcript to train on (empty after normalisation)")
    texts = {d: read_text(Path(d) / "text") for d in data_dirs}
    trained = train_model(train_text, sentences, model_dir, options)
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "spm.model"))
    emit(f"make_units: {model_dir}: {'trained' if trained else 'up to date'} ({model_type}, "
         f"{sp.get_piece_size()} pieces, {len(sentences)} training transcripts)")
    for data_dir, text in texts.items():
        lines, empty, unknown = _units_of(text, sp, lowercase, strip_punct)
        if not lines:
            raise UserError(f"{Path(data_dir) / 'text'}: no transcript left after normalisation")
        changed = write_if_changed(Path(data_dir) / "units", "".join(lines))
        emit(f"make_units: {Path(data_dir) / 'units'}: {'written' if changed else 'unchanged'}, "
             f"{len(lines)} utterances"
             + (f", {empty} left out (empty after normalisation)" if empty else "")
             + (f", {unknown} with <unk> pieces" if unknown else ""))
