"""The C-DSVAE training task: the config schema and its checks, datasets, the per-step loss,
running a training, and ``load_model``.

The task declares the ``model``, ``loss``, ``augment`` and ``data`` sections and assembles the
schema with the trainer's ``optim`` and ``train`` (:func:`config_schema`);
:func:`load_train_config` is the one way a config file plus overrides becomes a checked config,
which :func:`train` then runs.

Per step: the content view is the batch with each sequence's frames shuffled (or reversed),
or, with ``augment.content_view: segment`` (speech), another segment of the same utterance;
the motion view is ``batch["x_motion"]`` when the dataset provides one (speech: voice-converted
copies), else made on the fly for image sequences; then :func:`cdsvae.objectives.cdsvae_loss`.
The data modules (and the video augmentation) are imported only for the data type a config
names, so a run reads only the code of its own data.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from cdsvae.augment.content import content_order
from cdsvae.errors import UserError
from cdsvae.models import MODEL_DEFAULTS, build_model, resolve_model_config
from cdsvae.objectives import LossWeights, cdsvae_loss
from cdsvae.train import checkpoint as ckpt
from cdsvae.train import inputs
from cdsvae.train.config import (Field, Schema, Section, dump_config, field_from_default, load_config, read_yaml,
                                 required, validate)
from cdsvae.train.distributed import DistContext, shutdown
from cdsvae.train.resume import RESUME_KEYS, training_finished
from cdsvae.train.sampler import check_global_batch
from cdsvae.train.seeding import seed_everything
from cdsvae.train.trainer import Trainer, config_sections, setup_process

log = logging.getLogger("cdsvae.train")

DATA_TYPES = ("speech", "video", "synthetic")
CONTENT_VIEWS = ("shuffle", "reverse", "segment")
CONFIG_FILE = "config.yaml"


def config_schema() -> Schema:
    """Every section and key ``cdsvae.bin.train`` accepts, with defaults."""
    loss_fields = {f.name: field_from_default(f.default) for f in dataclasses.fields(LossWeights)}
    loss_fields["mi_estimator"] = Field(LossWeights.mi_estimator, "str", choices=("contrastive", "mws"))
    return {
        "model": Section({k: field_from_default(v) for k, v in MODEL_DEFAULTS.items()}),
        "loss": Section(loss_fields),
        **config_sections(),  # optim, train: declared by the trainer
        "augment": Section({
            # shuffle | reverse: x's frames reordered (the paper); segment: another segment of the
            # same utterance (speech), the positive of self-supervised speaker-embedding recipes
            "content_view": Field("shuffle", "str", choices=CONTENT_VIEWS),
            # Overrides of cdsvae.augment.video.MotionViewConfig, e.g. {hue: 0.0}; video only.
            "motion_view": Field({}, "any"),
        }),
        # Only these keys are checked here; the rest go to the dataset builder of `type`.
        "data": Section({
            "type": required("str", choices=DATA_TYPES),
            "train_split": Field("train", "str"),
            "valid_split": Field("dev", "str", optional=True),  # null: no validation
        }, open=True),
    }


def _check_values(cfg: dict[str, Any], source: str) -> dict[str, Any]:
    """The checks of a schema-valid config owned by the model and the objective, and the values
    the task resolves (``train.unique_utts_per_batch: null``)."""
    try:
        resolve_model_config(cfg["model"])
        LossWeights(**cfg["loss"])
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    if cfg["augment"]["motion_view"] is not None and not isinstance(cfg["augment"]["motion_view"], Mapping):
        raise UserError(f"{source}: 'augment.motion_view' must be a mapping of motion-view options")
    if cfg["augment"]["content_view"] == "segment" and cfg["data"]["type"] != "speech":
        raise UserError(f"{source}: 'augment.content_view: segment' needs several segments per sequence "
                        f"(data.type speech), got data.type {cfg['data']['type']}; use shuffle or reverse")
    if cfg["train"]["unique_utts_per_batch"] is None:
        cfg["train"]["unique_utts_per_batch"] = uses_contrastive(cfg["loss"])
    return cfg


def check_config(cfg: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Schema validation plus the value checks owned by the model and the objective."""
    return _check_values(validate(cfg, config_schema(), source), source)


def load_train_config(path: str | os.PathLike | None, overrides: Sequence[str] | Mapping = ()) -> dict[str, Any]:
    """The checked config of a run: the YAML file ``path`` (optional) with ``--section.key value``
    overrides, validated against :func:`config_schema` and checked; errors name ``path``."""
    source = str(path) if path is not None else "config"
    return _check_values(load_config(path, overrides, config_schema()), source)


def uses_contrastive(loss_cfg: Mapping[str, Any]) -> bool:
    """Whether a contrastive term (con_s or con_z on views) is on."""
    return loss_cfg.get("mi_estimator", "contrastive") == "contrastive" and (
        float(loss_cfg.get("con_s", 0)) > 0 or float(loss_cfg.get("con_z", 0)) > 0)


def content_segments(cfg: Mapping[str, Any]) -> bool:
    """Whether the datasets must give each item a content segment (``x_content``)."""
    return (cfg["augment"]["content_view"] == "segment" and cfg["loss"]["mi_estimator"] == "contrastive"
            and cfg["loss"]["con_s"] > 0)


def build_dataset(data_cfg: Mapping[str, Any], split: str, content_segment: bool = False):
    # Each data module is imported only for its own data.type (speech reads the feature code).
    kind = data_cfg["type"]
    if kind == "synthetic":
        from cdsvae.data.synthetic import build_synthetic_dataset
        return build_synthetic_dataset(data_cfg, split)
    if kind == "speech":
        from cdsvae.data.speech import build_speech_dataset
        return build_speech_dataset(dict(data_cfg), split, content_segment=content_segment)
    if kind == "video":
        from cdsvae.data.video import build_video_dataset
        return build_video_dataset(dict(data_cfg), split)
    raise UserError(f"data.type must be one of {', '.join(DATA_TYPES)}, got {kind!r}")


def check_frames(model_cfg: Mapping[str, Any], x: torch.Tensor, source: str = "data") -> None:
    """Fail early, naming the keys, when the data's frames do not fit the model config."""
    frame = model_cfg["frame"]
    if frame == "conv64":
        expected = (model_cfg["in_channels"], 64, 64)
        if tuple(x.shape[1:]) != expected:
            raise UserError(f"{source}: sequences have frames of shape {tuple(x.shape[1:])}, but model.frame "
                            f"conv64 with model.in_channels {model_cfg['in_channels']} expects {expected}")
    elif x.dim() != 2 or x.shape[1] != model_cfg["feat_dim"]:
        raise UserError(f"{source}: sequences have frames of shape {tuple(x.shape[1:])}, but model.frame "
                        f"{frame} expects ({model_cfg['feat_dim']},) (model.feat_dim)")


def make_loss_fn(cfg: Mapping[str, Any], dataset_size: int):
    """``(model, batch, generator) -> (loss, terms)`` for the trainer."""
    weights = LossWeights(**cfg["loss"])
    mode = cfg["augment"]["content_view"]
    motion_opts = dict(cfg["augment"]["motion_view"] or {})
    needs_motion = weights.mi_estimator == "contrastive" and weights.con_z > 0
    needs_content = weights.mi_estimator == "contrastive" and weights.con_s > 0
    segment_view = mode == "segment"

    without_motion = dataclasses.replace(weights, con_z=0.0)
    warned = []

    def loss_fn(model: nn.Module, batch: Mapping[str, Any], generator: torch.Generator):
        x = batch["x"]
        order = x_content = None
        if needs_content and segment_view:
            x_content = batch.get("x_content")
            if x_content is None:
                raise UserError("augment.content_view segment: the batch has no 'x_content' (another segment of the "
                                "same utterance); it needs speech data built with content segments")
        elif needs_content:
            # The content view as a frame order: the model reuses x's frame embeddings for it.
            order = content_order(x.shape[0], x.shape[1], generator, mode, device=x.device)
        x_motion = batch.get("x_motion")
        w = weights
        if x_motion is None and needs_motion:
            if x.dim() == 5:
                from cdsvae.augment.video import motion_view  # image sequences only
                # Drawn on x's device (per-pixel noise on the CPU would stall a GPU), from a seed
                # taken from the step generator, so the views follow the checkpointed RNG state.
                seed = int(torch.randint(1 << 62, (1,), generator=generator))
                x_motion = motion_view(x, torch.Generator(device=x.device).manual_seed(seed), **motion_opts)
            elif torch.is_grad_enabled():
                raise UserError("loss.con_z > 0 needs motion views, but the data has no 'x_motion' (for speech, "
                                "run the motion-augmentation stage) and on-the-fly views exist only for images")
            else:
                # Validation sets often have no converted copies: score them without con_z.
                if not warned:
                    log.warning("no motion views in the validation data: con_z is left out of the validation loss")
                    warned.append(True)
                w = without_motion
        loss, terms = cdsvae_loss(model, x, x_content, x_motion, w, dataset_size, content_index=order)
        terms = {k: v for k, v in terms.items() if k != "loss"}
        return loss, terms

    return loss_fn


# best.pt is the checkpoint with the lowest validation negative ELBO (reconstruction + KL terms,
# unweighted): the contrastive and MI terms differ between systems, the ELBO does not.
SELECTION_CRITERION = ("neg_elbo", ("recon", "kl_s", "kl_z"))


@torch.no_grad()
def recon_consistency(model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction error of ``batch["x"]`` (per sequence) in eval mode and in train mode.

    Both decode the posterior means, so the only difference is batch normalisation: running
    averages in eval mode, the batch's own statistics in train mode. Parameters, buffers
    (running averages included) and the mode are left as they were.
    """
    x = batch["x"]
    was_training = model.training
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    errors = []
    try:
        for training in (False, True):
            model.train(training)
            recon = model(x, sample=False).recon
            errors.append(nn.functional.mse_loss(recon.float(), x.float(), reduction="sum") / x.shape[0])
    finally:
        for buf, saved in buffers:
            buf.copy_(saved)
        model.train(was_training)
    return errors[0], errors[1]


def _check_existing_run(outdir: Path, cfg: Mapping[str, Any]) -> None:
    """A directory with checkpoints of another model/objective/data is not silently continued."""
    prev_file = outdir / CONFIG_FILE
    if not prev_file.is_file() or not ckpt.list_step_checkpoints(outdir / "checkpoints"):
        return
    prev = read_yaml(prev_file)
    changed = inputs.config_changes(prev, cfg)
    if changed:
        raise UserError(f"{outdir} holds a run with another config ({'; '.join(changed)}); "
                        f"{inputs.restart_hint(outdir)}")
    changed = inputs.config_changes(prev, cfg, ("train",))
    if changed:
        log.warning("resuming with changed train options: %s", "; ".join(changed))


def check_run_inputs(cfg: Mapping[str, Any], outdir: str | os.PathLike) -> dict[str, Any]:
    """Refuse ``outdir`` when its checkpoints were trained with another config or on other inputs.

    ``cfg`` is checked and has absolute data paths (:func:`cdsvae.train.inputs.absolute_data_paths`);
    returns the fingerprint of its inputs.
    """
    outdir = Path(outdir)
    _check_existing_run(outdir, cfg)
    fp = inputs.fingerprint(cfg)
    inputs.check_resume(outdir, fp, bool(ckpt.list_step_checkpoints(outdir / "checkpoints")))
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
    processes (:func:`cdsvae.train.trainer.check_global_batch`), before any process starts."""
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
        inputs.write_inputs(outdir, fp)
        inputs.copy_cmvn(outdir, cfg["data"])
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
    """Train a checked config (:func:`load_train_config`, :func:`check_config`) into DIR: set up the
    process, write DIR/config.yaml (data paths made absolute), and train (resuming from DIR when it
    holds checkpoints of the same config and inputs)."""
    cfg = inputs.absolute_data_paths(cfg)
    ctx = setup_process(cfg["train"], outdir)
    try:
        return build_trainer(cfg, outdir, ctx).fit()
    finally:
        shutdown(ctx)


def load_config_file(exp_dir: str | os.PathLike) -> dict[str, Any]:
    """The resolved config of a training directory, with ``data.cmvn`` at the directory's own copy."""
    path = Path(exp_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{path}: no such file; is {exp_dir} a training directory (cdsvae.bin.train --outdir)?")
    cfg = check_config(read_yaml(path), str(path))
    if cfg["data"].get("cmvn") is not None:
        cfg["data"]["cmvn"] = inputs.experiment_cmvn(exp_dir, cfg["data"])
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


__all__ = ["config_schema", "check_config", "load_train_config", "check_run_inputs", "load_model",
           "load_model_with_info", "checkpoint_summary", "recon_consistency", "train", "build_trainer", "make_loss_fn"]
