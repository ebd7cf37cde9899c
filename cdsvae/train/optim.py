"""The ``optim`` config section and what it builds: Adam and the learning-rate schedule.

Its keys are declared once, here (:data:`OPTIM`); the schema of :mod:`cdsvae.bin.train` takes
this section as it is, and :class:`cdsvae.train.trainer.Trainer` fills keys a config leaves
out from its defaults. ``grad_clip`` is applied by the training loop.

``implementation`` chooses PyTorch's Adam kernel: ``fused`` (one kernel for every parameter;
CUDA, and what a GradScaler can skip without a host sync), ``foreach`` (one kernel per operation
over all parameters) or ``loop`` (one parameter at a time). ``auto`` takes ``fused`` on CUDA and
``loop`` elsewhere (PyTorch's own CPU choice: its CPU foreach kernels loop over the tensors anyway,
and measured no faster in training here). On the CPU ``foreach`` and ``loop`` give bit-identical
parameters; the fused kernel differs in the last bits.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import torch

from cdsvae.config import Field, Section

OPTIM = Section({
    "lr": Field(1e-3, "float", minimum=0.0),
    "betas": Field([0.9, 0.999], "floats", length=2),
    "eps": Field(1e-8, "float", minimum=0.0),
    "weight_decay": Field(0.0, "float", minimum=0.0),
    "grad_clip": Field(None, "float", optional=True, minimum=0.0),  # max gradient norm; null: none
    "schedule": Field("constant", "str", choices=("constant", "cosine")),
    "warmup_steps": Field(0, "int", minimum=0),
    "implementation": Field("auto", "str", choices=("auto", "fused", "foreach", "loop")),
})


def adam_implementation(choice: str, device: torch.device) -> dict[str, bool]:
    """The ``torch.optim.Adam`` keywords of ``optim.implementation`` on ``device``."""
    if choice == "auto":
        choice = "fused" if device.type == "cuda" else "loop"
    return {"fused": {"fused": True, "foreach": False}, "foreach": {"fused": False, "foreach": True},
            "loop": {"fused": False, "foreach": False}}[choice]


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, max(0.0, (step - warmup_steps) / span))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_optimizer(params: Iterable[torch.nn.Parameter], opts: Mapping[str, Any],
                    total_steps: int, device: torch.device | None = None,
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam with the options of ``opts`` (an ``optim`` section) and its per-step schedule, for
    parameters on ``device`` (default: the CPU)."""
    kernel = adam_implementation(opts.get("implementation", "auto"), device or torch.device("cpu"))
    optimizer = torch.optim.Adam(params, lr=opts["lr"], betas=tuple(opts["betas"]), eps=opts["eps"],
                                 weight_decay=opts["weight_decay"], **kernel)
    schedule, warmup = opts["schedule"], int(opts["warmup_steps"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, schedule, warmup, total_steps))
    return optimizer, scheduler


def match_state_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor its parameter's memory layout.

    A checkpoint keeps the strides its run had: Adam's moments saved with contiguous weights and
    loaded for channels-last ones (or the other way) would otherwise keep the old layout, which
    the fused CUDA kernel refuses ("same dtype, device, and layout" for params, grads and state).
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if (isinstance(value, torch.Tensor) and value.shape == p.shape
                        and value.stride() != p.stride()):
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
