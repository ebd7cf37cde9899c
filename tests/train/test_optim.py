"""The optim section (declared once) and the learning-rate schedule."""

import math

import pytest
import torch

from cdsvae.train.optim import OPTIM, build_optimizer, lr_factor


def test_lr_factor_known_values():
    assert lr_factor(0, "constant", 0, 100) == 1.0
    assert [lr_factor(s, "constant", 4, 100) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    # cosine from the end of warm-up (factor 1) to the last step (factor 0)
    assert lr_factor(2, "cosine", 2, 12) == 1.0
    assert lr_factor(7, "cosine", 2, 12) == pytest.approx(0.5)
    assert lr_factor(12, "cosine", 2, 12) == pytest.approx(0.0)
    assert lr_factor(4, "cosine", 0, 8) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_defaults_come_from_the_declared_fields_and_build_adam_with_the_schedule():
    assert OPTIM.defaults() == {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
                                "grad_clip": None, "schedule": "constant", "warmup_steps": 0}
    assert OPTIM.defaults()["betas"] is not OPTIM.defaults()["betas"]  # a fresh copy each time
    param = torch.nn.Parameter(torch.zeros(2))
    opts = {**OPTIM.defaults(), "lr": 0.5, "schedule": "cosine", "warmup_steps": 2}
    optimizer, scheduler = build_optimizer([param], opts, total_steps=6)
    assert isinstance(optimizer, torch.optim.Adam)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.5 * lr_factor(s, "cosine", 2, 6) for s in range(6)])
