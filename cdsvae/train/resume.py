"""What a step checkpoint of a run holds, how the ranks save it together, and how a run continues
from the newest readable one.

Checkpoints (``DIR/checkpoints/stepNNNNNNNNN.pt``, the last ``keep_last`` kept, plus ``best.pt``
by the validation criterion) hold the model, optimiser, scheduler, epoch/step, position in the
epoch, and every rank's RNG states, so a killed run restarted with the same command ends with
the parameters an uninterrupted run would have had (``train.deterministic`` on GPU). Exact
resumption assumes data loading is a function of (index, epoch). The files themselves (atomic
writes, safe loading, pruning, RNG capture) are :mod:`cdsvae.checkpoint`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

import cdsvae.checkpoint as ckpt
from cdsvae.io import UserError
from cdsvae.train.distributed import DistContext, all_gather_object, broadcast_object

log = logging.getLogger("cdsvae.train")

# What a step checkpoint must hold to resume from; best.pt holds BEST_KEYS only.
RESUME_KEYS = ("model", "optimizer", "scheduler", "progress", "rng")
BEST_KEYS = ("model", "progress", "criterion", "valid", "config")


def save_run(ctx: DistContext, ckpt_dir: Path, step: int, state: Callable[[], dict[str, Any]],
             streams: Mapping[str, torch.Generator], device: torch.device, keep_last: int,
             best: bool = False) -> Path:
    """Collective: every rank contributes its RNG states (global ones and ``streams``), rank 0
    writes ``state()`` with them as the checkpoint of ``step`` (and ``best.pt`` when ``best``),
    then keeps the last ``keep_last`` step checkpoints. Returns the step checkpoint's path."""
    rng = all_gather_object(ctx, ckpt.capture_rng(dict(streams), device))
    path = ckpt.step_path(ckpt_dir, step)
    if ctx.is_main:
        full = state()
        full["rng"] = rng
        if best:  # first: a kill between the two writes leaves no step checkpoint claiming a newer best
            ckpt.save_checkpoint(ckpt_dir / ckpt.BEST, {k: full[k] for k in BEST_KEYS})
        ckpt.save_checkpoint(path, full)
        ckpt.prune(ckpt_dir, keep_last)
        log.info("saved %s (step %d%s)", path, step, ", best so far" if best else "")
    return path


def load_run(ctx: DistContext, ckpt_dir: Path) -> tuple[str, dict[str, Any]] | None:
    """Collective: rank 0 chooses the newest readable step checkpoint, every rank loads that one."""
    found = None
    if ctx.is_main:
        found = ckpt.load_latest(ckpt_dir, map_location="cpu", required_keys=RESUME_KEYS)
    path = broadcast_object(ctx, str(found[0]) if found else None)
    if path is None:
        return None
    return path, (found[1] if found else ckpt.load_checkpoint(path, map_location="cpu"))


def load_weights(model: nn.Module, weights: Mapping[str, Any], path: str) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise UserError(f"{path}: does not fit the configured model "
                        f"({str(e).splitlines()[0]}); use a new --outdir for a new model") from None


def carried_best(state: Mapping[str, Any], criterion: str, path: str) -> float | None:
    """The best validation value to beat: the checkpoint's, unless it was chosen on another criterion."""
    best = state.get("best_valid")
    if state.get("criterion", "loss") != criterion and best is not None:
        log.warning("%s chose its best checkpoint on validation %s, this run chooses on %s: the best "
                    "checkpoint is chosen afresh from the next validation on", path,
                    state.get("criterion", "loss"), criterion)
        return None
    return best


def resume_position(progress: Mapping[str, Any], ctx: DistContext) -> tuple[int, int, int]:
    """(epoch, step, samples into the epoch); the position is rounded down to a whole number of
    samples per process when the run that wrote it had another world size."""
    epoch, step, samples = int(progress["epoch"]), int(progress["step"]), int(progress["samples_in_epoch"])
    if samples % ctx.world_size:
        samples -= samples % ctx.world_size
        log.warning("resuming with %d processes: rounded the position in epoch %d down to sample %d",
                    ctx.world_size, epoch, samples)
    return epoch, step, samples


def restore_streams(rng: list[Any], ctx: DistContext, streams: Mapping[str, torch.Generator],
                    device: torch.device, path: str) -> None:
    """This rank's RNG states (global ones and ``streams``), when the world size is unchanged."""
    if len(rng) == ctx.world_size:
        ckpt.restore_rng(rng[ctx.rank], dict(streams), device)
    else:
        log.warning("%s was written by %d processes, this run has %d: RNG streams start afresh",
                    path, len(rng), ctx.world_size)


def training_finished(epoch: int, step: int, train: Mapping[str, Any]) -> bool:
    """Whether a run at ``epoch`` / ``step`` has trained the ``train`` section's epochs (or max_steps)."""
    return epoch >= int(train["epochs"]) or (train["max_steps"] is not None and step >= int(train["max_steps"]))
