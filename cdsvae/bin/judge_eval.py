"""Score a trained video model with the judge: protocols A (keep z, resample s) and B (keep s, resample z).

    python -m cdsvae.bin.judge_eval --expdir exp/cdsvae --judge_dir exp/judge --data data/test

Writes ``EXPDIR/judge_results.json`` atomically: per dynamic factor Acc, IS, H(y|x), H(y) and per
static factor Acc, each as mean and std over ``--n_draws`` draws, plus the judge's accuracy on the
real and on the reconstructed test sequences.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from cdsvae.bin import run_main
from cdsvae.io import UserError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="judge_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--expdir", required=True, help="experiment dir of a trained sequential VAE")
    p.add_argument("--judge_dir", default="exp/judge", help="dir holding judge.pt (default: %(default)s)")
    p.add_argument("--data", default=None, help="labelled test split dir (default: the one the judge was tested on)")
    p.add_argument("--n_draws", type=int, default=5, help="draws of the resampled factor (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_test", type=int, default=None, help="use only the first N test sequences")
    p.add_argument("--no_balanced", action="store_true",
                   help="compute IS, H(y|x), H(y) on all test sequences, not a class-balanced subset")
    p.add_argument("--out", default=None, help="output JSON (default: EXPDIR/judge_results.json)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from cdsvae.experiment.load import load_model_with_info  # imported late so --help works alone
    from cdsvae.eval.judges.video_steps import judge_experiment, judged_test_set
    from cdsvae.eval.report.video import format_judge_summary

    expdir = Path(args.expdir)
    if not expdir.is_dir():
        raise UserError(f"{expdir}: no such experiment directory")
    judge, test, data = judged_test_set(args.judge_dir, args.data, args.device, args.max_test)
    model, cfg, checkpoint = load_model_with_info(expdir, device=args.device)
    res, out = judge_experiment(model, checkpoint, judge, test, expdir, args.judge_dir, data, args.out,
                                n_draws=args.n_draws, batch_size=args.batch_size, seed=args.seed,
                                balanced=not args.no_balanced, device=args.device)
    print(format_judge_summary(res))
    print(f"judge_eval: wrote {out}")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
