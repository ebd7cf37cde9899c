"""A small CTC recogniser: trained on any per-frame features (log-mel, a model's z_1:T, a broadcast
s) and scored by unit error rate. It is the content judge of the speech recipe and the probe of a
trained model's factors (content should be readable from z and not from s).

Training (``train_ctc``) is a function of its seed: the initial weights come from
``derive_seed(seed, "init")`` and every epoch's batch order, dropout and masks from
``derive_seed(seed, "epoch", epoch)``, under ``torch.random.fork_rng`` so the caller's global RNG
is left alone. Resuming from ``workdir/checkpoint.pt`` therefore needs only the weights, the
optimiser state and the epoch count, and continuing k -> n epochs gives the same weights as n at
once. Utterances too short for their targets (CTC needs ``T' >= len + adjacent repeats``) are
skipped and counted in the log. Steps run through ``cdsvae.train.steploop`` (a non-finite loss or
gradient stops training; with ``workdir``, TensorBoard scalars in ``workdir/tensorboard``).

The network, decoding and the saved-model file are in ``cdsvae.eval.judges.ctc_model`` and re-exported
here; the vocabulary is ``cdsvae.eval.judges.units``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from cdsvae.checkpoint import load_checkpoint, save_checkpoint
from cdsvae.eval.judges.config import CTCConfig  # noqa: F401  (re-exported)
from cdsvae.eval.judges.ctc_model import (CTCRecogniser, check_inputs, greedy_decode, load_recogniser,  # noqa: F401
                                   pad_batch, recognise, recognise_ids, save_recogniser)
from cdsvae.eval.judges.units import Units, read_units  # noqa: F401
from cdsvae.eval.metrics.per import ErrorCounts, align_counts, fold_units
from cdsvae.io import UserError
from cdsvae.train.batches import derive_seed
from cdsvae.train.steploop import EpochRun, StepLoop, seeded_epoch

log = logging.getLogger("cdsvae.eval.judges.ctc")

CHECKPOINT = "checkpoint.pt"


def build_model(input_dim: int, n_classes: int, cfg: CTCConfig) -> CTCRecogniser:
    return CTCRecogniser(input_dim, n_classes, hidden=cfg.hidden, layers=cfg.layers, dropout=cfg.dropout,
                         proj=cfg.proj, subsample=cfg.subsample, frontend=cfg.frontend)


def ctc_min_frames(target: Sequence[int]) -> int:
    """Fewest output frames a CTC path for ``target`` needs: one per unit, one blank per repeat."""
    return len(target) + sum(1 for a, b in zip(target, target[1:]) if a == b)


def data_fingerprint(inputs: Sequence[np.ndarray], targets: Sequence[Sequence[int]], n_units: int) -> str:
    """sha256 of the shapes, float32 bytes and targets: a checkpoint resumes only on the same data."""
    h = hashlib.sha256(f"n_units={n_units};n={len(inputs)}".encode())
    for a, t in zip(inputs, targets):
        a = np.ascontiguousarray(a, dtype=np.float32)
        h.update(repr((a.shape, list(map(int, t)))).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _spec_mask(cfg: CTCConfig, gen: torch.Generator):
    """A function zeroing random time spans and feature bands of normalised features (or None)."""
    if cfg.time_masks <= 0 and cfg.feature_masks <= 0:
        return None

    def mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        D = x.shape[2]
        for b, n in enumerate(lengths.tolist()):
            for _ in range(cfg.time_masks):
                w = int(torch.randint(0, min(cfg.time_mask_width, n) + 1, (1,), generator=gen))
                t0 = int(torch.randint(0, n - w + 1, (1,), generator=gen))
                x[b, t0:t0 + w] = 0
            for _ in range(cfg.feature_masks):
                w = int(torch.randint(0, min(cfg.feature_mask_width, D) + 1, (1,), generator=gen))
                f0 = int(torch.randint(0, D - w + 1, (1,), generator=gen))
                x[b, :n, f0:f0 + w] = 0
        return x
    return mask


def epoch_batches(lengths: Sequence[int], batch_size: int, gen: torch.Generator) -> list[list[int]]:
    """Batches of similar length (sorted by length, ties broken at random), in random order."""
    ties = torch.rand(len(lengths), generator=gen).tolist()
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], ties[i]))
    batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _normalisation(inputs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    total = sum(np.asarray(a, dtype=np.float64).sum(axis=0) for a in inputs)
    count = sum(np.shape(a)[0] for a in inputs)
    mean = total / count
    var = sum(((np.asarray(a, dtype=np.float64) - mean) ** 2).sum(axis=0) for a in inputs) / count
    return torch.from_numpy(mean).float(), torch.from_numpy(np.sqrt(var)).float()


def _resume(path: Path, cfg: CTCConfig, fingerprint: str, model, optimiser) -> tuple[int, list]:
    state = load_checkpoint(path)
    saved = dict(state.get("config") or {})
    now = asdict(cfg)
    differ = sorted(k for k in set(saved) | set(now) if k != "epochs" and saved.get(k) != now.get(k))
    if differ:
        raise UserError(f"{path}: checkpoint of a different ctc config ({', '.join(differ)}); "
                        f"remove it to train afresh")
    if state.get("fingerprint") != fingerprint:
        raise UserError(f"{path}: checkpoint of different training data; remove it to train afresh")
    epoch = int(state["epoch"])
    if epoch > cfg.epochs:
        raise UserError(f"{path}: checkpoint is at epoch {epoch}, past the {cfg.epochs} epochs asked for")
    model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    log.info("ctc: resuming from %s at epoch %d", path, epoch)
    return epoch, list(state.get("history") or [])


def train_ctc(inputs: Sequence[np.ndarray], targets: Sequence[Sequence[int]], n_units: int,
              cfg: CTCConfig | None = None, workdir: str | Path | None = None, device: str | torch.device = "cpu",
              progress: bool = True,
              valid: tuple[Sequence[np.ndarray], Sequence[Sequence[int]]] | None = None,
              threads: int | None = 1) -> CTCRecogniser:
    """Train a recogniser of ``n_units`` units (target ids 1..n_units; 0 is the blank) on (T, D) inputs.

    With ``workdir``, ``workdir/checkpoint.pt`` is written after every epoch and training resumes
    from it when the config (but ``epochs``) and the data fingerprint match; a mismatch is a
    UserError. ``valid`` = (inputs, targets) is scored (unit error rate) after every epoch.
    Returns the model in eval mode; ``model.history`` lists per-epoch dicts (loss, seconds, valid).

    ``threads``: torch CPU threads while training (restored afterwards; None leaves the setting).
    One is the default: this recogniser's small matrices gain little from more, and on shared
    cores two busy-waiting threads made a 200 x 300-frame epoch about 6 times slower than one.
    """
    with torch_threads(threads):
        return _train(inputs, targets, n_units, cfg, workdir, device, progress, valid)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's CPU thread count set to ``n`` inside the block (None: unchanged)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(inputs, targets, n_units, cfg, workdir, device, progress, valid) -> CTCRecogniser:
    cfg = cfg or CTCConfig()
    device = torch.device(device)
    model, xs, ys, fingerprint = _prepare(inputs, targets, n_units, cfg, device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ckpt = Path(workdir) / CHECKPOINT if workdir is not None else None
    start, history = 0, []
    if ckpt is not None and ckpt.is_file():
        start, history = _resume(ckpt, cfg, fingerprint, model, optimiser)
    lengths = [a.shape[0] for a in xs]
    batch_size = max(1, int(cfg.batch_size))
    steps = StepLoop(model.parameters(), optimiser, grad_clip=cfg.grad_clip)
    run = EpochRun(steps, "ctc", cfg.epochs, start, -(-len(xs) // batch_size), logdir=workdir, progress=progress,
                   checkpoint=ckpt)
    try:
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            model.train()
            with seeded_epoch(cfg.seed, epoch, device):
                gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "batches", epoch))
                step_fn = _step_fn(model, xs, ys, device, _spec_mask(cfg, gen))
                figures = run.run_epoch(epoch, epoch_batches(lengths, batch_size, gen), step_fn)
            record = {"epoch": epoch + 1, "loss": figures["loss"], "seconds": time.perf_counter() - t0}
            if valid is not None:
                record["valid_uer"] = _valid_rate(model, valid, cfg.batch_size)
            history.append(record)
            run.end_epoch(record)
            log.info("ctc epoch %d/%d: loss %.4f%s (%.1f s)", epoch + 1, cfg.epochs, record["loss"],
                     f", valid UER {record['valid_uer']:.3f}" if "valid_uer" in record else "", record["seconds"])
            if ckpt is not None:
                save_checkpoint(ckpt, {"config": asdict(cfg), "fingerprint": fingerprint, "epoch": epoch + 1,
                                       "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                       "optimiser": optimiser.state_dict(), "history": history})
    finally:
        run.close()
    model.history = history
    return model.eval()


def _prepare(inputs, targets, n_units, cfg: CTCConfig, device: torch.device):
    """Checked data and the initial model on ``device``: (model, inputs, targets, data fingerprint);
    the utterances too short for their targets are left out."""
    if len(inputs) != len(targets):
        raise UserError(f"ctc: {len(inputs)} inputs but {len(targets)} targets")
    input_dim = check_inputs(inputs)
    for i, t in enumerate(targets):
        bad = [u for u in t if not 0 < int(u) <= n_units]
        if bad:
            raise UserError(f"ctc: target {i} has class id {bad[0]} outside 1..{n_units}")
    fingerprint = data_fingerprint(inputs, targets, n_units)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        model = build_model(input_dim, n_units + 1, cfg)
    out_len = model.output_lengths(torch.tensor([np.shape(a)[0] for a in inputs])).tolist()
    keep = [i for i, t in enumerate(targets) if len(t) > 0 and out_len[i] >= ctc_min_frames(t)]
    skipped = len(inputs) - len(keep)
    if skipped:
        log.info("ctc: skipping %d of %d utterances (empty target, or fewer frames than CTC needs)",
                 skipped, len(inputs))
    if not keep:
        raise UserError(f"ctc: none of the {len(inputs)} utterances is long enough for its target")
    xs = [np.asarray(inputs[i], dtype=np.float32) for i in keep]
    ys = [torch.tensor([int(u) for u in targets[i]], dtype=torch.int64) for i in keep]
    if cfg.normalise:
        model.set_normalisation(*_normalisation(xs))
    return model.to(device), xs, ys, fingerprint


def _step_fn(model: CTCRecogniser, xs, ys, device: torch.device, mask_fn):
    """The CTC loss of a batch of utterance indices, for :meth:`EpochRun.run_epoch`."""
    ctc_loss = torch.nn.CTCLoss(blank=0, zero_infinity=True)

    def step(idx: list[int]):
        x, x_len = pad_batch(xs, idx, device)
        log_probs, out_lengths = model(x, x_len, mask_fn=mask_fn)
        y = torch.cat([ys[i] for i in idx]).to(device)
        y_len = torch.tensor([len(ys[i]) for i in idx], dtype=torch.int64)
        return ctc_loss(log_probs.transpose(0, 1), y, out_lengths, y_len), len(idx), {}
    return step


def _valid_rate(model: CTCRecogniser, valid, batch_size: int) -> float:
    v_inputs, v_targets = valid
    hyps = recognise_ids(model, v_inputs, batch_size)
    counts = ErrorCounts()
    for ref, hyp in zip(v_targets, hyps):
        counts = counts + align_counts([int(u) for u in ref], hyp)
    return counts.rate


def unit_error_rate(model: CTCRecogniser, inputs: Sequence[np.ndarray], refs: Sequence[Sequence[str]],
                    units: Units, unit_map: Mapping[str, str | None] | None = None,
                    batch_size: int = 32) -> ErrorCounts:
    """Error counts of the recognised units against ``refs``; with ``unit_map`` (``per.read_unit_map``)
    both sides are folded first (e.g. TIMIT 61 -> 39)."""
    if len(inputs) != len(refs):
        raise UserError(f"ctc: {len(inputs)} inputs but {len(refs)} references")
    return score_hypotheses(refs, recognise(model, inputs, units, batch_size), unit_map)


def score_hypotheses(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]],
                     unit_map: Mapping[str, str | None] | None = None) -> ErrorCounts:
    """Summed alignment counts of hypotheses against references, both folded by ``unit_map`` if given."""
    counts = ErrorCounts()
    for ref, hyp in zip(refs, hyps, strict=True):
        if unit_map is not None:
            ref, hyp = fold_units(ref, unit_map), fold_units(hyp, unit_map)
        counts = counts + align_counts(ref, hyp)
    return counts
