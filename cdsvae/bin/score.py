"""Speaker verification with the s and the z embeddings: trials, cosine scores, EER and minDCF.

    python -m cdsvae.bin.score --emb_dir exp/cdsvae/emb_test --utt2spk data/test/utt2spk \\
        --outdir exp/cdsvae/score_test

Writes ``trials`` (all pairs of the test utterances that have embeddings: one skipped in an
earlier stage is counted and left out), ``scores_s``, ``scores_z`` (``enroll test score``) and
``results.json``.

``--trials FILE`` scores a given list instead of all pairs, in either format (detected from
the first line, or named by ``--trials_format``):

    Kaldi     utt1 utt2 target|nontarget
    VoxCeleb  1|0 path1 path2      e.g. 1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav

A VoxCeleb path names the utterance whose id is the path with its extension dropped and every
'/' replaced by '-' (id10270-x6uYqmx31kE-00001), as Kaldi's VoxCeleb recipe names them. Every
utterance of the list must be in --utt2spk (else an error names the first that is not); a
trial with an utterance of the test set that has no embedding (skipped in an earlier stage)
is left out and counted, like those utterances in the all-pairs list. ``trials`` in --outdir
is then the scored list in Kaldi format, with utterance ids. With ``--mean_from
exp/cdsvae/emb_train`` it also scores after subtracting the mean embedding of that set from
every embedding (mean-normalised cosine, as speaker-verification toolkits do with the
training-set mean): ``scores_s_meannorm``, ``scores_z_meannorm`` and ``results.json["mean_norm"]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from cdsvae.bin import run_main
from cdsvae.eval.metrics.scoring import score_embeddings
from cdsvae.eval.metrics.trials import TRIALS_FORMATS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cdsvae.bin.score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--emb_dir", type=Path, required=True, help="directory with s.scp and z.scp")
    parser.add_argument("--utt2spk", type=Path, required=True, help="utt2spk of the test set")
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument("--trials", type=Path, default=None,
                        help="score this trial list (Kaldi or VoxCeleb format, see above) instead of all pairs")
    parser.add_argument("--trials_format", choices=("auto",) + TRIALS_FORMATS, default="auto",
                        help="format of --trials; auto: detected from its first line (default: auto)")
    parser.add_argument("--p_target", type=float, default=0.01, help="prior of a target trial for minDCF")
    parser.add_argument("--mean_from", type=Path, default=None,
                        help="embedding dir (s.scp, z.scp) whose mean is subtracted for the mean-normalised scores")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    score_embeddings(args.emb_dir, args.utt2spk, args.outdir, args.trials, args.trials_format, args.p_target,
                     args.mean_from)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
