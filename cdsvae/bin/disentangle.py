"""Disentanglement metrics of one speech experiment: CTC probes of z and s, and judged swaps.

    python -m cdsvae.bin.disentangle --expdir exp/cdsvae --judge_dir exp/judge --config conf/judges.yaml \\
        --train_feats dump/train --train_data data/train --test_feats dump/test --test_data data/test \\
        --outdir exp/cdsvae/disentangle_test

Encodes the training and test utterances with the experiment's model, trains a CTC probe on
z_1:T and one on s repeated at every frame (section ``probe`` of the config; ``max_train_utts``
caps the training utterances, evenly spaced), scores both on the test units, and runs the swap
protocol of :mod:`cdsvae.eval.metrics.disentangle` (section ``swap``) with the judges of ``--judge_dir``
(stage 5). With ``--content false`` (a corpus without transcripts: no content judge, no units)
only the speaker side is measured: the swaps are judged by the speaker judge alone, there are
no probes, and results.json records ``"content": false``. Writes ``OUTDIR/results.json``; a rerun with the same model, judges, data and
options finds it up to date and does nothing. Test utterances shorter than one segment are
left out and counted.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from cdsvae.bin import run_main, str2bool


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cdsvae.bin.disentangle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--expdir", type=Path, required=True, help="the experiment")
    p.add_argument("--judge_dir", type=Path, required=True, help="the judges of stage 5 (speaker/, content/)")
    p.add_argument("--config", type=Path, required=True, help="judge config (sections probe and swap)")
    p.add_argument("--train_feats", type=Path, required=True, help="feature dir of the training set")
    p.add_argument("--train_data", type=Path, required=True, help="data dir of the training set (units)")
    p.add_argument("--test_feats", type=Path, required=True, help="feature dir of the test set")
    p.add_argument("--test_data", type=Path, required=True, help="data dir of the test set (units)")
    p.add_argument("--outdir", type=Path, required=True, help="where results.json goes")
    p.add_argument("--unit_map", type=Path, default=None, help="folding map of the units for scoring")
    p.add_argument("--content", type=str2bool, default=True,
                   help="measure content: CTC probes and the content judge on the swaps (false: the corpus has no "
                        "transcripts; the speaker-side figures only; default: %(default)s)")
    p.add_argument("--device", default="cpu")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from cdsvae.eval.metrics.disentangle import RESULTS, DisentangleStage
    from cdsvae.experiment.load import load_model_with_info

    stage = DisentangleStage(**vars(args))  # the config and the judges are checked before the model is loaded
    model, mcfg, checkpoint = load_model_with_info(args.expdir, device=args.device)
    result = stage.run(model, mcfg, checkpoint)
    if result is None:
        print(f"{args.outdir / RESULTS}: up to date")
        return 0
    print(stage.summary(result))
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
