"""Swap grids, samples and the judge table for trained video models.

    python -m cdsvae.bin.video_report --data data/test --out RESULTS.md exp/cdsvae exp/dsvae

For every experiment dir: ``swap_grid.png`` (rows keep s of sequence i, columns keep z of sequence j),
``swap_grid_frame0.png`` (first frame only), ``samples.png`` (s and z_1:T from the priors) and
``RESULTS.md`` from its judge_results.json; ``--out`` gets the side-by-side table of all of them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cdsvae.bin import run_main
from cdsvae.data.video import VideoDataset
from cdsvae.errors import UserError
from cdsvae.eval.judge import sample_with
from cdsvae.eval.report import system_label
from cdsvae.eval.video_report import save_png, sequence_rows, swap_grid, write_results_md


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="video_report", description=__doc__.split("\n\n")[0])
    p.add_argument("exp_dirs", nargs="+", help="experiment dirs (row names are their base names)")
    p.add_argument("--data", required=True, help="test split dir to take sequences from")
    p.add_argument("--num", type=int, default=6, help="sequences in the swap grid (default: %(default)s)")
    p.add_argument("--num_samples", type=int, default=8, help="sequences sampled from the priors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="combined RESULTS.md for all experiment dirs")
    p.add_argument("--title", default="Results")
    p.add_argument("--command", default=None, help="the command that made the experiments, recorded in --out")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from cdsvae.train import load_model

    data = VideoDataset(args.data, labels=False)
    n = min(args.num, len(data))
    if n < 1:
        raise UserError(f"{args.data}: no sequences")
    # Spread the chosen sequences over the set so they differ in label.
    idx = torch.linspace(0, len(data) - 1, n).round().long().tolist()
    x = torch.stack([data[i]["x"] for i in idx])
    results = {}
    for d in args.exp_dirs:
        exp = Path(d)
        model, cfg = load_model(exp)
        model.eval()
        name = f"{system_label(cfg)} ({exp.name})"
        with torch.no_grad():
            save_png(exp / "swap_grid.png", swap_grid(model, x), f"{exp.name}: rows keep s, columns keep z")
            save_png(exp / "swap_grid_frame0.png", swap_grid(model, x, frame=0), f"{exp.name}: frame 0")
            gen = torch.Generator().manual_seed(args.seed)
            samples = sample_with(model.generate, gen, args.num_samples, x.shape[1])
            if not isinstance(samples, torch.Tensor):
                raise UserError(f"{exp}: model.generate returned {type(samples).__name__}, expected a tensor")
            save_png(exp / "samples.png", sequence_rows(samples), f"{exp.name}: samples from the priors")
        rj = exp / "judge_results.json"
        if rj.is_file():
            results[name] = json.loads(rj.read_text())
            write_results_md(exp / "RESULTS.md", {name: results[name]}, f"{args.title}: {exp.name}")
        print(f"video_report: wrote pictures in {exp}")
    if args.out:
        if not results:
            raise UserError("no judge_results.json in any experiment dir; run the scoring stage first")
        write_results_md(args.out, results, args.title, command=args.command)
        print(f"video_report: wrote {args.out}")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
