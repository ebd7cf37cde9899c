"""The optimiser step every model of the package trains with, and the epochs of the small ones.

:class:`StepLoop` is what happens between one loss and the next: the backward pass (through a
GradScaler under fp16), the gradient norm and its clipping, the optimiser and schedule steps.
:class:`~cdsvae.train.trainer.Trainer` calls :meth:`StepLoop.step` and keeps the figures of its
steps on the device (:mod:`cdsvae.train.stepstats`).

The judges and recognisers of the evaluation (small models, data in memory, resumed epoch by
epoch from a checkpoint of their own) run their epochs through :class:`EpochRun`: the same step,
plus what the trainer reports, namely a progress bar, a non-finite check of every step (the loss
before the optimiser step, the gradient norm after it: a diverged step is never saved) and
TensorBoard scalars in ``DIR/tensorboard``. Those without a checkpoint format of their own keep
one in :class:`EpochCheckpoint`: the states of the model, the optimiser and the random generators
after each epoch, so a resumed run continues the very streams of the killed one.
:func:`seeded_epoch` seeds an epoch's global RNGs
from the run's seed, as a function of the epoch alone, so a run resumed after epoch k gives the
weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from tqdm import tqdm

from cdsvae.errors import UserError
from cdsvae.io import atomic_open
from cdsvae.train.seeding import derive_seed

log = logging.getLogger("cdsvae.train")
CHECKPOINT = "checkpoint.pt"

# One step of a small model: batch -> (loss, the batch's weight in the epoch means, sums of other figures).
StepFn = Callable[[Any], tuple[torch.Tensor, int, Mapping[str, float]]]


class TrainingDiverged(UserError):
    """A non-finite loss or gradient: training stops before the optimiser step."""


class StepLoop:
    """Backward, clip and step ``optimizer`` over ``params``.

    ``grad_clip``: the largest gradient norm (None or <= 0: no clipping; the norm is measured either
    way). ``scaler``: a GradScaler (fp16 loss scaling; a disabled one is a plain step).
    ``scheduler``: stepped after every optimiser step.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], optimizer: torch.optim.Optimizer, *,
                 grad_clip: float | None = None, scaler: torch.amp.GradScaler | None = None,
                 scheduler: Any = None):
        self.params = list(params)
        self.optimizer, self.scaler, self.scheduler = optimizer, scaler, scheduler
        clip = float(grad_clip or 0.0)
        self.max_norm = clip if clip > 0 else float("inf")

    def step(self, loss: torch.Tensor) -> torch.Tensor:
        """One optimiser step on ``loss``; returns the gradient norm before clipping, (1,) on the device."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # no-op unless fp16: the norm and the clipping see true gradients
        else:
            loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, max_norm=self.max_norm)
        with warnings.catch_warnings():  # fp16: a first step the scaler skips upsets the scheduler's order check
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
            if self.scaler is not None:
                self.scaler.step(self.optimizer)  # optimizer.step(), unless fp16 found an overflow
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.scheduler is not None:
                self.scheduler.step()
        return gnorm.detach().float().reshape(1)


@contextlib.contextmanager
def seeded_epoch(seed: int, epoch: int, device: torch.device | str) -> Iterator[None]:
    """Inside the block, torch's global generators (the CPU's and ``device``'s) are seeded from
    ``(seed, "epoch", epoch)``; the caller's are restored after it."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(seed, "epoch", epoch))
        yield


class EpochRun:
    """The epochs ``start`` .. ``epochs - 1`` of a small model, ``steps_per_epoch`` steps each.

    ``name`` labels the progress bar and the errors; with ``logdir``, TensorBoard scalars go to
    ``logdir/tensorboard`` (per step ``train/loss`` and ``train/grad_norm``, per epoch what
    :meth:`end_epoch` is given); ``checkpoint`` is named when training diverges.
    """

    def __init__(self, steps: StepLoop, name: str, epochs: int, start: int, steps_per_epoch: int, *,
                 logdir: str | Path | None = None, progress: bool = False, checkpoint: str | Path | None = None):
        self.steps, self.name, self.epochs, self.checkpoint = steps, name, epochs, checkpoint
        self.step_count = steps_per_epoch * start
        self.bar = tqdm(total=steps_per_epoch * epochs, initial=self.step_count, desc=name, unit="step",
                        disable=not (progress and sys.stderr.isatty()), leave=False, dynamic_ncols=True)
        self.writer = None
        if logdir is not None:
            from torch.utils.tensorboard import SummaryWriter  # seconds of start-up: only when used

            # purge_step drops the events logged past this point by an earlier (killed or replaced) run
            self.writer = SummaryWriter(str(Path(logdir) / "tensorboard"), purge_step=self.step_count)

    def run_epoch(self, epoch: int, batches: Iterable[Any], step_fn: StepFn) -> dict[str, float]:
        """Train on ``batches``; returns the epoch's weighted mean ``loss`` and the other figures
        ``step_fn`` summed, divided by the summed weights."""
        self.steps.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {"loss": 0.0}
        seen = 0
        for batch in batches:
            loss, weight, figures = step_fn(batch)
            self.step_count += 1
            value = loss.item()
            if not math.isfinite(value):
                self._diverged(f"loss = {value}", epoch)
            gnorm = float(self.steps.step(loss))
            if not math.isfinite(gnorm):
                self._diverged(f"gradient norm = {gnorm}", epoch)
            sums["loss"] += value * weight
            for k, v in figures.items():
                sums[k] = sums.get(k, 0) + v
            seen += weight
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{value:.3f}", refresh=False)
            self.scalars("train", {"loss": value, "grad_norm": gnorm})
        return {k: v / max(seen, 1) for k, v in sums.items()}

    def _diverged(self, what: str, epoch: int) -> None:
        good = self.checkpoint if self.checkpoint is not None and Path(self.checkpoint).is_file() else "none"
        self.close()
        raise TrainingDiverged(f"{self.name}: non-finite {what} at step {self.step_count} (epoch {epoch + 1}); "
                               f"training stopped without saving the steps since, last good checkpoint: {good}")

    def scalars(self, prefix: str, values: Mapping[str, Any], step: int | None = None) -> None:
        """TensorBoard scalars (the numbers among ``values``) at ``step`` (default: the current one)."""
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(f"{prefix}/{k}", v, self.step_count if step is None else step)

    def end_epoch(self, record: Mapping[str, Any]) -> None:
        """Report an epoch's figures (``record``, e.g. the history entry) to TensorBoard."""
        self.scalars("epoch", record)
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class EpochCheckpoint:
    """``workdir/checkpoint.pt`` of a model trained epoch by epoch (no file without ``workdir``).

    It holds the state of every entry of ``parts`` (modules and optimisers), of every generator in
    ``generators`` and of torch's global CPU generator, the epochs done and the history. It is
    resumed only when its ``stamp`` (what training depends on, the number of epochs aside: a
    JSON-able mapping) is this one and it is not past the epochs asked for; otherwise training
    starts afresh and overwrites it.
    """

    def __init__(self, workdir: str | Path | None, stamp: Mapping[str, Any], parts: Mapping[str, Any],
                 generators: Mapping[str, torch.Generator]):
        self.path = Path(workdir) / CHECKPOINT if workdir is not None else None
        self.stamp = json.loads(json.dumps(stamp, sort_keys=True, default=str))
        self.parts, self.generators = dict(parts), dict(generators)

    def resume(self, epochs: int) -> tuple[int, list]:
        """Restore the checkpoint if it fits: (epochs done, history); (0, []) when starting afresh."""
        if self.path is None or not self.path.is_file():
            return 0, []
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated or foreign: say which file, and the way out
            raise UserError(f"{self.path}: unreadable checkpoint ({e.__class__.__name__}); "
                            f"remove it to train afresh") from None
        if state.get("stamp") != self.stamp or int(state["epoch"]) > epochs:
            log.info("%s: made with other options or data, or past %d epochs; training afresh", self.path, epochs)
            return 0, []
        for name, part in self.parts.items():
            part.load_state_dict(state["parts"][name])
        for name, gen in self.generators.items():
            gen.set_state(state["rng"][name])
        torch.set_rng_state(state["rng"]["torch"])
        log.info("%s: resuming after epoch %d", self.path, int(state["epoch"]))
        return int(state["epoch"]), list(state["history"])

    def save(self, epoch: int, history: list) -> None:
        """Write the state after ``epoch`` epochs (atomically); nothing without a workdir."""
        if self.path is None:
            return
        parts = {name: _cpu(part.state_dict()) for name, part in self.parts.items()}
        rng = {**{name: gen.get_state() for name, gen in self.generators.items()}, "torch": torch.get_rng_state()}
        with atomic_open(self.path, "wb") as f:  # a kill leaves the previous checkpoint or this one
            torch.save({"stamp": self.stamp, "epoch": epoch, "history": list(history), "parts": parts, "rng": rng}, f)


def _cpu(state: Any) -> Any:
    """A state dict with its tensors copied to the CPU (optimiser states nest them)."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().clone()
    if isinstance(state, Mapping):
        return {k: _cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_cpu(v) for v in state)
    return state
