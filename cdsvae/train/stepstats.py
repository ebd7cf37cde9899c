"""The figures of each training step (loss, its terms, gradient norm) kept on the device.

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

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cdsvae.train.distributed import DistContext, all_gather_object, all_reduce_mean

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
