"""What tests/train/test_gpu.py's compile test compares: inductor's random numbers are not
eager's unless eager_random_numbers() is in force (checked on the CPU with the real inductor)."""

import pytest
import torch

from test_gpu import eager_random_numbers


def _noisy(x):
    return x * 2 + torch.randn_like(x)


@pytest.fixture()
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_inductor_draws_eagers_noise_only_with_eager_random_numbers(fresh_dynamo):
    x = torch.zeros(64)
    torch.manual_seed(0)
    eager = _noisy(x)
    with eager_random_numbers():
        compiled = torch.compile(_noisy, backend="inductor")
        torch.manual_seed(0)
        same = compiled(x)
    torch._dynamo.reset()
    compiled = torch.compile(_noisy, backend="inductor")
    torch.manual_seed(0)
    other = compiled(x)
    assert torch.allclose(same, eager, atol=1e-6)
    assert not torch.allclose(other, eager, atol=1e-3)  # the failure the GPU compile test would have shown
