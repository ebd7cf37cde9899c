"""The two config sections the trainer reads, ``optim`` and ``train``, and what ``optim`` builds:
Adam and the learning-rate schedule.

Their keys are declared once, here (:data:`OPTIM`, :data:`TRAIN`); they live apart from the
trainer so that a config can be checked (and a trained model loaded) without importing the
training loop. :class:`cdsvae.train.trainer.Trainer` fills keys a config leaves out from their
defaults. ``grad_clip`` is applied by the step loop (:mod:`cdsvae.train.steploop`).

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

from cdsvae.config import Field, Schema, Section

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

AMP_MODES = ("none", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")

TRAIN = Section({
    "epochs": Field(100, "int", minimum=1),
    "batch_size": Field(128, "int", minimum=1),  # per process
    "num_workers": Field(0, "int", minimum=0),
    "seed": Field(1, "int", minimum=0),
    "deterministic": Field(False, "bool"),
    "amp": Field("none", "str", choices=AMP_MODES),
    "compile": Field(False, "bool"),
    "channels_last": Field(None, "bool", optional=True),  # null: on CUDA
    "log_every": Field(50, "int", minimum=1),
    "ckpt_every_steps": Field(0, "int", minimum=0),  # 0: at the end of each epoch only
    "keep_last": Field(3, "int", minimum=1),
    "max_steps": Field(None, "int", optional=True, minimum=1),
    "device": Field("auto", "str", choices=DEVICES),
    "find_unused_parameters": Field(False, "bool"),
    "tensorboard": Field(True, "bool"),
    # null: the experiment decides (C-DSVAE: on when a contrastive term is on); false without item groups
    "unique_utts_per_batch": Field(None, "bool", optional=True),
})


def config_sections() -> Schema:
    """The sections the trainer reads: ``optim`` and ``train``."""
    return {"optim": OPTIM, "train": TRAIN}


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
