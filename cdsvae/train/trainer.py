"""One training loop for a laptop CPU, one GPU, N GPUs and N nodes.

The trainer is generic: it takes a model and a loss function
``loss_fn(model, batch, generator) -> (loss, terms)`` (``terms`` a dict of scalar tensors that
are logged), so the C-DSVAE specifics live in :mod:`cdsvae.train.task`.

Launching (``DIR`` is the experiment directory; a rerun of the same command resumes from it)::

    # CPU or one GPU
    python -m cdsvae.bin.train --config conf/train.yaml --outdir DIR
    # 4 GPUs on one node (what `run.sh --ngpu 4` runs)
    torchrun --standalone --nproc_per_node 4 -m cdsvae.bin.train --config conf/train.yaml --outdir DIR
    # 2 CPU processes with gloo (how the tests exercise the distributed path)
    torchrun --standalone --nproc_per_node 2 -m cdsvae.bin.train --config conf/train.yaml \
        --outdir DIR --train.device cpu
    # 2 nodes x 4 GPUs, torchrun rendezvous: run on every node
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv_id JOB --rdzv_backend c10d \
        --rdzv_endpoint HOST0:29400 -m cdsvae.bin.train --config conf/train.yaml --outdir DIR
    # Slurm, one task per GPU (srun sets SLURM_PROCID / SLURM_LOCALID / SLURM_NTASKS)
    export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1) MASTER_PORT=29500
    srun --nodes 2 --ntasks-per-node 4 --gpus-per-node 4 \
        python -m cdsvae.bin.train --config conf/train.yaml --outdir DIR

Multi-node runs need ``DIR`` on a file system every node sees: rank 0 alone writes, every rank
reads the checkpoint it resumes from.

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
  batch holds two items of a group (:mod:`cdsvae.train.sampler`); it is cut the same way.
- Checkpoints (``DIR/checkpoints/stepNNNNNNNNN.pt``, keep the last ``keep_last``, plus
  ``best.pt`` by the validation criterion) hold the model, optimiser, scheduler, epoch/step, position in
  the epoch, and every rank's RNG states, so a killed run restarted with the same command ends
  with the parameters an uninterrupted run would have had (``train.deterministic`` on GPU).
  Exact resumption assumes data loading is a function of (index, epoch); a dataset with a
  ``set_epoch`` method is told the epoch before each pass.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cdsvae.errors import UserError
from cdsvae.io import atomic_write_text
from cdsvae.train import checkpoint as ckpt
from cdsvae.train.config import to_plain
from cdsvae.train.distributed import DistContext, all_gather_object, all_reduce_mean, all_reduce_sum, broadcast_object

log = logging.getLogger("cdsvae.train")

LossFn = Callable[[nn.Module, Mapping[str, Any], torch.Generator], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]
# (model, batch) -> (reconstruction error in eval mode, the same in train mode), see Trainer.
ConsistencyFn = Callable[[nn.Module, Mapping[str, Any]], tuple[torch.Tensor, torch.Tensor]]
# Eval-mode reconstruction more than this many times the train-mode one is warned about.
EVAL_TRAIN_RATIO_LIMIT = 1.25
# DIR/progress: one line (epoch, step, loss, ETA) rewritten at every log step, read by the recipes.
PROGRESS_FILE = "progress"
# Validation order and augmentation draws do not depend on train.seed, so every system and
# every seed is validated (and its checkpoint chosen) on the same batches.
VALID_SEED = 20211206

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 100, "batch_size": 128, "num_workers": 0, "seed": 1, "deterministic": False,
    "amp": "none", "compile": False, "log_every": 50, "ckpt_every_steps": 0, "keep_last": 3,
    "max_steps": None, "device": "auto", "find_unused_parameters": False, "tensorboard": True,
    "unique_utts_per_batch": None,
}
OPTIM_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "grad_clip": None,
    "schedule": "constant", "warmup_steps": 0,
}


class TrainingDiverged(UserError):
    """A non-finite loss or gradient: training stops before the optimiser step."""


def format_duration(seconds: float) -> str:
    """12s, 4m05s, 3h07m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any tuple of values; different tuples give unrelated streams."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels where PyTorch has them (a warning, not a failure, where it has none)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, max(0.0, (step - warmup_steps) / span))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler that can start part-way into an epoch.

    ``skip`` is counted in samples of the global order (all ranks together); it must be a
    multiple of ``num_replicas`` for rank r to continue exactly where it stopped.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def set_position(self, epoch: int, samples_done: int) -> None:
        self.set_epoch(epoch)
        self.start = min(samples_done // self.num_replicas, self.num_samples)

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


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


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _batch_size(batch: Any) -> int:
    values = batch.values() if isinstance(batch, Mapping) else batch
    for v in values:
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return v.shape[0]
    raise UserError("a batch holds no tensor with a batch dimension")


class _TqdmHandler(logging.StreamHandler):
    """Log lines that do not tear the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm
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


class Trainer:
    """Fit ``model`` with ``loss_fn`` on ``train_set``; validate on ``valid_set`` each epoch.

    ``config`` is the resolved config: its ``optim`` and ``train`` sections drive the loop and
    the whole dict is stored in every checkpoint.

    ``criterion = (name, terms)`` chooses ``best.pt``: the validation sum of those logged terms
    (e.g. the negative ELBO, so that systems trained with different extra terms are chosen
    alike); without it, the validation loss. ``consistency_fn`` checks that the model in eval
    mode reproduces training: after every epoch it is given the same fixed batches (of the
    validation set when there is one, and of the training set), their (eval, train)
    reconstruction errors are logged with their ratios (``eval_train_ratio``,
    ``eval_train_ratio_train``; see :meth:`consistency`) and stored in the checkpoint, and a
    ratio above ``EVAL_TRAIN_RATIO_LIMIT`` is warned about.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, train_set: Dataset, valid_set: Dataset | None,
                 config: Mapping[str, Any], outdir: str | os.PathLike, ctx: DistContext | None = None,
                 collate_fn: Callable | None = None, criterion: tuple[str, Sequence[str]] | None = None,
                 consistency_fn: ConsistencyFn | None = None):
        self.ctx = ctx or DistContext()
        self.criterion_name = criterion[0] if criterion else "loss"
        self.criterion_terms = tuple(criterion[1]) if criterion else ()
        self.consistency_fn = consistency_fn
        self.config = to_plain(config)
        self.topt = {**TRAIN_DEFAULTS, **config.get("train", {})}
        self.oopt = {**OPTIM_DEFAULTS, **config.get("optim", {})}
        self.outdir = Path(outdir)
        self.ckpt_dir = self.outdir / "checkpoints"
        setup_logging(self.outdir, self.ctx.is_main)
        self.train_set, self.valid_set = train_set, valid_set
        self.collate_fn = collate_fn
        self.device = self.ctx.device
        t = self.topt
        self.seed = int(t["seed"])
        self.batch_size = int(t["batch_size"])
        self.global_batch = self.batch_size * self.ctx.world_size
        set_deterministic(bool(t["deterministic"]))

        self.model = model.to(self.device)
        forward_model = torch.compile(self.model) if t["compile"] else self.model
        self.loss_module = _LossModule(forward_model, loss_fn)
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_module: nn.Module = DistributedDataParallel(
                self.loss_module, device_ids=ids, find_unused_parameters=bool(t["find_unused_parameters"]))
        else:
            self.step_module = self.loss_module

        o = self.oopt
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o["lr"], betas=tuple(o["betas"]),
                                          eps=o["eps"], weight_decay=o["weight_decay"])
        self.sampler = self._make_sampler(train_set, bool(t["unique_utts_per_batch"]))
        self.steps_per_epoch = self.sampler.num_samples // self.batch_size
        if self.steps_per_epoch == 0:
            raise UserError(f"the training set has {len(train_set)} sequences, fewer than one batch per process "
                            f"(train.batch_size {self.batch_size} x {self.ctx.world_size} processes)")
        self.total_steps = int(t["epochs"]) * self.steps_per_epoch
        if t["max_steps"] is not None:
            self.total_steps = min(self.total_steps, int(t["max_steps"]))
        schedule, warmup, total = o["schedule"], int(o["warmup_steps"]), self.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, schedule, warmup, total))

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
        self.writer = None
        self.history: list[dict[str, float]] = []  # what was logged, for benchmarks and tests

    def _make_sampler(self, train_set: Dataset, unique_groups: bool):
        groups = getattr(train_set, "item_groups", None) if unique_groups else None
        if groups is None:
            return ResumableDistributedSampler(train_set, self.ctx.world_size, self.ctx.rank, seed=self.seed)
        from cdsvae.train.sampler import UniqueGroupSampler
        try:
            sampler = UniqueGroupSampler(groups(), self.batch_size, self.ctx.world_size, self.ctx.rank, self.seed)
        except ValueError as e:
            raise UserError(f"train.unique_utts_per_batch: {e}; lower train.batch_size or set "
                            f"train.unique_utts_per_batch false") from None
        log.info("training batches hold at most one segment per utterance (%d utterances, global batch %d)",
                 np.unique(sampler.groups).size, self.global_batch)
        return sampler

    def _state(self, valid: Mapping[str, float] | None) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": {"epoch": self.epoch, "step": self.step, "samples_in_epoch": self.samples_in_epoch},
            "best_valid": self.best_valid,
            "criterion": self.criterion_name,
            "valid": dict(valid or {}),
            "world_size": self.ctx.world_size,
            "batch_size": self.batch_size,
            "config": self.config,
        }

    def save(self, valid: Mapping[str, float] | None = None, best: bool = False) -> None:
        """Collective: every rank contributes its RNG states, rank 0 writes.

        ``valid`` (the validation results of this step, criterion included) is stored with
        the checkpoint, so which checkpoint was chosen, and why, can be reported later.
        """
        rng = all_gather_object(self.ctx, ckpt.capture_rng({"augment": self.aug_gen}, self.device))
        path = ckpt.step_path(self.ckpt_dir, self.step)
        if self.ctx.is_main:
            state = self._state(valid)
            state["rng"] = rng
            if best:  # first: a kill between the two writes leaves no step checkpoint claiming a newer best
                ckpt.save_checkpoint(self.ckpt_dir / ckpt.BEST, {
                    "model": state["model"], "progress": state["progress"], "criterion": self.criterion_name,
                    "valid": state["valid"], "config": self.config})
            ckpt.save_checkpoint(path, state)
            ckpt.prune(self.ckpt_dir, int(self.topt["keep_last"]))
            log.info("saved %s (step %d%s)", path, self.step, ", best so far" if best else "")
        self.last_ckpt = path  # on every rank, for the divergence message

    def resume(self) -> bool:
        """Restore the newest readable checkpoint in DIR/checkpoints, if any."""
        found = None
        if self.ctx.is_main:
            found = ckpt.load_latest(self.ckpt_dir, map_location="cpu",
                                     required_keys=("model", "optimizer", "scheduler", "progress", "rng"))
        path = broadcast_object(self.ctx, str(found[0]) if found else None)
        if path is None:
            return False
        state = found[1] if found else ckpt.load_checkpoint(path, map_location="cpu")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise UserError(f"{path}: does not fit the configured model "
                            f"({str(e).splitlines()[0]}); use a new --outdir for a new model") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        prog = state["progress"]
        self.epoch, self.step = int(prog["epoch"]), int(prog["step"])
        self.samples_in_epoch = int(prog["samples_in_epoch"])
        self.best_valid = state.get("best_valid")
        if state.get("criterion", "loss") != self.criterion_name and self.best_valid is not None:
            log.warning("%s chose its best checkpoint on validation %s, this run chooses on %s: the best "
                        "checkpoint is chosen afresh from the next validation on", path,
                        state.get("criterion", "loss"), self.criterion_name)
            self.best_valid = None
        if self.samples_in_epoch % self.ctx.world_size:
            # Another world size than the run that wrote it: the position is rounded down.
            self.samples_in_epoch -= self.samples_in_epoch % self.ctx.world_size
            log.warning("resuming with %d processes: rounded the position in epoch %d down to sample %d",
                        self.ctx.world_size, self.epoch, self.samples_in_epoch)
        rng = state["rng"]
        if len(rng) == self.ctx.world_size:
            ckpt.restore_rng(rng[self.ctx.rank], {"augment": self.aug_gen}, self.device)
        else:
            log.warning("%s was written by %d processes, this run has %d: RNG streams start afresh",
                        path, len(rng), self.ctx.world_size)
        self.last_ckpt = Path(path)
        log.info("resumed from %s: epoch %d, step %d, %d samples into the epoch",
                 path, self.epoch, self.step, self.samples_in_epoch)
        return True

    def _finished(self) -> bool:
        t = self.topt
        return self.epoch >= int(t["epochs"]) or (t["max_steps"] is not None and self.step >= int(t["max_steps"]))

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=self.topt["amp"] == "bf16")

    def _loader(self, dataset: Dataset, **kw) -> DataLoader:
        workers = int(self.topt["num_workers"])
        return DataLoader(dataset, num_workers=workers, collate_fn=self.collate_fn,
                          pin_memory=self.device.type == "cuda", **kw)

    def _open_writer(self, resumed: bool) -> None:
        if not (self.ctx.is_main and self.topt["tensorboard"]):
            return
        from torch.utils.tensorboard import SummaryWriter
        # purge_step drops events a killed run logged after its last checkpoint.
        self.writer = SummaryWriter(str(self.outdir / "tensorboard"), purge_step=self.step if resumed else None)

    def _scalars(self, prefix: str, values: Mapping[str, float]) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, self.step)

    def fit(self) -> dict[str, Any]:
        """Train until ``train.epochs`` (or ``train.max_steps``); returns a short summary."""
        t = self.topt
        resumed = self.resume()
        if self._finished():
            log.info("nothing to do: training already finished (epoch %d, step %d)", self.epoch, self.step)
            self._write_progress(f"finished earlier: step {self.step}/{self.total_steps}, "
                                 f"{self.epoch}/{int(self.topt['epochs'])} epochs complete")
            return self.summary()
        ctx = self.ctx
        log.info("training on %s: %d process(es)%s, batch %d per process, global batch %d, "
                 "%d steps per epoch, %d epochs%s", self.device, ctx.world_size,
                 f" ({ctx.backend})" if ctx.backend else "", self.batch_size, self.global_batch,
                 self.steps_per_epoch, int(t["epochs"]),
                 f", at most {t['max_steps']} steps" if t["max_steps"] is not None else "")
        self._open_writer(resumed)
        self._run_start, self._run_step0 = time.perf_counter(), self.step
        try:
            while not self._finished():
                complete = self._train_epoch()
                valid = self.validate() if self.valid_set is not None else {}
                vloss = valid.get(self.criterion_name)
                if valid:
                    log.info("validation at step %d (epoch %d%s): %s", self.step, self.epoch + 1,
                             "" if complete else ", partial", " ".join(f"{k} {v:.4g}" for k, v in valid.items()))
                if self.consistency_fn is not None:
                    valid.update(self.consistency())
                    self._check_consistency(valid)
                if valid:
                    self._scalars("valid", valid)
                best = (vloss is not None and math.isfinite(vloss)
                        and (self.best_valid is None or vloss < self.best_valid))
                if best:
                    self.best_valid = vloss
                if complete:
                    self.epoch += 1
                    self.samples_in_epoch = 0
                self.save(valid, best=best)
        finally:
            if self.writer is not None:
                self.writer.close()
        log.info("finished: epoch %d, step %d, best validation %s %s", self.epoch, self.step, self.criterion_name,
                 "n/a" if self.best_valid is None else f"{self.best_valid:.6g}")
        self._write_progress(f"finished: step {self.step}/{self.total_steps}, "
                             f"{self.epoch}/{int(self.topt['epochs'])} epochs complete")
        return self.summary()

    def _write_progress(self, line: str) -> None:
        """Rank 0 keeps DIR/progress at one line, for whoever shows progress on a console."""
        if not self.ctx.is_main:
            return
        try:
            atomic_write_text(self.outdir / PROGRESS_FILE, line + "\n")
        except OSError as e:  # progress is a courtesy: never stop training for it
            log.warning("cannot write %s: %s", self.outdir / PROGRESS_FILE, e)

    def _progress_line(self, loss: float) -> str:
        done = self.step - self._run_step0
        elapsed = time.perf_counter() - self._run_start
        eta = "?"
        if done > 0:
            eta = format_duration((self.total_steps - self.step) * elapsed / done)
        return (f"epoch {self.epoch + 1}/{int(self.topt['epochs'])}, step {self.step}/{self.total_steps}, "
                f"loss {loss:.4g}, ETA {eta}")

    def summary(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "best_valid": self.best_valid,
                "last_checkpoint": str(self.last_ckpt) if self.last_ckpt else None}

    def _diverged(self, what: str) -> TrainingDiverged:
        good = self.last_ckpt if self.last_ckpt is not None else "none written yet"
        msg = (f"non-finite {what} at step {self.step + 1} (epoch {self.epoch + 1}); training stopped "
               f"before the update, last good checkpoint: {good}")
        log.error(msg, extra={"console": False})  # the entry point prints it once
        return TrainingDiverged(msg)

    def _train_epoch(self) -> bool:
        """Run the rest of the current epoch; False when stopped early by ``max_steps``."""
        t = self.topt
        max_steps = t["max_steps"]
        ckpt_every = int(t["ckpt_every_steps"])
        log_every = max(1, int(t["log_every"]))
        self.sampler.set_position(self.epoch, self.samples_in_epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        loader = self._loader(self.train_set, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
                              generator=torch.Generator().manual_seed(derive_seed(self.seed, "loader", self.epoch)))
        done_in_epoch = self.samples_in_epoch // self.global_batch
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        from tqdm import tqdm
        bar = tqdm(total=self.steps_per_epoch, initial=done_in_epoch, desc=f"epoch {self.epoch + 1}",
                   disable=not (self.ctx.is_main and sys.stderr.isatty()), leave=False, dynamic_ncols=True)
        names: list[str] | None = None
        acc: torch.Tensor | None = None
        acc_n = 0
        tic = time.perf_counter()
        try:
            for batch in loader:
                batch = _to_device(batch, self.device)
                with self._autocast():
                    loss, terms = self.step_module(batch, self.aug_gen)
                if names is None:
                    names = sorted(terms)
                stats = torch.stack([loss.detach().float()] +
                                    [torch.as_tensor(terms[k], device=self.device).detach().float().reshape(())
                                     for k in names])
                all_reduce_mean(self.ctx, stats)  # every rank sees a NaN anywhere, and all stop together
                if not bool(torch.isfinite(stats).all()):
                    bad = [f"'{k}' = {v}" for k, v in zip(names, stats[1:].tolist()) if not math.isfinite(v)]
                    if len(bad) == 1:
                        what = f"loss term {bad[0]}"
                    elif bad:
                        what = f"loss terms {', '.join(bad)}"
                    else:
                        what = f"loss (weighted sum of finite terms) = {stats[0].item()}"
                    raise self._diverged(what)
                loss.backward()
                clip = self.oopt["grad_clip"]
                gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                       max_norm=float(clip) if clip else float("inf"))
                if not bool(torch.isfinite(gnorm)):
                    raise self._diverged(f"gradient norm = {gnorm.item()}")
                lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.step += 1
                self.samples_in_epoch += self.global_batch
                row = torch.cat([stats, gnorm.detach().float().reshape(1)])
                acc = row if acc is None else acc + row
                acc_n += 1
                bar.update(1)
                stop = max_steps is not None and self.step >= int(max_steps)
                last_in_epoch = self.samples_in_epoch // self.global_batch >= self.steps_per_epoch
                if self.step % log_every == 0 or stop or last_in_epoch:
                    elapsed = time.perf_counter() - tic
                    mean = (acc / acc_n).tolist()
                    values = {"loss": mean[0], **dict(zip(names, mean[1:-1])), "grad_norm": mean[-1], "lr": lr,
                              "seq_per_s": acc_n * self.global_batch / max(elapsed, 1e-9)}
                    self._scalars("train", values)
                    self.history.append({"step": self.step, **values})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in values.items() if k in names or k == "loss"})
                    log.info("epoch %d step %d: %s", self.epoch + 1, self.step,
                             " ".join(f"{k} {v:.4g}" for k, v in values.items()))
                    self._write_progress(self._progress_line(values["loss"]))
                    acc, acc_n, tic = None, 0, time.perf_counter()
                if stop:
                    return last_in_epoch
                if ckpt_every > 0 and self.step % ckpt_every == 0 and not last_in_epoch:
                    self.save()
        finally:
            bar.close()
        return True

    @staticmethod
    def _fixed_order(dataset: Dataset) -> np.ndarray:
        """A fixed shuffled order of ``dataset`` (the same for every system and seed).

        Validation batches then mix utterances and speakers, as training batches do, instead
        of holding the consecutive segments of one or two utterances.
        """
        return np.random.default_rng(VALID_SEED).permutation(len(dataset))

    def _valid_order(self) -> np.ndarray:
        assert self.valid_set is not None
        return self._fixed_order(self.valid_set)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss and terms over the validation set, sharded over ranks, without padding.

        The items are visited in a fixed shuffled order and the augmentation draws come from a
        fixed seed (:data:`VALID_SEED`, not ``train.seed``), on a forked RNG, so validation
        neither perturbs the training streams nor changes between epochs, seeds or systems
        except through the parameters. With a criterion, its value is added under its name.
        """
        assert self.valid_set is not None
        order = self._valid_order()
        mine = order[self.ctx.rank::self.ctx.world_size]
        n_batches = max(1, math.ceil(len(mine) / self.batch_size))
        batches = [b.tolist() for b in np.array_split(mine.astype(np.int64), n_batches) if len(b)]
        loader = self._loader(self.valid_set, batch_sampler=batches)
        self.model.eval()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        names: list[str] | None = None
        total: torch.Tensor | None = None
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(VALID_SEED, "valid", self.ctx.rank) % (1 << 63))
            gen = torch.Generator().manual_seed(derive_seed(VALID_SEED, "valid-augment", self.ctx.rank))
            for batch in loader:
                batch = _to_device(batch, self.device)
                with self._autocast():
                    loss, terms = self.loss_module(batch, gen)
                if names is None:
                    names = sorted(terms)
                size = float(_batch_size(batch))
                row = torch.stack([loss.detach().float()] +
                                  [torch.as_tensor(terms[k], device=self.device).detach().float().reshape(())
                                   for k in names] + [torch.ones((), device=self.device)]) * size
                total = row if total is None else total + row
        self.model.train()
        # Ranks whose shard is empty still join the reduction with zeros.
        width = broadcast_object(self.ctx, len(names) + 2 if names is not None else 0)
        names = broadcast_object(self.ctx, names)
        if not width:
            return {}
        if total is None:
            total = torch.zeros(width, device=self.device)
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
        forked RNG so the check never changes training; the consistency function must leave
        parameters and buffers as they were.
        """
        assert self.consistency_fn is not None
        out: dict[str, float] = {}
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            for suffix, _, dataset in self._consistency_sources():
                items = self._fixed_order(dataset)[: self.batch_size].tolist()
                loader = self._loader(dataset, batch_sampler=[items])
                batch = _to_device(next(iter(loader)), self.device)
                with torch.no_grad(), self._autocast():
                    eval_err, train_err = self.consistency_fn(self.model, batch)
                eval_err, train_err = float(eval_err), float(train_err)
                out[f"recon_eval_mode{suffix}"] = eval_err
                out[f"recon_train_mode{suffix}"] = train_err
                out[f"eval_train_ratio{suffix}"] = eval_err / train_err if train_err > 0 else math.inf
        return out

    def _check_consistency(self, valid: Mapping[str, float]) -> None:
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
            log.info("eval/train ratio at step %d: %s", self.step, "; ".join(parts))
        if bad:
            log.warning("eval mode reconstructs a fixed %s worse than train mode (limit %.2f): the batch-norm "
                        "running statistics do not describe the trained model, so every number measured in eval "
                        "mode is suspect", " and ".join(bad), EVAL_TRAIN_RATIO_LIMIT)
