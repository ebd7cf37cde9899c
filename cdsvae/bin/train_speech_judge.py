"""Train (or take) a judge of a speech recipe and measure it on the test set; check the judges' gates.

    python -m cdsvae.bin.train_speech_judge --judge speaker --config conf/judges.yaml \\
        --train_feats dump/train --train_data data/train --test_feats dump/test --test_data data/test \\
        --outdir exp/judge/speaker
    python -m cdsvae.bin.train_speech_judge --check --config conf/judges.yaml --judge_dir exp/judge \\
        --test_data data/test

``--judge speaker`` trains an ECAPA-TDNN on the training speakers (section ``speaker`` of the
config), or with ``--external DIR`` takes a pretrained speechbrain speaker model instead; it
embeds the test utterances (``OUTDIR/emb_<set>/spk.scp``) and scores all their pairs (EER,
minDCF). ``--judge content`` trains a CTC recogniser of ``<train_data>/units`` (section
``content``) and scores its unit error rate on ``<test_data>/units`` (folded by ``--unit_map``).
``OUTDIR/judge.json`` records the judge, a stamp of its options and inputs, and its figures; a
rerun with the same stamp neither trains nor scores again. ``--check`` prints both judges'
figures and exits 1 with one line when one is above its gate (section ``gate``); with
``--content false`` (a corpus without transcripts) it checks the speaker judge alone.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from cdsvae.bin import run_main, str2bool
from cdsvae.io import UserError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cdsvae.bin.train_speech_judge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--judge", choices=("speaker", "content"), help="which judge to train")
    p.add_argument("--check", action="store_true", help="check both judges of --judge_dir against the gates")
    p.add_argument("--config", type=Path, required=True, help="judge config (sections speaker, content, gate, ...)")
    p.add_argument("--train_feats", type=Path, help="feature dir of the training set (feats.scp, utt2spk, cmvn.npz)")
    p.add_argument("--train_data", type=Path, help="data dir of the training set (units)")
    p.add_argument("--test_feats", type=Path, help="feature dir of the test set")
    p.add_argument("--test_data", type=Path, help="data dir of the test set (units); its name names the test set")
    p.add_argument("--outdir", type=Path, help="the judge's directory, e.g. exp/judge/speaker")
    p.add_argument("--judge_dir", type=Path, help="with --check: the directory of both judges, e.g. exp/judge")
    p.add_argument("--unit_map", type=Path, default=None, help="folding map of the units for scoring")
    p.add_argument("--external", default=None, help="speaker: a pretrained speechbrain model dir to use instead")
    p.add_argument("--content", type=str2bool, default=True,
                   help="with --check: check the content judge too (false: the corpus has no transcripts and no "
                        "content judge; default: %(default)s)")
    p.add_argument("--device", default="cpu")
    return p


def _need(args, *names: str) -> None:
    for name in names:
        if getattr(args, name) is None:
            raise UserError(f"--{name} is required{' with --check' if args.check else f' for --judge {args.judge}'}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from cdsvae.eval.judges.speech import check_gates, read_judge_config
    from cdsvae.eval.judges.speech_steps import make_speech_judge

    cfg = read_judge_config(args.config)
    if args.check:
        _need(args, "judge_dir", "test_data")
        kinds = ("speaker", "content") if args.content else ("speaker",)
        check_gates(args.judge_dir, cfg["gate"], args.test_data.name, args.config,
                    emit=lambda line: print(line, flush=True), kinds=kinds)
        return 0
    if args.judge is None:
        raise UserError("give --judge speaker|content, or --check")
    _need(args, "train_feats", "test_feats", "test_data", "outdir")
    if args.judge == "content":
        _need(args, "train_data")
    if args.external and args.judge != "speaker":
        raise UserError("--external names a speaker model; it is only for --judge speaker")
    print(make_speech_judge(args.judge, cfg[args.judge], args.train_feats, args.train_data, args.test_feats,
                            args.test_data, args.outdir, args.unit_map, args.external, args.device))
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
