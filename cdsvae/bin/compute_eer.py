"""Equal error rate and minDCF of a Kaldi ``trials`` + ``scores`` pair.

    python -m cdsvae.bin.compute_eer data/test/trials exp/tag/scores_s.txt
    python -m cdsvae.bin.compute_eer --json data/test/trials exp/tag/scores_s.txt

The text output gives the EER in percent and minDCF at ``--p_target`` and, as Kaldi's
speaker recipes report, also at p_target 0.001.  ``--json`` prints one object
``{"eer": fraction, "threshold": t, "min_dcf": d, "n_target": n, "n_nontarget": m}``
with minDCF at ``--p_target``.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from cdsvae.bin import run_main
from cdsvae.eval.metrics.eer import compute_eer, compute_min_dcf, read_scored_trials
from cdsvae.io import UserError

KALDI_P_TARGETS = (0.01, 0.001)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cdsvae.bin.compute_eer",
        description="EER (exact, sort-based) and normalised minDCF from Kaldi-format trials and scores.",
    )
    p.add_argument("trials", help="lines 'enroll test target|nontarget'")
    p.add_argument("scores", help="lines 'enroll test score' for exactly the same pairs")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--p_target", type=float, default=0.01, help="target prior for minDCF (default 0.01)")
    p.add_argument("--c_miss", type=float, default=1.0, help="cost of a miss (default 1)")
    p.add_argument("--c_fa", type=float, default=1.0, help="cost of a false alarm (default 1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 < args.p_target < 1.0:
        raise UserError(f"--p_target must be in (0, 1), got {args.p_target}")
    tgt, non = read_scored_trials(args.trials, args.scores)
    eer, threshold = compute_eer(tgt, non)
    min_dcf = compute_min_dcf(tgt, non, args.p_target, args.c_miss, args.c_fa)
    if args.json:
        print(json.dumps({"eer": eer, "threshold": threshold, "min_dcf": min_dcf,
                          "n_target": int(tgt.size), "n_nontarget": int(non.size)}))
        return 0
    print(f"EER: {100 * eer:.4f}% (threshold {threshold:.6g}, {tgt.size} target, {non.size} nontarget trials)")
    p_targets = [args.p_target] + [p for p in KALDI_P_TARGETS if p != args.p_target]
    for p in p_targets:
        value = min_dcf if p == args.p_target else compute_min_dcf(tgt, non, p, args.c_miss, args.c_fa)
        print(f"minDCF(p_target={p:g}): {value:.4f}")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
