"""Train the judge classifier on a labelled video training split and check it on the test split.

    python -m cdsvae.bin.train_judge --train data/train --test data/test --outdir exp/judge

Writes ``OUTDIR/judge.pt`` and ``OUTDIR/judge_test.json`` (per-factor test accuracy) atomically.
The judge is only trusted when it is right on real sequences: if any factor's test accuracy is
below ``--threshold`` the command exits 1 naming the factors (the judge is kept for inspection).
A second run with the same options and data reuses the saved judge; a judge is (re)trained only
when there is none, when it was trained with other options or data (the options and a stamp of
the training frames are stored in ``judge.pt``) or with ``--force``, and the log says which.
A killed training resumes from ``OUTDIR/checkpoint.pt`` (written after every epoch, with the
random generators' states: the judge is the one an uninterrupted run trains).
A ``judge.pt`` that cannot be read, or a ``--device`` that cannot be used, is an error naming
the file: it is never silently trained over.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from cdsvae.bin import int_list, run_main
from cdsvae.io import UserError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_judge", description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True, help="prepared training split dir (frames.npy, labels.npz, factors.yaml)")
    p.add_argument("--test", required=True, help="prepared test split dir")
    p.add_argument("--outdir", default="exp/judge", help="where judge.pt and judge_test.json go (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int_list, default=[32, 64, 128, 256],
                   help="conv widths of the frame encoder (default: %(default)s; the authors' judge uses 64,128,256,512)")
    p.add_argument("--g_dim", type=int, default=128, help="frame embedding size")
    p.add_argument("--hidden_dim", type=int, default=128, help="BiLSTM hidden size per direction")
    p.add_argument("--threshold", type=float, default=0.99,
                   help="minimum test accuracy of every factor (default: %(default)s; 0 disables the check)")
    p.add_argument("--max_train", type=int, default=None, help="use only the first N training sequences")
    p.add_argument("--max_test", type=int, default=None, help="use only the first N test sequences")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--force", action="store_true", help="retrain even if a judge with the same options exists")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        raise UserError("--epochs and --batch_size must be >= 1")
    from cdsvae.eval.judges.video_steps import gate_judge, judge_splits, make_judge

    train, test = judge_splits(args.train, args.test, args.max_train, args.max_test)
    options = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
               "channels": args.channels, "g_dim": args.g_dim, "hidden_dim": args.hidden_dim}
    outdir = Path(args.outdir)
    model = make_judge(train, test, outdir, options, args.device, force=args.force)
    gate_judge(model, test, outdir, args.threshold, args.batch_size)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
