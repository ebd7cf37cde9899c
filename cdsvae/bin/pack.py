"""Pack a trained experiment for use outside the recipe (stage 7).

    python -m cdsvae.bin.pack --expdir exp/cdsvae [--out exp/cdsvae/packed]

Writes DIR (default ``<expdir>/packed``) and ``DIR.tar.gz``: the resolved config, the weights
stages 5-7 used (weights only), the CMVN statistics, the feature options (speech) and a README
with the results table; see :mod:`cdsvae.packed`. Load it with
``cdsvae.Disentangler.from_packed(DIR)`` or use it with ``cdsvae.bin.embed`` and ``cdsvae.bin.convert``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from cdsvae.bin import run_main, str2bool


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdsvae.bin.pack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expdir", type=Path, required=True, help="experiment dir (config.yaml + checkpoints)")
    parser.add_argument("--out", type=Path, default=None, help="packed dir (default: <expdir>/packed)")
    parser.add_argument("--fbank", type=Path, default=None,
                        help="fbank.yaml of the training features (default: found from the config and emb_*/meta.json)")
    parser.add_argument("--tarball", type=str2bool, default=True, help="also write <out>.tar.gz")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from cdsvae.experiment.pack import write_packed

    out = write_packed(args.expdir, args.out, args.fbank, args.tarball)
    print(f"packed {args.expdir} -> {out}" + (f" and {out}.tar.gz" if args.tarball else ""))
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
