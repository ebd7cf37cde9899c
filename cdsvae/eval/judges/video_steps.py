"""The video judge's recipe steps on disk: train it (or reuse the one trained with the same options and
data) into a directory and gate it on the test split, and judge a trained experiment with it.

``make_judge`` and ``gate_judge`` are the work of ``cdsvae.bin.train_judge`` (``judge.pt``,
``judge_test.json``); ``judge_experiment`` that of ``cdsvae.bin.judge_eval`` (``judge_results.json``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from cdsvae.data.video import VideoDataset
from cdsvae.eval.judges.video import (JUDGE_FILE, JudgeClassifier, evaluate_judge, load_judge, load_judge_with_extra,
                                      save_judge, train_judge)
from cdsvae.io import UserError, atomic_write_text


def judge_splits(train_dir, test_dir, max_train: int | None, max_test: int | None) -> tuple[VideoDataset, VideoDataset]:
    """The training and test splits; their factors and frame shapes must agree."""
    train = VideoDataset(train_dir, max_items=max_train)
    test = VideoDataset(test_dir, max_items=max_test)
    if [f.as_dict() for f in train.factors] != [f.as_dict() for f in test.factors]:
        raise UserError(f"{test_dir}/factors.yaml: factors differ from those of {train_dir}/factors.yaml")
    if train.shape[1:] != test.shape[1:]:
        raise UserError(f"{test_dir}: frames of shape {test.shape} do not match the training frames {train.shape}")
    return train, test


def data_stamp(d: VideoDataset) -> dict:
    """Where the training frames are and a digest of their content (a copied or touched file is the same data)."""
    from cdsvae.experiment.inputs import file_digest
    return {"path": str(d.split_dir.resolve()), "size": os.stat(d.frames_path).st_size,
            "digest": file_digest(d.frames_path), "n": len(d)}


def check_device(device: str, judge_path: Path) -> None:
    """A device torch cannot allocate on is an error up front, not a failure halfway through training."""
    try:
        torch.empty(1, device=torch.device(device))
    except (RuntimeError, AssertionError) as e:
        msg = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        raise UserError(f"{judge_path}: cannot train or run the judge on --device {device}: {msg}") from None


def changed_options(saved, wanted: dict) -> str:
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


def make_judge(train: VideoDataset, test: VideoDataset, outdir: Path, options: Mapping[str, Any], device: str,
               force: bool = False, log: Callable[[str], None] = print) -> JudgeClassifier:
    """The judge of ``outdir``: reused when it was trained with ``options`` (epochs, batch_size, lr, seed,
    channels, g_dim, hidden_dim) on the same data, else trained and saved; the log says which."""
    options = {**options, "train": data_stamp(train)}
    judge_path = outdir / JUDGE_FILE
    check_device(device, judge_path)
    torch.manual_seed(options["seed"])
    model, why = None, None
    if force:
        why = "--force given"
    elif not judge_path.exists():
        why = f"no judge at {judge_path}"
    else:
        saved, extra = load_judge_with_extra(outdir, device)  # unreadable: an error naming the file
        changed = changed_options(extra.get("options"), options)
        if changed:
            why = f"{judge_path} was trained with other options or data ({changed})"
        else:
            model = saved
            log(f"train_judge: {judge_path} was trained with the same options and data; reusing it")
    if model is None:
        log(f"train_judge: training a judge: {why}")
        model = JudgeClassifier(train.factors, in_channels=train.shape[1], channels=options["channels"],
                                g_dim=options["g_dim"], hidden_dim=options["hidden_dim"])
        t0 = time.time()
        train_judge(model, train, epochs=options["epochs"], batch_size=options["batch_size"], lr=options["lr"],
                    seed=options["seed"], device=device, log=log, progress=True, workdir=outdir,
                    stamp=options)
        log(f"train_judge: trained on {len(train)} sequences in {time.time() - t0:.1f} s")
        save_judge(outdir, model, {"options": options, "test_dir": str(test.split_dir.resolve())})
    return model


def gate_judge(model: JudgeClassifier, test: VideoDataset, outdir: Path, threshold: float, batch_size: int,
               log: Callable[[str], None] = print) -> dict[str, float]:
    """The judge's test accuracy per factor, written to ``outdir/judge_test.json``; a UserError naming the
    factors below ``threshold`` (the judge is kept for inspection)."""
    acc = evaluate_judge(model, test, batch_size=max(batch_size, 64))
    failed = {n: a for n, a in acc.items() if a < threshold}
    report = {"test_dir": str(test.split_dir.resolve()), "n_test": len(test), "accuracy": acc,
              "threshold": threshold, "passed": not failed}
    atomic_write_text(outdir / "judge_test.json", json.dumps(report, indent=2) + "\n")
    for n, a in acc.items():
        kind = next(f.kind for f in model.factors if f.name == n)
        log(f"judge test accuracy {n} ({kind}): {100 * a:.2f}%")
    if failed:
        names = ", ".join(f"{n} {100 * a:.2f}%" for n, a in failed.items())
        raise UserError(f"judge test accuracy below {100 * threshold:.2f}% for: {names} "
                        f"(judge kept in {outdir}; train longer or widen it)")
    return acc


def judged_test_set(judge_dir, data, device: str, max_items: int | None = None):
    """The judge of ``judge_dir`` and the labelled test split (``data``, or the one the judge was tested on),
    whose factors must be the judge's."""
    judge = load_judge(judge_dir, device)
    if data is None:
        saved = torch.load(Path(judge_dir) / "judge.pt", map_location="cpu", weights_only=True)
        data = saved.get("extra", {}).get("test_dir")
        if not data:
            raise UserError(f"{judge_dir}/judge.pt records no test dir; pass --data")
    test = VideoDataset(data, max_items=max_items)
    jf = {f.name: f.as_dict() for f in judge.factors}
    df = {f.name: f.as_dict() for f in test.factors}
    if jf != df:
        raise UserError(f"{data}/factors.yaml: factors {sorted(df)} differ from the judge's {sorted(jf)}")
    return judge, test, data


def judge_experiment(model, checkpoint, judge, test: VideoDataset, expdir: Path, judge_dir, data, out,
                     **protocol) -> tuple[dict, Path]:
    """Protocols A and B of the loaded ``model`` of ``expdir`` (:func:`evaluate_swap_protocols`, keyword
    ``protocol`` options), with the judge's own test accuracy, written atomically to ``out``
    (default ``expdir/judge_results.json``); returns the results and where they went."""
    from cdsvae.eval.metrics.video_swap import evaluate_swap_protocols

    model.eval()
    res = evaluate_swap_protocols(model, judge, test, progress=True, **protocol)
    res.update({"exp_dir": str(expdir), "judge_dir": str(judge_dir), "data": str(data),
                "checkpoint": checkpoint})
    jt = Path(judge_dir) / "judge_test.json"
    if jt.is_file():
        res["judge_test"] = json.loads(jt.read_text())
    out = Path(out) if out else expdir / "judge_results.json"
    atomic_write_text(out, json.dumps(res, indent=2) + "\n")
    return res, out
