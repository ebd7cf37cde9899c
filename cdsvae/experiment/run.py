"""Training a C-DSVAE experiment: its datasets, model and loss wired into the trainer
(:class:`cdsvae.train.trainer.Trainer`), and the checks made before a run starts or resumes.

:func:`train` runs a checked config (:func:`cdsvae.experiment.schema.load_train_config`) into an
experiment directory; :func:`check_run_inputs`, :func:`finished_run` and
:func:`check_training_batches` let the launcher refuse or skip a run before any process starts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import cdsvae.checkpoint as ckpt
from cdsvae.config import dump_config, read_yaml
from cdsvae.experiment.inputs import (absolute_data_paths, build_dataset, check_frames, check_resume, config_changes,
                                      copy_cmvn, fingerprint, restart_hint, write_inputs)
from cdsvae.experiment.loss import SELECTION_CRITERION, make_loss_fn, recon_consistency
from cdsvae.experiment.schema import CONFIG_FILE, content_segments, declared_defaults
from cdsvae.io import UserError
from cdsvae.models import build_model
from cdsvae.train.batches import check_global_batch, seed_everything
from cdsvae.train.distributed import DistContext, shutdown
from cdsvae.train.resume import RESUME_KEYS, training_finished
from cdsvae.train.trainer import Trainer, setup_process

log = logging.getLogger("cdsvae.train")


def _check_existing_run(outdir: Path, cfg: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """A directory with checkpoints of another model/objective/data is not silently continued."""
    prev_file = outdir / CONFIG_FILE
    if not prev_file.is_file() or not ckpt.list_step_checkpoints(outdir / "checkpoints"):
        return
    prev = read_yaml(prev_file)
    changed = config_changes(prev, cfg, defaults=defaults)
    if changed:
        raise UserError(f"{outdir} holds a run with another config ({'; '.join(changed)}); "
                        f"{restart_hint(outdir)}")
    changed = config_changes(prev, cfg, ("train",))
    if changed:
        log.warning("resuming with changed train options: %s", "; ".join(changed))


def check_run_inputs(cfg: Mapping[str, Any], outdir: str | os.PathLike) -> dict[str, Any]:
    """Refuse ``outdir`` when its checkpoints were trained with another config or on other inputs.

    ``cfg`` is checked and has absolute data paths (:func:`cdsvae.experiment.inputs.absolute_data_paths`);
    returns the fingerprint of its inputs.
    """
    outdir = Path(outdir)
    defaults = declared_defaults()
    _check_existing_run(outdir, cfg, defaults)
    fp = fingerprint(cfg)
    check_resume(outdir, fp, bool(ckpt.list_step_checkpoints(outdir / "checkpoints")), defaults)
    return fp


def finished_run(cfg: Mapping[str, Any], outdir: str | os.PathLike) -> str | None:
    """``step S, E/EPOCHS epochs`` when the newest step checkpoint of ``outdir`` has already trained
    ``cfg``'s ``train.epochs`` (or ``train.max_steps``), so training it would do nothing; else None.
    The same test as the trainer's on resuming, read from the checkpoint it would resume from."""
    found = ckpt.load_latest(Path(outdir) / "checkpoints", "cpu", required_keys=RESUME_KEYS)
    if found is None:
        return None
    progress, t = found[1]["progress"], cfg["train"]
    epoch, step = int(progress["epoch"]), int(progress["step"])
    if training_finished(epoch, step, t):
        return f"step {step}, {epoch}/{int(t['epochs'])} epochs"
    return None


def check_training_batches(cfg: Mapping[str, Any], nproc: int) -> None:
    """Refuse a checked config whose training split cannot fill one global batch of ``nproc``
    processes (:func:`cdsvae.train.batches.check_global_batch`), before any process starts."""
    t = cfg["train"]
    train_set = build_dataset(cfg["data"], cfg["data"]["train_split"], content_segments(cfg))
    if len(train_set) == 0:
        raise UserError(f"data split '{cfg['data']['train_split']}' is empty")
    check_global_batch(train_set, int(t["batch_size"]), int(nproc), bool(t["unique_utts_per_batch"]))


def build_trainer(cfg: Mapping[str, Any], outdir: str | os.PathLike, ctx: DistContext) -> Trainer:
    """Datasets, model and loss of a checked config, wired into a Trainer, in a process set up by
    :func:`cdsvae.train.trainer.setup_process`.

    Rank 0 first refuses a directory trained on other inputs (:func:`check_run_inputs`), then
    writes DIR/inputs.json, DIR/cmvn.npz (a copy of ``data.cmvn``) and DIR/config.yaml.
    """
    outdir = Path(outdir)
    t = cfg["train"]
    if ctx.is_main:
        fp = check_run_inputs(cfg, outdir)
        write_inputs(outdir, fp)
        copy_cmvn(outdir, cfg["data"])
        dump_config(cfg, outdir / CONFIG_FILE)
    seed_everything(t["seed"])  # same initial parameters on every rank
    segments = content_segments(cfg)
    train_set = build_dataset(cfg["data"], cfg["data"]["train_split"], segments)
    valid_split = cfg["data"]["valid_split"]
    valid_set = build_dataset(cfg["data"], valid_split, segments) if valid_split else None
    if len(train_set) == 0:
        raise UserError(f"data split '{cfg['data']['train_split']}' is empty")
    if valid_set is not None and len(valid_set) == 0:
        log.warning("validation split '%s' is empty: no validation, no best checkpoint", valid_split)
        valid_set = None
    check_frames(cfg["model"], train_set[0]["x"], f"data split '{cfg['data']['train_split']}'")
    model = build_model(cfg["model"])
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %s, %.2fM parameters; %d training / %s validation sequences", cfg["model"]["frame"],
             n_params / 1e6, len(train_set), len(valid_set) if valid_set is not None else "no")
    return Trainer(model, make_loss_fn(cfg, len(train_set)), train_set, valid_set, cfg, outdir, ctx,
                   criterion=SELECTION_CRITERION, consistency_fn=recon_consistency)


def train(cfg: Mapping[str, Any], outdir: str | os.PathLike) -> dict[str, Any]:
    """Train a checked config (:func:`~cdsvae.experiment.schema.load_train_config`) into DIR: set up the
    process, write DIR/config.yaml (data paths made absolute), and train (resuming from DIR when it
    holds checkpoints of the same config and inputs)."""
    cfg = absolute_data_paths(cfg)
    ctx = setup_process(cfg["train"], outdir)
    try:
        return build_trainer(cfg, outdir, ctx).fit()
    finally:
        shutdown(ctx)
