"""The optim section (declared once) and the learning-rate schedule."""

import math

import pytest
import torch

from cdsvae.train.optim import OPTIM, adam_implementation, build_optimizer, lr_factor


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
                                "grad_clip": None, "schedule": "constant", "warmup_steps": 0,
                                "implementation": "auto"}
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


@pytest.mark.parametrize("choice, device, fused, foreach", [
    ("auto", "cpu", False, False), ("auto", "cuda", True, False), ("loop", "cuda", False, False),
    ("foreach", "cpu", False, True), ("fused", "cpu", True, False)])
def test_implementation_chooses_the_adam_kernel(choice, device, fused, foreach):
    assert adam_implementation(choice, torch.device(device)) == {"fused": fused, "foreach": foreach}
    optimizer, _ = build_optimizer([torch.nn.Parameter(torch.zeros(2))], {**OPTIM.defaults(), "implementation": choice},
                                   total_steps=1, device=torch.device("cpu") if device == "cpu" else None)
    if device == "cpu":
        assert optimizer.defaults["fused"] is fused and optimizer.defaults["foreach"] is foreach


def _fit(implementation: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    optimizer, scheduler = build_optimizer(model.parameters(), {**OPTIM.defaults(), "lr": 1e-2, "weight_decay": 0.1,
                                                                "implementation": implementation}, total_steps=10)
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        loss = model(torch.randn(5, 6, generator=gen)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return [p.detach() for p in model.parameters()]


def test_cpu_kernels_agree_foreach_bit_for_bit_with_the_loop():
    loop, foreach, fused = _fit("loop"), _fit("foreach"), _fit("fused")
    assert all(torch.equal(a, b) for a, b in zip(loop, foreach))
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(loop, fused))
