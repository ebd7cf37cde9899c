"""What a run measures after each epoch, and where it reports.

Measures (:class:`Validator`): the validation loss and terms (with the selection criterion of
``best.pt``), and whether the model in eval mode reproduces training. Validation is sharded over
ranks without padding, visits the items in a fixed shuffled order and draws its augmentations
from a fixed seed (:data:`VALID_SEED`, not ``train.seed``), on a forked RNG: it neither perturbs
the training streams nor changes between epochs, seeds or systems except through the parameters,
so every system and seed is validated (and its checkpoint chosen) on the same batches.

Reports (:class:`Monitor`): the ``cdsvae.train`` logger (console and DIR/train.log), the one-line
DIR/progress file, TensorBoard scalars, the progress bar, and the history of what was logged.
Only rank 0 writes files; other ranks print errors only.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from cdsvae.io import UserError, atomic_write_text
from cdsvae.train.batches import Batches, batch_size, derive_seed
from cdsvae.train.distributed import DistContext, all_reduce_sum, broadcast_object

log = logging.getLogger("cdsvae.train")

# (model, batch) -> (reconstruction error in eval mode, the same in train mode), see Validator.
ConsistencyFn = Callable[[nn.Module, Mapping[str, Any]], tuple[torch.Tensor, torch.Tensor]]
# Eval-mode reconstruction more than this many times the train-mode one is warned about.
EVAL_TRAIN_RATIO_LIMIT = 1.25
VALID_SEED = 20211206


def fixed_order(dataset: Dataset) -> np.ndarray:
    """A fixed shuffled order of ``dataset`` (the same for every system and seed).

    Validation batches then mix utterances and speakers, as training batches do, instead
    of holding the consecutive segments of one or two utterances.
    """
    return np.random.default_rng(VALID_SEED).permutation(len(dataset))


class Validator:
    """Validation of ``model`` (through ``loss_module``, which returns ``(loss, terms)``) on ``valid_set``,
    and the eval/train consistency check on fixed batches of ``valid_set`` and ``train_set``.

    ``criterion = (name, terms)``: the criterion value is the validation sum of those terms
    (e.g. the negative ELBO, so that systems trained with different extra terms are chosen
    alike); without it, the validation loss. ``consistency_fn`` (optional) gives the eval-
    and train-mode reconstruction errors of a batch and must leave parameters and buffers as
    they were.
    """

    def __init__(self, model: nn.Module, loss_module: nn.Module, train_set: Dataset, valid_set: Dataset | None,
                 ctx: DistContext, batch_size: int, batches: Batches,
                 criterion: tuple[str, Sequence[str]] | None = None, consistency_fn: ConsistencyFn | None = None):
        self.model, self.loss_module = model, loss_module
        self.train_set, self.valid_set = train_set, valid_set
        self.ctx, self.batch_size, self.batches = ctx, batch_size, batches
        self.criterion_name = criterion[0] if criterion else "loss"
        self.criterion_terms = tuple(criterion[1]) if criterion else ()
        self.consistency_fn = consistency_fn

    def after_epoch(self, step: int, epoch: int, complete: bool) -> tuple[dict[str, float], float | None]:
        """(everything measured, to log and store with the checkpoint; the criterion value or None)."""
        valid = self.validate() if self.valid_set is not None else {}
        score = valid.get(self.criterion_name)
        if valid:
            log.info("validation at step %d (epoch %d%s): %s", step, epoch + 1,
                     "" if complete else ", partial", " ".join(f"{k} {v:.4g}" for k, v in valid.items()))
        if self.consistency_fn is not None:
            valid.update(self.consistency())
            self.check_consistency(valid, step)
        return valid, score

    def valid_order(self) -> np.ndarray:
        assert self.valid_set is not None
        return fixed_order(self.valid_set)

    def _rng_devices(self) -> list[int]:
        device = self.batches.device
        return [device.index or 0] if device.type == "cuda" else []

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss and terms over the validation set, sharded over ranks, without padding.

        The items are visited in a fixed shuffled order and the augmentation draws come from a
        fixed seed (:data:`VALID_SEED`, not ``train.seed``), on a forked RNG. With a criterion,
        its value is added under its name.
        """
        assert self.valid_set is not None
        device = self.batches.device
        order = self.valid_order()
        mine = order[self.ctx.rank::self.ctx.world_size]
        n_batches = max(1, math.ceil(len(mine) / self.batch_size))
        batches = [b.tolist() for b in np.array_split(mine.astype(np.int64), n_batches) if len(b)]
        loader = self.batches.loader(self.valid_set, batch_sampler=batches)
        self.model.eval()
        names: list[str] | None = None
        total: torch.Tensor | None = None
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(derive_seed(VALID_SEED, "valid", self.ctx.rank) % (1 << 63))
            gen = torch.Generator().manual_seed(derive_seed(VALID_SEED, "valid-augment", self.ctx.rank))
            for batch in loader:
                batch = self.batches.to_device(batch)
                with self.batches.autocast():
                    loss, terms = self.loss_module(batch, gen)
                if names is None:
                    names = sorted(terms)
                size = float(batch_size(batch))
                row = torch.stack([loss.detach().float()] +
                                  [torch.as_tensor(terms[k], device=device).detach().float().reshape(())
                                   for k in names] + [torch.ones((), device=device)]) * size
                total = row if total is None else total + row
        self.model.train()
        # Ranks whose shard is empty still join the reduction with zeros.
        width = broadcast_object(self.ctx, len(names) + 2 if names is not None else 0)
        names = broadcast_object(self.ctx, names)
        if not width:
            return {}
        if total is None:
            total = torch.zeros(width, device=device)
        all_reduce_sum(self.ctx, total)
        count = total[-1].item()
        means = (total[:-1] / max(count, 1.0)).tolist()
        out = {"loss": means[0], **dict(zip(names, means[1:]))}
        if self.criterion_terms:
            missing = [k for k in self.criterion_terms if k not in out]
            if missing:
                raise UserError(f"the selection criterion {self.criterion_name} needs the validation term(s) "
                                f"{', '.join(missing)}, which the loss does not report")
            out[self.criterion_name] = sum(out[k] for k in self.criterion_terms)
        return out

    def _consistency_sources(self) -> list[tuple[str, str, Dataset]]:
        """(key suffix, name, dataset) of the fixed batches checked: validation first when there is one."""
        sources = []
        if self.valid_set is not None:
            sources.append(("", "validation", self.valid_set))
        sources.append(("_train" if sources else "", "training", self.train_set))
        return sources

    def consistency(self) -> dict[str, float]:
        """Eval- and train-mode reconstruction of fixed batches, and their ratios.

        Each batch is the first ``batch_size`` items of a fixed order of the validation set
        (keys ``recon_eval_mode``, ``recon_train_mode``, ``eval_train_ratio``) and of the
        training set (the same keys with ``_train``; without a validation set, the training
        batch takes the plain keys). On training data a ratio near 1 says the running
        statistics describe the data the model was trained on; on validation data it may also
        fall below 1, because a batch of other speakers normalised with its own statistics is
        shifted away from what the model learnt. Every rank computes it (no collective), on a
        forked RNG so the check never changes training.
        """
        assert self.consistency_fn is not None
        out: dict[str, float] = {}
        with torch.random.fork_rng(devices=self._rng_devices()):
            for suffix, _, dataset in self._consistency_sources():
                items = fixed_order(dataset)[: self.batch_size].tolist()
                loader = self.batches.loader(dataset, batch_sampler=[items])
                batch = self.batches.to_device(next(iter(loader)))
                with torch.no_grad(), self.batches.autocast():
                    eval_err, train_err = self.consistency_fn(self.model, batch)
                eval_err, train_err = float(eval_err), float(train_err)
                out[f"recon_eval_mode{suffix}"] = eval_err
                out[f"recon_train_mode{suffix}"] = train_err
                out[f"eval_train_ratio{suffix}"] = eval_err / train_err if train_err > 0 else math.inf
        return out

    def check_consistency(self, valid: Mapping[str, float], step: int) -> None:
        """Log the ratios of :meth:`consistency`; warn about one above :data:`EVAL_TRAIN_RATIO_LIMIT`."""
        parts, bad = [], []
        for suffix, name, _ in self._consistency_sources():
            ratio = valid.get(f"eval_train_ratio{suffix}")
            if ratio is None:
                continue
            parts.append(f"{ratio:.3f} on a fixed {name} batch (reconstruction in eval mode "
                         f"{valid[f'recon_eval_mode{suffix}']:.4g}, in train mode {valid[f'recon_train_mode{suffix}']:.4g})")
            if not ratio <= EVAL_TRAIN_RATIO_LIMIT:
                bad.append(f"{name} batch {ratio:.2f} times")
        if parts:
            log.info("eval/train ratio at step %d: %s", step, "; ".join(parts))
        if bad:
            log.warning("eval mode reconstructs a fixed %s worse than train mode (limit %.2f): the batch-norm "
                        "running statistics do not describe the trained model, so every number measured in eval "
                        "mode is suspect", " and ".join(bad), EVAL_TRAIN_RATIO_LIMIT)


# DIR/progress: one line (epoch, step, loss, ETA) rewritten at every log step, read by the recipes.
PROGRESS_FILE = "progress"


def format_duration(seconds: float) -> str:
    """12s, 4m05s, 3h07m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _TqdmHandler(logging.StreamHandler):
    """Log lines that do not tear the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(outdir: Path | None, is_main: bool) -> None:
    """Rank 0 logs INFO to stderr and DIR/train.log; other ranks print errors only."""
    for h in [h for h in log.handlers if getattr(h, "_cdsvae", False)]:
        log.removeHandler(h)
        h.close()
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = _TqdmHandler()
    console.setLevel(logging.INFO if is_main else logging.ERROR)
    console.addFilter(lambda record: getattr(record, "console", True))
    console.setFormatter(fmt)
    console._cdsvae = True  # type: ignore[attr-defined]
    log.addHandler(console)
    if is_main and outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(outdir / "train.log", encoding="utf-8")
        fh.setFormatter(fmt)
        fh._cdsvae = True  # type: ignore[attr-defined]
        log.addHandler(fh)


class Monitor:
    """The reports of one run of ``total_steps`` steps over ``epochs`` epochs, written to ``outdir``."""

    def __init__(self, outdir: Path, is_main: bool, tensorboard: bool, epochs: int, total_steps: int):
        self.outdir, self.is_main, self.tensorboard = Path(outdir), is_main, tensorboard
        self.epochs, self.total_steps = epochs, total_steps
        self.writer = None
        self.history: list[dict[str, float]] = []  # what was logged, for benchmarks and tests
        self._start, self._step0 = time.perf_counter(), 0

    def start(self, step: int, resumed: bool) -> None:
        """Open TensorBoard (rank 0, when asked for) and start the clock of the ETA."""
        if self.is_main and self.tensorboard:
            # Imported only when used: it pulls in tensorboard and protobuf, seconds of start-up.
            from torch.utils.tensorboard import SummaryWriter
            # purge_step drops events a killed run logged after its last checkpoint.
            self.writer = SummaryWriter(str(self.outdir / "tensorboard"), purge_step=step if resumed else None)
        self._start, self._step0 = time.perf_counter(), step

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def bar(self, initial: int, steps: int, epoch: int) -> tqdm:
        """The progress bar of an epoch of ``steps`` steps (rank 0 on a terminal only)."""
        return tqdm(total=steps, initial=initial, desc=f"epoch {epoch + 1}",
                    disable=not (self.is_main and sys.stderr.isatty()), leave=False, dynamic_ncols=True)

    def train_step(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        """Report the training means of a logging interval: TensorBoard, history, log, progress."""
        self.scalars("train", values, step)
        self.history.append({"step": step, **values})
        log.info("epoch %d step %d: %s", epoch + 1, step, " ".join(f"{k} {v:.4g}" for k, v in values.items()))
        self.write_progress(self.progress_line(epoch, step, values["loss"]))

    def finished(self, epoch: int, step: int, earlier: bool = False) -> None:
        self.write_progress(f"finished{' earlier' if earlier else ''}: step {step}/{self.total_steps}, "
                            f"{epoch}/{self.epochs} epochs complete")

    def write_progress(self, line: str) -> None:
        """Rank 0 keeps DIR/progress at one line, for whoever shows progress on a console."""
        if not self.is_main:
            return
        try:
            atomic_write_text(self.outdir / PROGRESS_FILE, line + "\n")
        except OSError as e:  # progress is a courtesy: never stop training for it
            log.warning("cannot write %s: %s", self.outdir / PROGRESS_FILE, e)

    def progress_line(self, epoch: int, step: int, loss: float) -> str:
        done = step - self._step0
        elapsed = time.perf_counter() - self._start
        eta = "?"
        if done > 0:
            eta = format_duration((self.total_steps - step) * elapsed / done)
        return f"epoch {epoch + 1}/{self.epochs}, step {step}/{self.total_steps}, loss {loss:.4g}, ETA {eta}"
