"""Pack a trained experiment for use outside the recipe (stage 7).

    python -m cdsvae.bin.pack --expdir exp/cdsvae [--outdir exp/cdsvae/packed]

Writes OUTDIR (default ``<expdir>/packed``) and ``OUTDIR.tar.gz``: the resolved config, the weights
stages 5-7 used (weights only), the CMVN statistics, the feature options (speech) and a README
with the results table; see :mod:`cdsvae.packed`. Load it with
``cdsvae.Disentangler.from_packed(OUTDIR)`` or use it with ``cdsvae.bin.embed`` and ``cdsvae.bin.convert``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from cdsvae.bin import run_main, str2bool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cdsvae.bin.pack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expdir", type=Path, required=True, help="experiment dir (config.yaml + checkpoints)")
    parser.add_argument("--outdir", type=Path, default=None, help="packed dir (default: <expdir>/packed)")
    parser.add_argument("--fbank_config", type=Path, default=None,
                        help="fbank.yaml of the training features (default: found from the config and emb_*/meta.json)")
    parser.add_argument("--tarball", type=str2bool, default=True, help="also write <outdir>.tar.gz")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from cdsvae.experiment.pack import write_packed

    out = write_packed(args.expdir, args.outdir, args.fbank_config, args.tarball)
    print(f"packed {args.expdir} -> {out}" + (f" and {out}.tar.gz" if args.tarball else ""))
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
