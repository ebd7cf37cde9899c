"""One training loop for a laptop CPU, one GPU, N GPUs and N nodes: the process set-up and the
loop (steps, divergence checks, checkpoint cadence).

The trainer is generic: it takes a model and a loss function
``loss_fn(model, batch, generator) -> (loss, terms)`` (``terms`` a dict of scalar tensors that
are logged), so the C-DSVAE specifics live in :mod:`cdsvae.experiment`. What it delegates:
its options, the optimiser and schedule (:mod:`~cdsvae.train.optim`), seeds, the epoch order and
the batches (:mod:`~cdsvae.train.batches`), validation, the eval/train check and reports
(:mod:`~cdsvae.train.monitor`), checkpoints and resumption (:mod:`~cdsvae.train.resume`).

Launching, on one or many processes and nodes: :mod:`cdsvae.bin.train`.

Semantics worth knowing:

- ``train.batch_size`` is per process; the global batch is ``batch_size * world_size`` and is
  logged. Gradients are averaged over processes (DDP), so N processes with batch B take the same
  step as one process with batch N*B whenever the loss is a mean of per-sequence terms and the
  model has no batch statistics (no BatchNorm).
- Batch-level terms (the contrastive NT-Xent terms and the minibatch-weighted MI estimate) are
  computed over the per-process batch, as SimCLR does without gathering negatives: with N
  processes each term sees B negatives, not N*B.
- Every process draws the same permutation per epoch (DistributedSampler, ``set_epoch``) and
  takes every N-th index; one global step consumes a contiguous block of ``N*B`` indices of that
  permutation, which is why the position within an epoch can be stored as a sample count.
- With ``train.unique_utts_per_batch`` true and a training set that has an ``item_groups()`` method (the
  utterance of each speech segment), the permutation is replaced by one in which no global
  batch holds two items of a group (:mod:`cdsvae.train.batches`); it is cut the same way.
- A killed run restarted with the same command ends with the parameters an uninterrupted run
  would have had (:mod:`cdsvae.train.resume`); a dataset with a ``set_epoch`` method is told
  the epoch before each pass.
- A step reads nothing back from the device: the loss, its terms and the gradient norm are summed
  there (:mod:`cdsvae.train.steploop`) and read every ``train.log_every`` steps, at the end of an
  epoch and before a checkpoint is written. A non-finite loss or term (or gradient norm) stops
  training at that read, naming the term and the step it first appeared at; the steps after it
  are not saved, so the last checkpoint stays good.
- ``train.amp``: ``bf16`` autocast, or ``fp16`` autocast with a GradScaler (an overflowing step is
  skipped and the scale lowered; its state is checkpointed). ``train.channels_last`` (default: on
  CUDA) stores the model's 4-D weights channels-last, as convolutions on tensor cores prefer.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from cdsvae.config import to_plain
from cdsvae.io import UserError
from cdsvae.models.frames import decide_invertibility
from cdsvae.train.batches import (Batches, ResumableDistributedSampler, UniqueGroupSampler, check_global_batch,
                                  derive_seed, seed_everything, set_deterministic)
from cdsvae.train.distributed import DistContext, init_distributed
from cdsvae.train.monitor import ConsistencyFn, Monitor, Validator, setup_logging
from cdsvae.train.optim import OPTIM, TRAIN, build_optimizer, match_state_layouts
from cdsvae.train.resume import (carried_best, load_run, load_weights, restore_streams, resume_position,
                                 save_run, training_finished)
from cdsvae.train.steploop import StepLoop, StepStats, TrainingDiverged  # noqa: F401  (TrainingDiverged: re-exported)

log = logging.getLogger("cdsvae.train")

def setup_process(train_opts: Mapping[str, Any], outdir: str | os.PathLike) -> DistContext:
    """What a training process sets up once, before it builds anything: deterministic kernels
    (before any CUDA work), the process group and device (``train.device``), and logging
    (rank 0: console and DIR/train.log). Whoever owns the process calls it, then builds the
    Trainer; :func:`cdsvae.train.distributed.shutdown` ends the process group."""
    set_deterministic(bool(train_opts["deterministic"]))
    ctx = init_distributed(train_opts["device"])
    setup_logging(Path(outdir), ctx.is_main)
    return ctx


LossFn = Callable[[nn.Module, Mapping[str, Any], torch.Generator], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]


class _LossModule(nn.Module):
    """Puts the whole loss inside ``forward`` so DDP sees every use of the model.

    The loss calls model methods other than ``forward`` (encode for the augmented views); DDP
    only prepares its gradient reduction inside the wrapped module's ``forward``.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Mapping[str, Any], generator: torch.Generator):
        return self.loss_fn(self.model, batch, generator)


class Trainer:
    """Fit ``model`` with ``loss_fn`` on ``train_set``; validate on ``valid_set`` each epoch.

    ``config`` is the resolved config: its ``optim`` and ``train`` sections drive the loop (keys
    it leaves out take their declared defaults) and the whole dict is stored in every
    checkpoint. The process must be set up first (:func:`setup_process`).

    ``criterion = (name, terms)`` chooses ``best.pt``: the validation sum of those logged terms;
    without it, the validation loss. ``consistency_fn`` checks after every epoch that the
    model in eval mode reproduces training on fixed batches (:class:`~cdsvae.train.monitor.Validator`).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, train_set: Dataset, valid_set: Dataset | None,
                 config: Mapping[str, Any], outdir: str | os.PathLike, ctx: DistContext | None = None,
                 collate_fn: Callable | None = None, criterion: tuple[str, Sequence[str]] | None = None,
                 consistency_fn: ConsistencyFn | None = None):
        self.ctx = ctx or DistContext()
        self.config = to_plain(config)
        self.topt = {**TRAIN.defaults(), **config.get("train", {})}
        self.oopt = {**OPTIM.defaults(), **config.get("optim", {})}
        self.outdir = Path(outdir)
        self.ckpt_dir = self.outdir / "checkpoints"
        self.train_set, self.valid_set = train_set, valid_set
        self.device = self.ctx.device
        t = self.topt
        self.seed = int(t["seed"])
        self.batch_size = int(t["batch_size"])
        self.global_batch = self.batch_size * self.ctx.world_size
        self.batches = Batches(self.device, int(t["num_workers"]), collate_fn, t["amp"])

        self.model = model.to(self.device)
        if t["channels_last"] if t["channels_last"] is not None else self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)  # 4-D weights only; others are left as they are
        self.amp = str(t["amp"])
        forward_model = torch.compile(self.model) if t["compile"] else self.model
        self.loss_module = _LossModule(forward_model, loss_fn)
        if self.ctx.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_module: nn.Module = DistributedDataParallel(
                self.loss_module, device_ids=ids, find_unused_parameters=bool(t["find_unused_parameters"]))
        else:
            self.step_module = self.loss_module

        self.sampler = self._make_sampler(train_set, bool(t["unique_utts_per_batch"]))
        self.steps_per_epoch = self.sampler.num_samples // self.batch_size
        self.total_steps = int(t["epochs"]) * self.steps_per_epoch
        if t["max_steps"] is not None:
            self.total_steps = min(self.total_steps, int(t["max_steps"]))
        self.optimizer, self.scheduler = build_optimizer(self.model.parameters(), self.oopt, self.total_steps,
                                                         self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.steps = StepLoop(self.model.parameters(), self.optimizer, grad_clip=self.oopt["grad_clip"],
                              scaler=self.scaler, scheduler=self.scheduler)
        self.validation = Validator(self.model, self.loss_module, train_set, valid_set, self.ctx, self.batch_size,
                                    self.batches, criterion, consistency_fn)
        self.criterion_name = self.validation.criterion_name
        self.monitor = Monitor(self.outdir, self.ctx.is_main, bool(t["tensorboard"]), int(t["epochs"]),
                               self.total_steps)
        self.history = self.monitor.history  # what was logged, for benchmarks and tests

        # Per-rank streams: augmentations draw from `aug_gen`; the model's own sampling from the
        # global RNG. Both are saved per rank in checkpoints.
        seed_everything(derive_seed(self.seed, "rank", self.ctx.rank) % (1 << 32))
        # A CPU generator: views are drawn on the CPU so a seed gives the same views on any device.
        self.aug_gen = torch.Generator().manual_seed(derive_seed(self.seed, "augment", self.ctx.rank))

        self.epoch = 0
        self.step = 0
        self.samples_in_epoch = 0
        self.best_valid: float | None = None
        self.last_ckpt: Path | None = None

    def _make_sampler(self, train_set: Dataset, unique_groups: bool):
        check_global_batch(train_set, self.batch_size, self.ctx.world_size, unique_groups)
        groups = getattr(train_set, "item_groups", None) if unique_groups else None
        if groups is None:
            return ResumableDistributedSampler(train_set, self.ctx.world_size, self.ctx.rank, seed=self.seed)
        try:
            sampler = UniqueGroupSampler(groups(), self.batch_size, self.ctx.world_size, self.ctx.rank, self.seed)
        except ValueError as e:
            raise UserError(f"train.unique_utts_per_batch: {e}; lower train.batch_size or set "
                            f"train.unique_utts_per_batch false") from None
        log.info("training batches hold at most one segment per utterance (%d utterances, global batch %d)",
                 np.unique(sampler.groups).size, self.global_batch)
        return sampler

    def validate(self) -> dict[str, float]:
        """Mean loss and terms over the validation set (see :meth:`Validator.validate`)."""
        return self.validation.validate()

    def _state(self, valid: Mapping[str, float] | None) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": {"epoch": self.epoch, "step": self.step, "samples_in_epoch": self.samples_in_epoch},
            "best_valid": self.best_valid,
            "criterion": self.criterion_name,
            "valid": dict(valid or {}),
            "world_size": self.ctx.world_size,
            "batch_size": self.batch_size,
            "config": self.config,
        }

    def save(self, valid: Mapping[str, float] | None = None, best: bool = False) -> None:
        """Collective: a step checkpoint (and ``best.pt``) with ``valid``, this step's validation
        results, so which checkpoint was chosen, and why, can be reported later."""
        self.last_ckpt = save_run(self.ctx, self.ckpt_dir, self.step, lambda: self._state(valid),
                                  {"augment": self.aug_gen}, self.device, int(self.topt["keep_last"]), best)

    def resume(self) -> bool:
        """Restore the newest readable checkpoint in DIR/checkpoints, if any."""
        found = load_run(self.ctx, self.ckpt_dir)
        if found is None:
            return False
        path, state = found
        load_weights(self.model, state["model"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        match_state_layouts(self.optimizer)  # a checkpoint of another layout (CPU, channels_last false)
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best_valid = carried_best(state, self.criterion_name, path)
        self.epoch, self.step, self.samples_in_epoch = resume_position(state["progress"], self.ctx)
        restore_streams(state["rng"], self.ctx, {"augment": self.aug_gen}, self.device, path)
        self.last_ckpt = Path(path)
        log.info("resumed from %s: epoch %d, step %d, %d samples into the epoch",
                 path, self.epoch, self.step, self.samples_in_epoch)
        return True

    def _finished(self) -> bool:
        return training_finished(self.epoch, self.step, self.topt)

    def fit(self) -> dict[str, Any]:
        """Train until ``train.epochs`` (or ``train.max_steps``); returns a short summary."""
        t = self.topt
        resumed = self.resume()
        if self._finished():
            log.info("nothing to do: training already finished (epoch %d, step %d)", self.epoch, self.step)
            self.monitor.finished(self.epoch, self.step, earlier=True)
            return self.summary()
        ctx = self.ctx
        log.info("training on %s%s: %d process(es)%s, batch %d per process, global batch %d, "
                 "%d steps per epoch, %d epochs%s", self.device,
                 "" if self.amp == "none" else f" ({self.amp} autocast)", ctx.world_size,
                 f" ({ctx.backend})" if ctx.backend else "", self.batch_size, self.global_batch,
                 self.steps_per_epoch, int(t["epochs"]),
                 f", at most {t['max_steps']} steps" if t["max_steps"] is not None else "")
        if self.amp != "none" and self.device.type == "cpu":
            log.warning("train.amp %s on the CPU: autocast runs there too, usually slower than float32 "
                        "(--train.amp none turns it off)", self.amp)
        self.monitor.start(self.step, resumed)
        try:
            while not self._finished():
                complete = self._train_epoch()
                valid, score = self.validation.after_epoch(self.step, self.epoch, complete)
                if valid:
                    self.monitor.scalars("valid", valid, self.step)
                best = (score is not None and math.isfinite(score)
                        and (self.best_valid is None or score < self.best_valid))
                if best:
                    self.best_valid = score
                if complete:
                    self.epoch += 1
                    self.samples_in_epoch = 0
                self.save(valid, best=best)
        finally:
            self.monitor.close()
        log.info("finished: epoch %d, step %d, best validation %s %s", self.epoch, self.step, self.criterion_name,
                 "n/a" if self.best_valid is None else f"{self.best_valid:.6g}")
        self.monitor.finished(self.epoch, self.step)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "best_valid": self.best_valid,
                "last_checkpoint": str(self.last_ckpt) if self.last_ckpt else None}

    def _check_finite(self, stats: StepStats) -> None:
        """Raise :class:`TrainingDiverged` when a step of the window had a non-finite figure."""
        found = stats.divergence(self.ctx)
        if found is None:
            return
        good = self.last_ckpt if self.last_ckpt is not None else "none written yet"
        seen = "" if found.step == self.step else f", read at step {self.step}"
        msg = (f"non-finite {found.describe()} at step {found.step} (epoch {self.epoch + 1}){seen}; training "
               f"stopped without saving the steps since, last good checkpoint: {good}")
        log.error(msg, extra={"console": False})  # the entry point prints it once
        raise TrainingDiverged(msg)

    def _step(self, batch: Any) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """One optimiser step: (loss and terms as a float32 row, their names, the gradient norm), on the device."""
        with self.batches.autocast():
            loss, terms = self.step_module(batch, self.aug_gen)
        names = sorted(terms)
        row = torch.stack([loss.detach().float()] +
                          [torch.as_tensor(terms[k], device=self.device).detach().float().reshape(()) for k in names])
        return row, names, self.steps.step(loss)  # backward, clipping, optimiser and schedule steps

    def _log(self, stats: StepStats, lr: float, tic: float, bar) -> float:
        """Check and log the window of steps that ends here; returns the time the next one starts."""
        self._check_finite(stats)
        n = stats.count
        values = stats.take(self.ctx)  # the one host read of the window
        elapsed = time.perf_counter() - tic
        if self.scaler.is_enabled():
            values["amp_scale"] = self.scaler.get_scale()
        values = {**values, "lr": lr, "seq_per_s": n * self.global_batch / max(elapsed, 1e-9)}
        bar.set_postfix({k: f"{v:.3g}" for k, v in values.items() if k in stats.terms or k == "loss"})
        self.monitor.train_step(self.epoch, self.step, values)
        decide_invertibility(self.model)
        return time.perf_counter()

    def _train_epoch(self) -> bool:
        """Run the rest of the current epoch; False when stopped early by ``max_steps``."""
        t = self.topt
        max_steps = t["max_steps"]
        ckpt_every = int(t["ckpt_every_steps"])
        log_every = max(1, int(t["log_every"]))
        self.sampler.set_position(self.epoch, self.samples_in_epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        loader = self.batches.loader(
            self.train_set, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
            generator=torch.Generator().manual_seed(derive_seed(self.seed, "loader", self.epoch)))
        self.model.train()
        decide_invertibility(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        bar = self.monitor.bar(self.samples_in_epoch // self.global_batch, self.steps_per_epoch, self.epoch)
        stats: StepStats | None = None
        tic = time.perf_counter()
        try:
            for batch in loader:
                batch = self.batches.to_device(batch)
                lr = self.optimizer.param_groups[0]["lr"]
                row, names, gnorm = self._step(batch)
                if stats is None:
                    stats = StepStats(names, self.scaler.is_enabled(), self.device, self.step)
                stats.add(row, gnorm)
                self.step += 1
                self.samples_in_epoch += self.global_batch
                bar.update(1)
                stop = max_steps is not None and self.step >= int(max_steps)
                last_in_epoch = self.samples_in_epoch // self.global_batch >= self.steps_per_epoch
                if self.step % log_every == 0 or stop or last_in_epoch:
                    tic = self._log(stats, lr, tic, bar)
                elif ckpt_every > 0 and self.step % ckpt_every == 0:  # what _log does, before a checkpoint
                    self._check_finite(stats)
                    decide_invertibility(self.model)
                if stop:
                    return last_in_epoch
                if ckpt_every > 0 and self.step % ckpt_every == 0 and not last_in_epoch:
                    self.save()
        finally:
            bar.close()
        return True
