"""The optimiser step every model of the package trains with, and the epochs of the small ones.

:class:`StepLoop` is what happens between one loss and the next: the backward pass (through a
GradScaler under fp16), the gradient norm and its clipping, the optimiser and schedule steps.
:class:`~cdsvae.train.trainer.Trainer` calls :meth:`StepLoop.step` and keeps the figures of its
steps on the device (:class:`StepStats`).

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

The figures of each training step (loss, its terms, gradient norm) are kept on the device by :class:`StepStats`.

Adding a step costs a few small kernels and no host read; the figures are read at log points,
once for many steps. Reading a loss every step (``.item()``, ``bool(torch.isfinite(...))``) would
make the host wait for the GPU to finish each step before it could queue the next.

Non-finite values are tracked on the device too: the first step of the window whose loss, terms
or gradient norm were not finite, and that step's figures, so a divergence is reported with the
step it happened at, however late it is read. Under fp16 loss scaling an overflowing gradient
only makes the GradScaler skip the step: such steps are counted (``amp_skipped_steps``), not
treated as a divergence, and left out of the mean gradient norm.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
from tqdm import tqdm

from cdsvae.io import UserError, atomic_open
from cdsvae.train.batches import derive_seed
from cdsvae.train.distributed import DistContext, all_gather_object, all_reduce_mean

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


_NONE = 1 << 62  # "no non-finite step yet": larger than any step index


@dataclass(frozen=True)
class Divergence:
    """The first non-finite step of a window: its 1-based global step, the loss then, and the
    other figures (terms, ``grad_norm``) that were not finite (name -> value)."""

    step: int
    loss: float
    bad: dict[str, float]

    def describe(self) -> str:
        """What went non-finite, naming the terms: they are the cause when the loss is not finite."""
        terms = {k: v for k, v in self.bad.items() if k != "grad_norm"}
        if len(terms) == 1:
            (name, value), = terms.items()
            return f"loss term '{name}' = {value}"
        if terms:
            return f"loss terms {', '.join(f'{k!r} = {v}' for k, v in terms.items())}"
        if not math.isfinite(self.loss):
            return f"loss (weighted sum of finite terms) = {self.loss}"
        return f"gradient norm = {self.bad['grad_norm']}"


class StepStats:
    """Running sums of per-step figures over a window of steps, on the device.

    ``terms`` name the loss terms of each step; ``scaled`` says the gradients come from a
    GradScaler (fp16), whose overflows are not divergences. ``start`` is the global step before
    the window's first step.
    """

    def __init__(self, terms: list[str], scaled: bool, device: torch.device, start: int):
        self.terms = list(terms)
        self.scaled = scaled
        self.names = ["loss", *self.terms, "grad_norm"] + (["skipped"] if scaled else [])
        self.checked = len(self.terms) + (1 if scaled else 2)  # leading columns that must be finite
        self.sums = torch.zeros(len(self.names), dtype=torch.float32, device=device)
        self.first = torch.full((), _NONE, dtype=torch.int64, device=device)
        self.first_row = torch.zeros(len(self.names), dtype=torch.float32, device=device)
        self.count = 0
        self.start = start

    def add(self, row: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Add one step: ``row`` the loss and its terms (float32, in ``terms`` order), ``grad_norm`` (1,)."""
        if self.scaled:
            finite = torch.isfinite(grad_norm)
            row = torch.cat([row, torch.where(finite, grad_norm, 0.0), (~finite).float()])
        else:
            row = torch.cat([row, grad_norm])
        new = ~torch.isfinite(row[:self.checked]).all() & (self.first == _NONE)
        self.first = self.first.masked_fill(new, self.count)
        self.first_row = torch.where(new, row, self.first_row)
        self.sums += row
        self.count += 1

    def divergence(self, ctx: DistContext) -> Divergence | None:
        """The window's first non-finite step over all processes, or None. Collective: every rank
        gets the same answer, so all stop together. One host read (more after a divergence)."""
        first = self.first.clone()
        if ctx.distributed:
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
        index = int(first)
        if index == _NONE:
            return None
        rows = [row for i, row in all_gather_object(ctx, (int(self.first), self.first_row.tolist())) if i == index]
        bad: dict[str, float] = {}
        for row in rows:
            for name, value in zip(self.names[1:self.checked], row[1:self.checked]):
                if not math.isfinite(value):
                    bad.setdefault(name, value)
        return Divergence(self.start + index + 1, rows[0][0], bad)

    def take(self, ctx: DistContext) -> dict[str, float]:
        """Mean of each figure over the window's steps and processes (under fp16 the gradient norm
        over the steps taken, and ``amp_skipped_steps``); starts a new window."""
        n = self.count
        values = dict(zip(self.names, all_reduce_mean(ctx, self.sums / max(n, 1)).tolist()))
        if self.scaled:
            skipped = values.pop("skipped") * n
            if n - skipped >= 0.5:
                values["grad_norm"] *= n / (n - skipped)
            else:  # every step skipped: no gradient was used
                del values["grad_norm"]
            values["amp_skipped_steps"] = round(skipped)
        self.start += n
        self.sums.zero_()
        self.first.fill_(_NONE)
        self.count = 0
        return values
