"""Loading a trained model for evaluation and inference, from an experiment directory
(``exp/<tag>/``) or from a packed copy of one (:mod:`cdsvae.packed`), without the training loop.

An experiment directory: :func:`load_model` / :func:`load_model_with_info` build the model of its
``config.yaml`` (:func:`load_config_file`, ``data.cmvn`` at the directory's own copy) with the
weights of :func:`choose_checkpoint`: ``checkpoints/best.pt`` (lowest validation negative ELBO),
else the newest readable step checkpoint; :func:`checkpoint_summary` says which, for reports.

A packed model: :func:`load_packed` reads a packed directory or its ``.tar.gz``
(:func:`cdsvae.packed.read_packed`: weights only, nothing in it is executed) and builds its model
(:func:`packed_model`).

It never imports the training loop (:mod:`cdsvae.train.trainer`): loading checks the config
against the experiment's schema and reads checkpoint files, nothing more.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

import cdsvae.checkpoint as ckpt
from cdsvae.config import read_yaml
from cdsvae.experiment.inputs import experiment_cmvn
from cdsvae.experiment.schema import CONFIG_FILE, check_config
from cdsvae.io import UserError
from cdsvae.models import build_model
from cdsvae.packed import PackedModel, read_packed

log = logging.getLogger(__name__)


def load_config_file(exp_dir: str | os.PathLike) -> dict[str, Any]:
    """The resolved config of a training directory, with ``data.cmvn`` at the directory's own copy."""
    path = Path(exp_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{path}: no such file; is {exp_dir} a training directory (cdsvae.bin.train --outdir)?")
    cfg = check_config(read_yaml(path), str(path))
    if cfg["data"].get("cmvn") is not None:
        cfg["data"]["cmvn"] = experiment_cmvn(exp_dir, cfg["data"])
    return cfg


def choose_checkpoint(exp_dir: Path) -> tuple[Path, dict[str, Any], str]:
    """(path, state, why) of the checkpoint evaluation uses: best.pt, else the newest step checkpoint."""
    ckpt_dir = exp_dir / "checkpoints"
    best = ckpt_dir / ckpt.BEST
    if best.is_file():
        try:
            state = ckpt.load_checkpoint(best, "cpu")
            criterion = state.get("criterion", "loss")
            return best, state, f"lowest validation {criterion} of all validations"
        except ckpt.UnsafeCheckpointError:
            raise
        except ckpt.CheckpointError as e:
            log.warning("%s; using the newest step checkpoint instead", e)
            why = f"newest step checkpoint ({ckpt.BEST} unreadable)"
    else:
        why = f"newest step checkpoint (no {ckpt.BEST}: training had no validation set)"
    found = ckpt.load_latest(ckpt_dir, "cpu", required_keys=("model",))
    if found is None:
        raise UserError(f"{ckpt_dir}: no checkpoint to load; has training run in {exp_dir}?")
    return Path(found[0]), found[1], why


def checkpoint_summary(path: Path, state: Mapping[str, Any], why: str) -> dict[str, Any]:
    """What a report says about the weights it used: file, step, epoch, why, and its validation figures."""
    progress = state.get("progress") or {}
    valid = dict(state.get("valid") or {})
    if not valid and state.get("valid_loss") is not None:  # written before validations were stored whole
        valid = {"loss": state["valid_loss"]}
    criterion = state.get("criterion", "loss")
    return {"file": f"{path.parent.name}/{path.name}", "step": progress.get("step"),
            "epoch": progress.get("epoch"), "why": why, "criterion": criterion,
            "criterion_value": valid.get(criterion), "eval_train_ratio": valid.get("eval_train_ratio"),
            "eval_train_ratio_train": valid.get("eval_train_ratio_train"), "valid": valid}


def load_model_with_info(exp_dir: str | os.PathLike,
                         device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """(model in eval mode, resolved config, :func:`checkpoint_summary` of the weights) of a training directory.

    Weights come from ``checkpoints/best.pt`` (lowest validation negative ELBO, see
    ``SELECTION_CRITERION``) when there is one, else from the newest readable step checkpoint.
    """
    exp_dir = Path(exp_dir)
    cfg = load_config_file(exp_dir)
    model = build_model(cfg["model"])
    path, state, why = choose_checkpoint(exp_dir)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        raise UserError(f"{exp_dir}: checkpoint does not match {exp_dir / CONFIG_FILE} "
                        f"({str(e).splitlines()[0]})") from None
    model.to(device).eval()
    return model, cfg, checkpoint_summary(path, state, why)


def load_model(exp_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, resolved config) from a training directory; see :func:`load_model_with_info`."""
    model, cfg, _ = load_model_with_info(exp_dir, device)
    return model, cfg


def packed_model(packed: PackedModel, device: str | torch.device = "cpu") -> nn.Module:
    """The model of a packed model read into memory, with its weights, in eval mode on ``device``."""
    model = build_model(packed.config["model"])
    try:
        model.load_state_dict(packed.state_dict)
    except RuntimeError as e:
        raise UserError(f"{packed.source}: weights do not match its config.yaml ({str(e).splitlines()[0]})") from None
    return model.to(device).eval()


def load_packed(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, PackedModel]:
    """(model in eval mode, its :class:`~cdsvae.packed.PackedModel`) of a packed directory or ``.tar.gz``."""
    packed = read_packed(path)
    return packed_model(packed, device), packed
