"""Per-utterance s and z embeddings of a feature set with a trained model (stage 5).

    python -m cdsvae.bin.extract_embeddings --expdir exp/cdsvae --feats dump/test \\
        --outdir exp/cdsvae/emb_test

Reads the model and its resolved config from --expdir, ``feats.scp`` and ``utt2spk`` from
--feats; writes ``s.ark/s.scp``, ``z.ark/z.scp``, ``utt2spk`` and ``meta.json`` to --outdir.
Features are normalised as in training and cut into non-overlapping segments of the training
segment length.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

from cdsvae.bin import run_main, str2bool
from cdsvae.io import UserError



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cdsvae.bin.extract_embeddings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--expdir", type=Path, required=True, help="experiment dir (config.yaml + checkpoints)")
    parser.add_argument("--feats", type=Path, required=True, help="feature dir with feats.scp and utt2spk")
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument(
        "--segment_frames", type=int, default=None, help="frames per segment (default: the training segment length)"
    )
    parser.add_argument("--batch_size", type=int, default=64, help="segments per forward pass")
    parser.add_argument("--skip_bad", type=str2bool, default=False, help="skip (and count) unusable utterances")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max_utts", type=int, default=None,
                        help="embed at most this many utterances, evenly spaced in sorted order (default: all)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from cdsvae.eval.metrics.embeddings import extract_feature_dir

    meta = extract_feature_dir(
        args.expdir,
        args.feats,
        args.outdir,
        segment_frames=args.segment_frames,
        batch_size=args.batch_size,
        skip_bad=args.skip_bad,
        device=args.device,
        progress=True,
        max_utts=args.max_utts,
    )
    print(json.dumps({k: v for k, v in meta.items() if k != "skipped"}))
    if meta["n_skipped"]:
        print(f"skipped {meta['n_skipped']} utterance(s): {' '.join(meta['skipped'][:10])}")
    if meta["n_utts"] == 0:
        raise UserError(f"{args.feats}: no utterance gave an embedding")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
