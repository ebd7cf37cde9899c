"""Speaker (s) and content (z_1:T) embeddings of audio with a packed speech model.

    python -m cdsvae.bin.embed exp/cdsvae/packed data/my_set/wav.scp out/my_set [--nj 4]

Every wav.scp entry (a path or a ``cmd |`` pipe) goes through the recipe's feature pipeline
(:class:`cdsvae.inference.Disentangler`). Writes, in wav.scp order:

``s.ark``/``s.scp``
    one vector per utterance, as stage 5 computes s;
``z.ark``/``z.scp``
    one matrix per utterance, z_1:T of every frame the model's segments cover;
``bad_utts``
    with --skip_bad true, the skipped utterances and why (unreadable, wrong rate, too short).

Audio at another rate than the model's features is resampled when the model's fbank.yaml has
``resample: true``, and is otherwise an error (skipped with --skip_bad true); --resample true or
false decides instead. Several channels are mixed down (their mean) unless the model's fbank.yaml
names one (``channel``); --channel mix|N decides instead. --nj N embeds with N processes (one model each, one torch thread each).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from cdsvae.bin import add_audio_options, run_main, str2bool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cdsvae.bin.embed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("packed", type=Path, help="packed model dir or .tar.gz (cdsvae.bin.pack)")
    parser.add_argument("wav_scp", type=Path, help="Kaldi wav.scp: <utt> <path or command |>")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--nj", type=int, default=1, help="parallel processes")
    parser.add_argument("--skip_bad", type=str2bool, default=False,
                        help="skip (and count, in OUTDIR/bad_utts) files that cannot be embedded")
    add_audio_options(parser)
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from cdsvae.batch_embed import embed_wav_scp

    n, n_items, bad = embed_wav_scp(args.packed, args.wav_scp, args.outdir, args.nj, args.skip_bad, args.resample,
                                    args.channel, args.device)
    print(f"embedded {n} of {n_items} utterance(s) -> {args.outdir}/s.scp, z.scp"
          + (f"; skipped {len(bad)} (listed in {args.outdir}/bad_utts)" if bad else ""))
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
