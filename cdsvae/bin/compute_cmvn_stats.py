"""Global mean/variance statistics of a feature set (the training set), for CMVN in the loader.

    python -m cdsvae.bin.compute_cmvn_stats dump/train/feats.scp dump/train/cmvn.npz
    python -m cdsvae.bin.compute_cmvn_stats dump/train dump/train/cmvn.ark   # Kaldi stats matrix

An output ending in ``.npz`` holds sum, sum_sq, count, mean and std; any other name
gets Kaldi's global stats matrix (2 x dim+1, binary), as ``compute-cmvn-stats`` and
``matrix-sum`` write it.  Several inputs (e.g. per-job scp files) are summed.
"""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from cdsvae.bin import run_main
from cdsvae.data.feats import accumulate_cmvn

logger = logging.getLogger("compute_cmvn_stats")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cdsvae.bin.compute_cmvn_stats", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("feats", nargs="+", help="feats.scp file(s) or feature dir(s) holding feats.scp")
    p.add_argument("out", help="stats file: *.npz, or anything else for a Kaldi stats matrix")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    stats = accumulate_cmvn(args.feats)
    stats.save(args.out)
    logger.info("%s: %d frames, dim %d", args.out, stats.count, stats.sum.size)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
