"""Check that trained experiments still match their inputs before they are evaluated.

    python -m cdsvae.bin.check_experiment exp/cdsvae exp/dsvae --feats dump/test dump/train

Each EXPDIR must hold the fingerprint training recorded (inputs.json, see
cdsvae.experiment.inputs): the input files it lists must be unchanged, and every --feats dir must
hold features made with the same options (fbank.yaml) as the training features.  Exit 0 when
all match; otherwise one line naming the experiment and what changed, and exit 1.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from cdsvae.bin import run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cdsvae.bin.check_experiment", description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("expdirs", nargs="+", metavar="EXPDIR", help="training directories (cdsvae.bin.train --outdir)")
    p.add_argument("--feats", nargs="*", default=[], metavar="DIR",
                   help="feature dirs the experiments will be evaluated on (speech)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from cdsvae.experiment.inputs import check_experiment
    for exp in args.expdirs:
        check_experiment(exp, args.feats)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
