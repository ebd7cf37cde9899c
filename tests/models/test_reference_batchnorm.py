"""Batch-norm statistics come from the original frames only, never from the views.

The views are normalised with x's batch statistics as functions of the parameters, so the
function trained is invariant to a per-channel shift of a normalised layer's input (and to
the scale of the weights feeding it), exactly as ordinary batch norm is.
"""

import pytest
import torch
from torch import nn

from cdsvae.models import build_model
from cdsvae.models.frames import ReferenceBatchNorm1d, ReferenceBatchNorm2d, apply_layers
from cdsvae.objectives import LossWeights, cdsvae_loss


def _stack(bn_cls, seed=0):
    torch.manual_seed(seed)
    layers = nn.ModuleList([nn.Conv2d(2, 3, 3), bn_cls(3), nn.LeakyReLU(0.2, inplace=True),
                            nn.Conv2d(3, 4, 3), bn_cls(4), nn.Tanh()])
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight)
            nn.init.normal_(layer.bias)
    return layers


def _explicit(layers, x, n_ref):
    """The same stack written plainly: per-layer statistics of the reference part normalise both parts."""
    head, tail = x[:n_ref], x[n_ref:]
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d):
            mean = head.mean(dim=(0, 2, 3), keepdim=True)
            var = head.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
            w, b = layer.weight.view(1, -1, 1, 1), layer.bias.view(1, -1, 1, 1)
            head = (head - mean) / torch.sqrt(var + layer.eps) * w + b
            tail = (tail - mean) / torch.sqrt(var + layer.eps) * w + b
        else:
            head, tail = layer(head), layer(tail)
    return torch.cat([head, tail])


@pytest.mark.parametrize("momentum", [0.1, None])
def test_reference_part_matches_plain_batchnorm(momentum):
    ours = _stack(lambda c: ReferenceBatchNorm2d(c, momentum=momentum))
    plain = _stack(lambda c: nn.BatchNorm2d(c, momentum=momentum))
    plain.load_state_dict(ours.state_dict())
    head = torch.randn(4, 2, 7, 7) * 2 + 1
    views = torch.randn(6, 2, 7, 7) * 7 - 3  # very different statistics
    for _ in range(2):
        out = apply_layers(ours, head, views)
        want = head
        for layer in plain:
            want = layer(want)
    assert torch.allclose(out[:4], want, atol=1e-5)
    for (name, a), b in zip(ours.state_dict().items(), plain.state_dict().values()):
        assert torch.allclose(a.float(), b.float()), name
    assert torch.allclose(out, _explicit(ours, torch.cat([head, views]), 4), atol=1e-4)


def test_reference_gradients_match_explicit_formula():
    layers = _stack(ReferenceBatchNorm2d, seed=1).double()
    x = torch.randn(7, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(7, 4, 2, 2, dtype=torch.float64)
    (apply_layers(layers, x[:3], x[3:]) * upstream).sum().backward()
    got = [x.grad.clone()] + [p.grad.clone() for p in layers.parameters()]
    x.grad = None
    layers.zero_grad()
    (_explicit(layers, x, 3) * upstream).sum().backward()
    want = [x.grad] + [p.grad for p in layers.parameters()]
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def test_views_fused_norm_leaky_relu_gradcheck():
    from cdsvae.models.frames import _NormLeakyReLU

    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([1.5, -0.7, 0.3], dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    mean = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    invstd = (torch.rand(3, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    fn = lambda a, w, b, m, i: _NormLeakyReLU.apply(a, w, b, m, i, 0.2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, weight, bias, mean, invstd))
    explicit = nn.functional.leaky_relu((x - mean[:, None]) * invstd[:, None] * weight[:, None] + bias[:, None], 0.2)
    assert torch.allclose(fn(x, weight, bias, mean, invstd), explicit)


@pytest.mark.parametrize("norm_cls, make_input", [
    (ReferenceBatchNorm2d, lambda g: torch.randn(6, 2, 5, 5, generator=g, dtype=torch.float64)),
    (ReferenceBatchNorm1d, lambda g: torch.randn(6, 2, 9, generator=g, dtype=torch.float64)),
])
def test_views_do_not_give_normalised_layers_phantom_gradients(norm_cls, make_input):
    """A bias feeding a batch norm cannot change the output, nor can the scale of the weights:
    their gradients must vanish (zero for the bias, orthogonal to the weights), views included.
    Holding the reference statistics constant for the views broke both, and Adam turned the
    phantom gradient into a steady drift that the running averages could not follow."""
    g = torch.Generator().manual_seed(5)
    conv = nn.Conv2d if norm_cls is ReferenceBatchNorm2d else nn.Conv1d
    layers = nn.ModuleList([conv(2, 3, 3), norm_cls(3, eps=0.0), nn.LeakyReLU(0.2),
                            conv(3, 4, 3), norm_cls(4, eps=0.0), nn.Tanh()]).double()
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
                layer.bias.normal_(generator=g)
    x, views = make_input(g), make_input(g) * 3 + 1
    upstream = torch.randn(apply_layers(layers, x, views).shape, generator=g, dtype=torch.float64)
    for layer in layers:
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
    (apply_layers(layers, x, views) * upstream).sum().backward()
    for conv_layer in (layers[0], layers[3]):
        assert conv_layer.bias.grad.abs().max() < 1e-10
        radial = (conv_layer.weight * conv_layer.weight.grad).flatten(1).sum(1)
        assert radial.abs().max() < 1e-10


def test_views_with_near_zero_norm_weight_fall_back_to_plain_path():
    layers = _stack(ReferenceBatchNorm2d, seed=2).double()
    with torch.no_grad():
        layers[1].weight[0] = 1e-6  # not safely invertible: the unfused path must be used
    x = torch.randn(7, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(7, 4, 2, 2, dtype=torch.float64)
    (apply_layers(layers, x[:3], x[3:]) * upstream).sum().backward()
    got = [p.grad.clone() for p in layers.parameters()]
    layers.zero_grad()
    (_explicit(layers, x, 3) * upstream).sum().backward()
    for a, b in zip(got, [p.grad for p in layers.parameters()]):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def test_eval_mode_and_no_reference_use_plain_layers():
    layers = _stack(ReferenceBatchNorm2d)
    plain = _stack(nn.BatchNorm2d)
    x = torch.randn(5, 2, 6, 6)
    assert torch.allclose(apply_layers(layers, x), nn.Sequential(*plain)(x), atol=1e-6)
    layers.eval()
    plain.eval()
    assert torch.allclose(apply_layers(layers, x[:2], x[2:]), nn.Sequential(*plain)(x), atol=1e-6)


def test_single_value_per_channel_is_a_clear_error():
    layers = nn.ModuleList([ReferenceBatchNorm1d(2)])
    with pytest.raises(ValueError, match="more than one value per channel"):
        apply_layers(layers, torch.randn(1, 2), torch.randn(2, 2))


@pytest.mark.parametrize("frame", ["mlp", "conv64"])
def test_training_step_bn_statistics_come_from_original_frames(frame):
    """After a C-DSVAE step the running stats equal those of a pass on x alone, and x's terms too;
    the authors' way (a separate train-mode pass per view) would have moved them."""
    cfg = dict(frame=frame, in_channels=1, feat_dim=6, s_dim=4, z_dim=2, hidden_dim=6, g_dim=4,
               conv_width=4, frame_hidden=8)
    shape = (4, 3, 1, 64, 64) if frame == "conv64" else (4, 3, 6)
    torch.manual_seed(0)
    x = torch.rand(*shape)
    x_motion = (x * 5 + 3)  # a view with very different statistics
    x_content = x.flip(1)
    torch.manual_seed(1)
    ours = build_model(cfg)
    alone = build_model(cfg)
    alone.load_state_dict(ours.state_dict())
    authors = build_model(cfg)
    authors.load_state_dict(ours.state_dict())

    torch.manual_seed(2)
    _, terms = cdsvae_loss(ours, x, x_content, x_motion, LossWeights(), 10)
    torch.manual_seed(2)
    out = alone(x)
    authors(x)
    authors(x_content)
    authors(x_motion)

    b = x.shape[0]
    assert terms["recon"].item() == pytest.approx(((out.recon - x) ** 2).sum().item() / b, rel=1e-5)
    bn_ours = {k: v for k, v in ours.state_dict().items() if "frame_encoder" in k and "running" in k}
    bn_alone = {k: v for k, v in alone.state_dict().items() if "frame_encoder" in k and "running" in k}
    bn_authors = {k: v for k, v in authors.state_dict().items() if "frame_encoder" in k and "running" in k}
    assert bn_ours
    for k in bn_ours:
        assert torch.allclose(bn_ours[k], bn_alone[k], atol=1e-6), k
    assert any(not torch.allclose(bn_ours[k], bn_authors[k], atol=1e-4) for k in bn_ours)


def test_decided_invertibility_reads_the_weights_once_not_per_step():
    from _syncs import host_reads

    from cdsvae.models.frames import decide_invertibility

    layers = _stack(ReferenceBatchNorm2d, seed=2).double()
    with torch.no_grad():
        layers[1].weight[0] = 1e-6
    x = torch.randn(7, 2, 6, 6, dtype=torch.float64)
    upstream = torch.randn(7, 4, 2, 2, dtype=torch.float64)

    def step():
        layers.zero_grad()
        (apply_layers(layers, x[:3], x[3:]) * upstream).sum().backward()
        return [p.grad.clone() for p in layers.parameters()]

    undecided_reads, _, undecided = host_reads(step)
    assert undecided_reads >= 1  # each step reads the weights of the layer followed by LeakyReLU
    decide_reads, _, _ = host_reads(lambda: decide_invertibility(layers))
    assert decide_reads == 0  # one .tolist() for all layers, not a scalar read per layer
    assert layers[1]._views_invertible is False and layers[4]._views_invertible is True
    decided_reads, _, decided = host_reads(step)
    assert decided_reads == 0
    assert all(torch.equal(a, b) for a, b in zip(undecided, decided))
    # The decision holds until the next one: weights that became safe are not read again ...
    with torch.no_grad():
        layers[1].weight[0] = 1.0
    assert host_reads(step)[0] == 0
    # ... and the next decision takes the fused path, with the gradients of the explicit formula.
    decide_invertibility(layers)
    assert layers[1]._views_invertible is True
    for a, b in zip(step(), _fused_step(layers, x, upstream)):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)
    decide_invertibility(layers, decide=False)
    assert all(getattr(m, "_views_invertible", None) is None for m in layers)


def _fused_step(layers, x, upstream):
    layers.zero_grad()
    (_explicit(layers, x, 3) * upstream).sum().backward()
    return [p.grad.clone() for p in layers.parameters()]
