"""Score a trained video model with the judge: protocols A (keep z, resample s) and B (keep s, resample z).

    python -m cdsvae.bin.judge_eval --exp_dir exp/cdsvae --judge_dir exp/judge --data data/test

Writes ``EXP_DIR/judge_results.json`` atomically: per dynamic factor Acc, IS, H(y|x), H(y) and per
static factor Acc, each as mean and std over ``--n_draws`` draws, plus the judge's accuracy on the
real and on the reconstructed test sequences.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cdsvae.bin import run_main
from cdsvae.data.video import VideoDataset
from cdsvae.errors import UserError
from cdsvae.eval.judges.video import evaluate_swap_protocols, load_judge
from cdsvae.io import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="judge_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--exp_dir", required=True, help="experiment dir of a trained sequential VAE")
    p.add_argument("--judge_dir", default="exp/judge", help="dir holding judge.pt (default: %(default)s)")
    p.add_argument("--data", default=None, help="labelled test split dir (default: the one the judge was tested on)")
    p.add_argument("--n_draws", type=int, default=5, help="draws of the resampled factor (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max_items", type=int, default=None, help="use only the first N test sequences")
    p.add_argument("--no_balanced", action="store_true",
                   help="compute IS, H(y|x), H(y) on all test sequences, not a class-balanced subset")
    p.add_argument("--out", default=None, help="output JSON (default: EXP_DIR/judge_results.json)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def format_summary(res: dict) -> str:
    lines = []
    for n, r in res["protocol_A"].items():
        lines.append(
            f"protocol A ({n}): Acc {100 * r['acc']['mean']:.2f} +- {100 * r['acc']['std']:.2f} %  "
            f"IS {r['is']['mean']:.3f} +- {r['is']['std']:.3f}  H(y|x) {r['h_yx']['mean']:.3f}  "
            f"H(y) {r['h_y']['mean']:.3f}"
        )
    for n, r in res["protocol_B"].items():
        lines.append(f"protocol B ({n}): Acc {100 * r['acc']['mean']:.2f} +- {100 * r['acc']['std']:.2f} %")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from cdsvae.experiment.load import load_model_with_info  # imported late so --help works alone

    exp_dir = Path(args.exp_dir)
    if not exp_dir.is_dir():
        raise UserError(f"{exp_dir}: no such experiment directory")
    judge = load_judge(args.judge_dir, args.device)
    data = args.data
    if data is None:
        saved = torch.load(Path(args.judge_dir) / "judge.pt", map_location="cpu", weights_only=True)
        data = saved.get("extra", {}).get("test_dir")
        if not data:
            raise UserError(f"{args.judge_dir}/judge.pt records no test dir; pass --data")
    test = VideoDataset(data, max_items=args.max_items)
    jf = {f.name: f.as_dict() for f in judge.factors}
    df = {f.name: f.as_dict() for f in test.factors}
    if jf != df:
        raise UserError(f"{data}/factors.yaml: factors {sorted(df)} differ from the judge's {sorted(jf)}")
    model, cfg, checkpoint = load_model_with_info(exp_dir, device=args.device)
    model.eval()
    res = evaluate_swap_protocols(model, judge, test, n_draws=args.n_draws, batch_size=args.batch_size,
                                  seed=args.seed, balanced=not args.no_balanced, device=args.device, progress=True)
    res.update({"exp_dir": str(exp_dir), "judge_dir": str(args.judge_dir), "data": str(data),
                "checkpoint": checkpoint})
    jt = Path(args.judge_dir) / "judge_test.json"
    if jt.is_file():
        res["judge_test"] = json.loads(jt.read_text())
    out = Path(args.out) if args.out else exp_dir / "judge_results.json"
    atomic_write_text(out, json.dumps(res, indent=2) + "\n")
    print(format_summary(res))
    print(f"judge_eval: wrote {out}")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
