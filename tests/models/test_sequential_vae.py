"""Shapes, dtypes and recurrences of the sequential VAE; build_model's config checks."""

import pytest
import torch
from torch import nn

from cdsvae.io import UserError
from cdsvae.models import MODEL, SequentialVAE, build_model

SMALL = dict(s_dim=6, z_dim=3, hidden_dim=8, g_dim=5, conv_width=4, frame_hidden=16)
FRAMES = {
    "conv64": (dict(frame="conv64", in_channels=3), (3, 64, 64)),
    "conv64_gray": (dict(frame="conv64", in_channels=1), (1, 64, 64)),
    "mlp": (dict(frame="mlp", feat_dim=13), (13,)),
    "conv1d": (dict(frame="conv1d", feat_dim=13), (13,)),
    "conv1d_80": (dict(frame="conv1d", feat_dim=80), (80,)),
}


def _model(kind, **extra):
    cfg, shape = FRAMES[kind]
    torch.manual_seed(0)
    return build_model({**cfg, **SMALL, **extra}), shape


@pytest.mark.parametrize("kind", list(FRAMES))
@pytest.mark.parametrize("b,t", [(3, 4), (5, 1), (1, 2)])
def test_forward_shapes_and_dtypes(kind, b, t):
    model, shape = _model(kind)
    x = torch.rand(b, t, *shape)
    out = model(x)
    assert out.s_mean.shape == out.s_logvar.shape == out.s.shape == (b, 6)
    for name in ("z_mean", "z_logvar", "z", "z_prior_mean", "z_prior_logvar"):
        assert getattr(out, name).shape == (b, t, 3), name
    assert out.recon.shape == x.shape
    assert all(v.dtype == torch.float32 for v in out if v is not None)
    assert out.s_mean_content is None and out.z_mean_motion is None
    if kind.startswith("conv64"):
        assert out.recon.min() >= 0 and out.recon.max() <= 1  # sigmoid output for images


def test_batch_of_one_frame_in_eval_and_float64():
    model, shape = _model("mlp")
    model.eval()
    x = torch.rand(1, 1, *shape)
    assert model(x).recon.shape == x.shape
    model = model.double()
    assert model(x.double()).recon.dtype == torch.float64


def test_bad_input_shape_is_named():
    model, _ = _model("mlp")
    with pytest.raises(ValueError, match=r"\(B, T, 13\)"):
        model(torch.rand(2, 3, 12))
    with pytest.raises(ValueError, match="x_motion"):
        model(torch.rand(2, 3, 13), x_motion=torch.rand(2, 4, 13))


def test_sampling_follows_mode():
    model, shape = _model("mlp")
    x = torch.rand(4, 3, *shape)
    out = model(x)
    assert not torch.equal(out.s, out.s_mean)
    model.eval()
    out = model(x)
    assert torch.equal(out.s, out.s_mean) and torch.equal(out.z, out.z_mean)


def test_views_share_the_pass_without_changing_x():
    model, shape = _model("mlp")
    model.eval()
    x, xm = torch.rand(3, 4, *shape), torch.rand(3, 4, *shape)
    order = torch.stack([torch.randperm(4) for _ in range(3)])
    xc = x[torch.arange(3)[:, None], order]
    out = model(x, x_content=xc, x_motion=xm)
    plain = model(x)
    for a, b in zip(out[:9], plain):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(out.s_mean_content, model(xc).s_mean, atol=1e-6)
    assert torch.allclose(out.z_mean_motion, model(xm).z_mean, atol=1e-6)
    by_index = model(x, content_index=order)
    assert torch.allclose(by_index.s_mean_content, out.s_mean_content, atol=1e-6)


def _copy_lstm_direction(lstm, suffix):
    one = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(one, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l0{suffix}"))
    return one


def test_static_posterior_reads_forward_end_and_backward_start():
    model, shape = _model("mlp")
    model.eval()
    x = torch.rand(2, 5, *shape)
    h = model._embed(x)
    fwd, _ = _copy_lstm_direction(model.lstm, "")(h)
    bwd, _ = _copy_lstm_direction(model.lstm, "_reverse")(h.flip(1))
    summary = torch.cat([fwd[:, -1], bwd[:, -1]], dim=-1)  # backward state at frame 1
    assert torch.allclose(model.encode(x).s_mean, model.s_mean_head(summary), atol=1e-6)


def _prior_cells(model):
    cells = []
    for layer in range(2):
        cell = nn.LSTMCell(model.z_dim if layer == 0 else model.hidden_dim, model.hidden_dim)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).data.copy_(getattr(model.prior_lstm, f"{name}_l{layer}"))
        cells.append(cell)
    return cells


def _prior_step(model, cells, state, z_prev):
    (h1, c1), (h2, c2) = state
    h1, c1 = cells[0](z_prev, (h1, c1))
    h2, c2 = cells[1](h1, (h2, c2))
    return ((h1, c1), (h2, c2)), model.prior_mean_head(h2), model.prior_logvar_head(h2)


def test_teacher_forced_prior_equals_two_stacked_lstm_cells():
    model, _ = _model("mlp")
    cells = _prior_cells(model)
    z = torch.randn(3, 4, model.z_dim)
    zeros = torch.zeros(3, model.hidden_dim)
    state, z_prev, means, logvars = ((zeros, zeros), (zeros, zeros)), torch.zeros(3, model.z_dim), [], []
    for t in range(4):
        state, mean, logvar = _prior_step(model, cells, state, z_prev)
        means.append(mean)
        logvars.append(logvar)
        z_prev = z[:, t]  # teacher forcing: the given trajectory, not the prior's draw
    mean, logvar = model._prior(z)
    assert torch.allclose(mean, torch.stack(means, 1), atol=1e-6)
    assert torch.allclose(logvar, torch.stack(logvars, 1), atol=1e-6)


def test_free_running_prior_feeds_its_own_draws():
    model, _ = _model("mlp")
    cells = _prior_cells(model)
    got = model.sample_z_prior(2, 5, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    zeros = torch.zeros(2, model.hidden_dim)
    state, z_prev, steps = ((zeros, zeros), (zeros, zeros)), torch.zeros(2, model.z_dim), []
    with torch.no_grad():
        for _ in range(5):
            state, mean, logvar = _prior_step(model, cells, state, z_prev)
            z_prev = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
            steps.append(z_prev)
    assert torch.allclose(got, torch.stack(steps, 1), atol=1e-5)


def test_generation_api_shapes_and_determinism():
    model, shape = _model("conv64_gray")
    model.eval()
    x = torch.rand(3, 4, *shape)
    enc = model.encode(x)
    assert enc.s.shape == (3, 6) and enc.z.shape == (3, 4, 3)
    assert model.decode(enc.s_mean, enc.z_mean).shape == x.shape
    assert model.sample_s(5).shape == (5, 6)
    assert model.sample_z_prior(5, 7).shape == (5, 7, 3)
    a = model.generate(2, 3, generator=torch.Generator().manual_seed(1))
    b = model.generate(2, 3, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 3, *shape) and torch.equal(a, b)
    y = torch.rand(3, 6, *shape)
    swapped = model.swap(x, y)
    assert swapped.shape == (3, 6, *shape)
    expected = model.decode(model.encode(x).s_mean, model.encode(y).z_mean)
    assert torch.allclose(swapped, expected, atol=1e-6)
    assert model.swap(x[:1], y).shape == (3, 6, *shape)  # one s, many motions
    with pytest.raises(ValueError, match="equal batch sizes"):
        model.swap(x[:2], y)


def test_build_model_config():
    model = build_model({"frame": "mlp", "feat_dim": 7})
    assert isinstance(model, SequentialVAE)
    assert model.config == {**MODEL.defaults(), "frame": "mlp", "feat_dim": 7}
    assert model.s_dim == 256 and model.z_dim == 32 and model.hidden_dim == 256
    with pytest.raises(UserError, match=r"unknown key 'model.zdim'; valid keys in 'model': .*z_dim"):
        build_model({"frame": "mlp", "zdim": 3})
    with pytest.raises(UserError, match=r"'model.frame' must be one of conv64\|mlp\|conv1d, got 'resnet'"):
        build_model({"frame": "resnet"})
    with pytest.raises(UserError, match=r"'model.s_dim' must be an integer >= 1, got 0"):
        build_model({"s_dim": 0})
    with pytest.raises(UserError, match=r"'model.init_std' must be a number >= 0"):
        build_model({"init_std": -1})
    with pytest.raises(UserError, match=r"'model.init_std' must be a positive number, got 0.0"):
        build_model({"init_std": 0})


def test_authors_init_and_lstm_posterior_option():
    model = build_model({"frame": "mlp", "feat_dim": 7, "z_rnn": "lstm", **SMALL})
    assert isinstance(model.z_rnn, nn.LSTM)
    w = model.frame_encoder.layers[0].weight
    assert abs(w.std().item() - 0.01) < 0.003 and model.s_mean_head.bias.abs().max() == 0
    default = build_model({"frame": "mlp", "feat_dim": 7, "init": "default", **SMALL})
    assert default.s_mean_head.bias.abs().max() > 0


def test_default_conv64_encoder_is_the_dcgan_stack():
    model = build_model({})
    assert model.frame_shape == (3, 64, 64)
    convs = [(3, 64), (64, 128), (128, 256), (256, 512), (512, 128)]
    expected = sum(i * o * 16 + o for i, o in convs) + sum(2 * o for _, o in convs)  # conv + BN
    assert sum(p.numel() for p in model.frame_encoder.parameters()) == expected == 3_807_424
    assert model.decode(torch.zeros(2, 256), torch.zeros(2, 3, 32)).shape == (2, 3, 3, 64, 64)


class _GeneratorDeviceCheck(torch.overrides.TorchFunctionMode):
    """Refuses a draw whose generator lives on another device than the tensor it makes, as
    torch does for a CPU generator and a CUDA tensor (the meta device here takes the GPU's part:
    torch itself does not check generators there)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        gen = kwargs.get("generator")
        if gen is not None and func in (torch.randn, torch.rand, torch.randint, torch.normal):
            device = torch.device(kwargs.get("device") or "cpu")
            if device.type != gen.device.type:
                raise RuntimeError(f"Expected a '{device.type}' device type for generator but found "
                                   f"'{gen.device.type}'")
        return func(*args, **kwargs)


@pytest.mark.parametrize("kind", ["conv1d", "conv64"])
def test_a_cpu_generator_draws_for_a_model_on_another_device(kind):
    """The swap protocols seed a CPU generator and hand it to a model on the GPU."""
    model, shape = _model(kind)
    on_cpu = {
        "s": model.sample_s(3, generator=torch.Generator().manual_seed(5)),
        "z": model.sample_z_prior(3, 4, generator=torch.Generator().manual_seed(5)),
        "enc": model.encode(torch.rand(2, 4, *shape, generator=torch.Generator().manual_seed(1)),
                            generator=torch.Generator().manual_seed(5)).s,
    }
    model.to("meta")
    with _GeneratorDeviceCheck():
        s = model.sample_s(3, generator=torch.Generator().manual_seed(5))
        z = model.sample_z_prior(3, 4, generator=torch.Generator().manual_seed(5))
        enc = model.encode(torch.rand(2, 4, *shape, generator=torch.Generator().manual_seed(1)).to("meta"),
                           generator=torch.Generator().manual_seed(5)).s
    assert s.device.type == z.device.type == enc.device.type == "meta"
    assert s.shape == on_cpu["s"].shape and z.shape == on_cpu["z"].shape and enc.shape == on_cpu["enc"].shape
    # the stand-in refuses what CUDA refuses
    with _GeneratorDeviceCheck(), pytest.raises(RuntimeError, match="device type for generator"):
        torch.randn(2, generator=torch.Generator(), device="meta")


def test_a_seeded_generator_gives_the_same_draws_as_the_same_generator_on_the_device():
    """A draw is made on the generator's device, so the numbers do not depend on the model's."""
    model, _ = _model("conv1d")
    s = model.sample_s(4, generator=torch.Generator().manual_seed(9))
    assert torch.equal(s, torch.randn(4, 6, generator=torch.Generator().manual_seed(9)))


@pytest.mark.parametrize("z_rnn", ["rnn", "lstm"])
def test_recurrent_layers_run_in_float32_under_bf16_autocast(z_rnn):
    """cuDNN's autocast runs RNNs in float16 even when bf16 was asked for, with no scaler to guard
    the gradients: the model keeps its recurrent layers in float32 under bf16 autocast instead."""
    model, shape = _model("conv1d", z_rnn=z_rnn)
    seen = {}
    for name in ("lstm", "z_rnn", "prior_lstm"):
        def hook(module, inputs, output, name=name):
            seen[name] = (inputs[0].dtype, output[0].dtype)
        getattr(model, name).register_forward_hook(hook)
    x = torch.rand(2, 5, *shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        gen = model.sample_z_prior(2, 3)
    assert seen == {n: (torch.float32, torch.float32) for n in ("lstm", "z_rnn", "prior_lstm")}
    assert out.z_mean.dtype == torch.bfloat16  # the linear heads still run under autocast
    assert gen.shape == (2, 3, 3)
    out.recon.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.lstm.parameters())
    seen.clear()
    with torch.autocast("cpu", dtype=torch.float16):  # float16 autocast is left as it is (GradScaler)
        model(x)
    assert seen["lstm"][1] == torch.float16


class _Shifted(nn.Module):
    """The wrapped LSTM's outputs scaled and shifted per channel, by amounts constant over time."""

    def __init__(self, lstm, scale, shift):
        super().__init__()
        self.lstm, self.scale, self.shift = lstm, scale, shift

    def forward(self, x, state=None):
        out, state = self.lstm(x, state)
        return out * self.scale + self.shift, state


def test_instance_normalised_z_input_ignores_per_sequence_offsets():
    model, shape = _model("conv1d", z_input_norm="instance")
    model.eval()
    x = torch.rand(2, 7, *shape)
    z = model.encode(x).z_mean
    width = 2 * model.hidden_dim
    gen = torch.Generator().manual_seed(1)
    model.lstm = _Shifted(model.lstm, 1.0, torch.randn(2, 1, width, generator=gen))
    enc = model.encode(x)
    torch.testing.assert_close(enc.z_mean, z, atol=1e-4, rtol=1e-4)
    # brute force: q(z_t) reads each channel standardised over time (biased variance, eps 1e-5)
    out, _ = model.lstm(model._embed(x))
    mean, var = out.mean(dim=1, keepdim=True), out.var(dim=1, unbiased=False, keepdim=True)
    zh, _ = model.z_rnn((out - mean) / torch.sqrt(var + 1e-5))
    torch.testing.assert_close(enc.z_mean, model.z_mean_head(zh))
    # s still reads the shifted outputs, and without the option z does too
    plain, _ = _model("conv1d")
    plain.eval()
    z_plain = plain.encode(x).z_mean
    plain.lstm = _Shifted(plain.lstm, 2.0, 1.0)
    assert not torch.allclose(plain.encode(x).z_mean, z_plain, atol=1e-3)


def test_z_input_norm_is_checked():
    with pytest.raises(UserError, match=r"'model.z_input_norm' must be one of none\|instance"):
        build_model({"frame": "mlp", "feat_dim": 7, "z_input_norm": "layer", **SMALL})


def _conv_over_time(x, conv):
    """Brute force of a zero-padded Conv1d over time on frames x (T, C_in) -> (T, C_out)."""
    w, b = conv.weight.detach(), conv.bias.detach()
    k = w.shape[-1]
    pad = torch.cat([torch.zeros(k // 2, x.shape[1]), x, torch.zeros(k // 2, x.shape[1])])
    return torch.stack([b + sum(w[:, :, j] @ pad[t + j] for j in range(k)) for t in range(x.shape[0])])


def test_postnet_adds_a_convolution_over_time_to_the_per_frame_decoder():
    model, shape = _model("conv1d", postnet_layers=2)
    model.eval()
    with torch.no_grad():
        for m in model.postnet.modules():  # away from the near-zero init, so the residual is visible
            if isinstance(m, nn.Conv1d):
                m.weight.normal_(0.0, 0.3)
                m.bias.normal_(0.0, 0.1)
        bn = model.postnet.layers[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    s, z = torch.randn(2, model.s_dim), torch.randn(2, 6, model.z_dim)
    out = model.decode(s, z)
    per_frame = model.frame_decoder(torch.cat([s[:, None].expand(2, 6, -1), z], -1).reshape(12, -1)).view(2, 6, -1)
    conv1, conv2 = model.postnet.layers[0], model.postnet.layers[3]
    for i in range(2):
        h = _conv_over_time(per_frame[i], conv1)
        h = torch.tanh((h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
        torch.testing.assert_close(out[i], per_frame[i] + _conv_over_time(h, conv2), atol=1e-5, rtol=1e-5)
    # each layer reaches 2 frames either way: z at frame 0 moves frames 0-4 and no later one
    z2 = z.clone()
    z2[:, 0] += 1.0
    moved = (model.decode(s, z2) - out).abs().amax(dim=(0, 2))
    assert bool((moved[:5] > 0).all()) and bool((moved[5:] == 0).all())


def test_postnet_is_optional_and_for_spectral_frames_only():
    plain, _ = _model("conv1d")
    assert plain.postnet is None and not any(k.startswith("postnet") for k in plain.state_dict())
    with pytest.raises(ValueError, match="postnet needs spectral frames"):
        _model("conv64", postnet_layers=2)
    with pytest.raises(UserError, match="model.postnet_layers"):
        build_model({"frame": "mlp", "feat_dim": 7, "postnet_layers": -1, **SMALL})
