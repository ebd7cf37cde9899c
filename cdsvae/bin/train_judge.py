"""Train the judge classifier on a labelled video training split and check it on the test split.

    python -m cdsvae.bin.train_judge --train data/train --test data/test --outdir exp/judge

Writes ``OUTDIR/judge.pt`` and ``OUTDIR/judge_test.json`` (per-factor test accuracy) atomically.
The judge is only trusted when it is right on real sequences: if any factor's test accuracy is
below ``--threshold`` the command exits 1 naming the factors (the judge is kept for inspection).
A second run with the same options and data reuses the saved judge; a judge is (re)trained only
when there is none, when it was trained with other options or data (the options and a stamp of
the training frames are stored in ``judge.pt``) or with ``--force``, and the log says which.
A ``judge.pt`` that cannot be read, or a ``--device`` that cannot be used, is an error naming
the file: it is never silently trained over.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from cdsvae.bin import run_main
from cdsvae.data.video import VideoDataset
from cdsvae.errors import UserError
from cdsvae.eval.judges.video import (JUDGE_FILE, JudgeClassifier, evaluate_judge, load_judge_with_extra, save_judge,
                               train_judge)
from cdsvae.io import atomic_write_text


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_judge", description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True, help="prepared training split dir (frames.npy, labels.npz, factors.yaml)")
    p.add_argument("--test", required=True, help="prepared test split dir")
    p.add_argument("--outdir", default="exp/judge", help="where judge.pt and judge_test.json go (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=_int_list, default=[32, 64, 128, 256],
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


def _data_stamp(d: VideoDataset) -> dict:
    """Where the training frames are and a digest of their content (a copied or touched file is the same data)."""
    from cdsvae.experiment.inputs import file_digest
    return {"path": str(d.split_dir.resolve()), "size": os.stat(d.frames_path).st_size,
            "digest": file_digest(d.frames_path), "n": len(d)}


def _check_device(device: str, judge_path: Path) -> None:
    """A device torch cannot allocate on is an error up front, not a failure halfway through training."""
    try:
        torch.empty(1, device=torch.device(device))
    except (RuntimeError, AssertionError) as e:
        msg = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        raise UserError(f"{judge_path}: cannot train or run the judge on --device {device}: {msg}") from None


def _changed_options(saved, wanted: dict) -> str:
    """'' when ``saved`` equals ``wanted``, else which options differ, for the log."""
    if saved == wanted:
        return ""
    if not isinstance(saved, dict):
        return "it records no training options"
    diffs = []
    for key in wanted:
        if key not in saved:
            diffs.append(f"{key} not recorded")
        elif saved[key] != wanted[key]:
            if key == "train":
                diffs.append(f"training data {wanted[key]['path']} differs from the recorded one "
                             "(path, size, content or number of sequences)")
            else:
                diffs.append(f"{key} {saved[key]} -> {wanted[key]}")
    diffs += [f"{key} no longer an option" for key in saved if key not in wanted]
    return "; ".join(diffs)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        raise UserError("--epochs and --batch_size must be >= 1")
    train = VideoDataset(args.train, max_items=args.max_train)
    test = VideoDataset(args.test, max_items=args.max_test)
    if [f.as_dict() for f in train.factors] != [f.as_dict() for f in test.factors]:
        raise UserError(f"{args.test}/factors.yaml: factors differ from those of {args.train}/factors.yaml")
    if train.shape[1:] != test.shape[1:]:
        raise UserError(f"{args.test}: frames of shape {test.shape} do not match the training frames {train.shape}")
    outdir = Path(args.outdir)
    options = {
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "channels": args.channels, "g_dim": args.g_dim, "hidden_dim": args.hidden_dim,
        "train": _data_stamp(train),
    }
    judge_path = outdir / JUDGE_FILE
    _check_device(args.device, judge_path)
    torch.manual_seed(args.seed)
    model, why = None, None
    if args.force:
        why = "--force given"
    elif not judge_path.exists():
        why = f"no judge at {judge_path}"
    else:
        saved, extra = load_judge_with_extra(outdir, args.device)  # unreadable: an error naming the file
        changed = _changed_options(extra.get("options"), options)
        if changed:
            why = f"{judge_path} was trained with other options or data ({changed})"
        else:
            model = saved
            print(f"train_judge: {judge_path} was trained with the same options and data; reusing it")
    if model is None:
        print(f"train_judge: training a judge: {why}")
        model = JudgeClassifier(train.factors, in_channels=train.shape[1], channels=args.channels,
                                g_dim=args.g_dim, hidden_dim=args.hidden_dim)
        t0 = time.time()
        train_judge(model, train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    device=args.device, log=print, progress=True)
        print(f"train_judge: trained on {len(train)} sequences in {time.time() - t0:.1f} s")
        save_judge(outdir, model, {"options": options, "test_dir": str(test.split_dir.resolve())})
    acc = evaluate_judge(model, test, batch_size=max(args.batch_size, 64))
    failed = {n: a for n, a in acc.items() if a < args.threshold}
    report = {"test_dir": str(test.split_dir.resolve()), "n_test": len(test), "accuracy": acc,
              "threshold": args.threshold, "passed": not failed}
    atomic_write_text(outdir / "judge_test.json", json.dumps(report, indent=2) + "\n")
    for n, a in acc.items():
        kind = next(f.kind for f in model.factors if f.name == n)
        print(f"judge test accuracy {n} ({kind}): {100 * a:.2f}%")
    if failed:
        names = ", ".join(f"{n} {100 * a:.2f}%" for n, a in failed.items())
        raise UserError(f"judge test accuracy below {100 * args.threshold:.2f}% for: {names} "
                        f"(judge kept in {outdir}; train longer or widen it)")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
