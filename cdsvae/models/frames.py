"""Per-frame encoders and decoders, one pair per input modality.

Encoders map a batch of frames (N, *frame_shape) to embeddings (N, g_dim); frames of
augmented views passed as ``extra`` (M, *frame_shape) share the call without touching
the batch-norm statistics (below) and come back after x's,
as (N + M, g_dim). Decoders map (N, in_dim) back to frames.

Their batch normalisation takes its statistics from the original frames only (:class:`ReferenceBatchNorm1d`,
:class:`ReferenceBatchNorm2d`).

The training step puts the original frames and their augmented views through one frame
encoder call. Ordinary BatchNorm would mix the views into the batch statistics and the
running averages (a defect of the authors' code). Here, in training mode, the original
frames go through the layer stack first with ordinary training-mode BatchNorm (PyTorch's
fused kernel): their outputs, gradients and running averages are exactly those of a pass
on them alone. The views then go through the same layers normalised with x's batch
statistics, as eval mode normalises everything with the running averages. Views are
thus normalised as the data are, and in eval mode everything equals separate passes.

The statistics the views use are x's batch mean and variance *as functions of the
parameters*, so gradients flow through them. Holding them constant instead (detaching
them) is wrong in a way that shows only after training: the views' loss then sees a
gradient on each bias feeding a batch norm, and on the scale of its weights, that the
real function does not have (a shift of the layer's input moves x's mean with it, so
the normalised output cannot change). Adam turns that phantom gradient into a steady
drift of those biases at the full step size, the running averages lag behind it by the
momentum's horizon, and eval mode then reconstructs several times worse than training.

With given statistics, BatchNorm followed by LeakyReLU is an invertible per-channel
map, so the views' pass keeps only its output (which the next convolution keeps anyway)
and recovers the rest in backward: one stored activation per block instead of two.
"""

from __future__ import annotations

import torch
from torch import nn


def _reduce_dims(x):
    return [0] + list(range(2, x.dim()))


def _channel_view(t, x):
    return t.view([1, -1] + [1] * (x.dim() - 2))


class _ReferenceBatchNorm:
    def forward_reference(self, x):
        """Training-mode BN of x; returns (output, (mean, var)), x's batch statistics, differentiable in x."""
        self._check_input_dim(x)
        if x.numel() // x.shape[1] < 2:
            raise ValueError(
                "BatchNorm in training mode needs more than one value per channel in the "
                f"original frames, got input of shape {tuple(x.shape)}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        out = torch.native_batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                                      True, factor, self.eps)[0]
        # The kernel's saved statistics carry no gradient; these do (x is saved for backward anyway).
        var, mean = torch.var_mean(x, dim=_reduce_dims(x), correction=0)
        return out, (mean, var)

    def forward_with_stats(self, x, stats):
        """BN of x with the given (mean, var); gradients flow into the statistics too."""
        self._check_input_dim(x)
        mean, var = stats
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        return torch.addcmul(_channel_view(shift, x).to(x.dtype), x, _channel_view(scale, x).to(x.dtype))


class ReferenceBatchNorm1d(_ReferenceBatchNorm, nn.BatchNorm1d):
    """BatchNorm1d whose statistics :func:`apply_layers` can take from the original frames."""


class ReferenceBatchNorm2d(_ReferenceBatchNorm, nn.BatchNorm2d):
    """BatchNorm2d whose statistics :func:`apply_layers` can take from the original frames."""


def apply_layers(layers, x, extra=None):
    """Run ``layers`` on x, and on ``extra`` with batch-norm statistics from x alone.

    Returns the outputs for x, or for cat([x, extra]) when ``extra`` is given. In
    training mode x goes first, recording each batch norm's statistics; ``extra`` then
    goes through the same layers normalised with those statistics (gradients flow through
    them into x's path). In eval mode both use the running averages, so the result equals
    a pass on each part alone.
    """
    if extra is None:
        return _sequential(layers, x)
    norms = [layer for layer in layers if isinstance(layer, _ReferenceBatchNorm)]
    if not any(norm.training for norm in norms):
        return torch.cat([_sequential(layers, x), _sequential(layers, extra)])
    stats = []
    for layer in layers:
        if isinstance(layer, _ReferenceBatchNorm):
            x, layer_stats = layer.forward_reference(x)
            stats.append(layer_stats)
        else:
            x = layer(x)
    recorded = iter(stats)
    skip_next = False
    for i, layer in enumerate(layers):
        if skip_next:
            skip_next = False
        elif isinstance(layer, _ReferenceBatchNorm):
            following = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(following, nn.LeakyReLU) and following.negative_slope > 0 and _invertible(layer):
                mean, var = next(recorded)
                invstd = torch.rsqrt(var + layer.eps)
                extra = _NormLeakyReLU.apply(extra, layer.weight, layer.bias, mean, invstd,
                                             following.negative_slope)
                skip_next = True
            else:
                extra = layer.forward_with_stats(extra, next(recorded))
        else:
            extra = layer(extra)
    return torch.cat([x, extra])


MIN_ABS_WEIGHT = 1e-3  # below this, recovering x from the output in backward loses too many bits


def _invertible(norm):
    decided = getattr(norm, "_views_invertible", None)
    if decided is not None:
        return decided
    return (norm.weight is not None and norm.bias is not None
            and bool(norm.weight.detach().abs().min() >= MIN_ABS_WEIGHT))  # a host sync per layer


def decide_invertibility(model, decide=True):
    """Fix, for every reference batch norm in ``model``, whether the views' pass may keep only its
    output (every weight at least ``MIN_ABS_WEIGHT`` in magnitude), with one host read for all layers.

    Until the next call, training steps use this decision instead of reading each layer's weights
    (a host-device sync per layer per step). The trainer decides at fixed points of a run (epoch
    starts, log points, checkpoints), so a resumed run decides as the uninterrupted one did.
    ``decide=False`` drops the decisions: each step reads the weights again.
    """
    norms = [m for m in model.modules() if isinstance(m, _ReferenceBatchNorm)]
    if not decide:
        for norm in norms:
            norm._views_invertible = None
        return
    affine = [n for n in norms if n.weight is not None and n.bias is not None]
    smallest = torch.stack([n.weight.detach().abs().min().float() for n in affine]).tolist() if affine else []
    for norm in norms:
        norm._views_invertible = False
    for norm, value in zip(affine, smallest):
        norm._views_invertible = value >= MIN_ABS_WEIGHT


class _NormLeakyReLU(torch.autograd.Function):
    """leaky_relu(weight * (x - mean) * invstd + bias), keeping only its output.

    Differentiable in x, weight, bias, mean and invstd. The next layer keeps this output
    anyway; x is recovered from it in backward (LeakyReLU with a positive slope and the
    affine map are invertible), so the views' pass stores one tensor per block instead of
    two. Used only when every |weight| >= 1e-3.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd, slope):
        scale = (weight * invstd).to(x.dtype)
        shift = (bias - mean * invstd * weight).to(x.dtype)
        out = torch.addcmul(_channel_view(shift, x), x, _channel_view(scale, x))
        out = nn.functional.leaky_relu_(out, slope)
        ctx.save_for_backward(out, weight, bias, invstd)
        ctx.slope = slope
        return out

    @staticmethod
    def backward(ctx, grad_out):
        # ordered so that at most two activation-sized temporaries exist at once
        out, weight, bias, invstd = ctx.saved_tensors
        need_x, need_w, need_b, need_mean, need_invstd = ctx.needs_input_grad[:5]
        dims = _reduce_dims(out)
        grad_pre = torch.ops.aten.leaky_relu_backward(grad_out, out, ctx.slope, True)
        grad_weight = grad_bias = grad_mean = grad_invstd = None
        if need_w or need_b or need_mean or need_invstd:
            sum_grad = grad_pre.sum(dims).to(bias.dtype)  # sum of grad_pre per channel
            if need_b:
                grad_bias = sum_grad
            if need_mean:
                grad_mean = -sum_grad * weight * invstd
            if need_w or need_invstd:
                pre = nn.functional.leaky_relu(out, 1.0 / ctx.slope)  # inverse of the activation
                # x_hat = (pre - bias) / weight, so sum(grad_pre * x_hat) needs no stored x
                sum_grad_xhat = (pre.mul_(grad_pre).sum(dims).to(weight.dtype) - bias * sum_grad) / weight
                del pre
                if need_w:
                    grad_weight = sum_grad_xhat
                if need_invstd:
                    # d/d invstd of weight * (x - mean) * invstd is weight * x_hat / invstd
                    grad_invstd = sum_grad_xhat * weight / invstd
        grad_x = grad_pre.mul_(_channel_view((weight * invstd).to(out.dtype), out)) if need_x else None
        return grad_x, grad_weight, grad_bias, grad_mean, grad_invstd, None


def _sequential(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def _check_frames(frame_shape, *batches):
    for x in batches:
        if x is not None and tuple(x.shape[1:]) != frame_shape:
            raise ValueError(f"expected frames of shape {frame_shape}, got {tuple(x.shape[1:])}")


class Conv64Encoder(nn.Module):
    """DCGAN-style stack for C x 64 x 64 images, as in the authors' image model.

    4 x [conv 4x4 stride 2, BN, LeakyReLU 0.2] (width, 2, 4, 8 x width channels),
    then conv 4x4 to g_dim, BN, tanh.
    """

    def __init__(self, in_channels=3, g_dim=128, width=64):
        super().__init__()
        self.frame_shape = (in_channels, 64, 64)
        layers = []
        channels = [in_channels, width, 2 * width, 4 * width, 8 * width]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1),
                ReferenceBatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(8 * width, g_dim, 4, 1, 0), ReferenceBatchNorm2d(g_dim), nn.Tanh()]
        self.layers = nn.ModuleList(layers)

    def forward(self, x, extra=None):
        _check_frames(self.frame_shape, x, extra)
        return apply_layers(self.layers, x, extra).flatten(1)


class Conv64Decoder(nn.Module):
    """Mirror of :class:`Conv64Encoder` with transposed convolutions and a sigmoid output."""

    def __init__(self, in_dim, out_channels=3, width=64):
        super().__init__()
        channels = [8 * width, 4 * width, 2 * width, width]
        layers = [nn.ConvTranspose2d(in_dim, channels[0], 4, 1, 0), nn.BatchNorm2d(channels[0]),
                  nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.ConvTranspose2d(width, out_channels, 4, 2, 1), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, h):
        return self.layers(h[:, :, None, None])


class MLPFrameEncoder(nn.Module):
    """Two hidden layers for spectral frames of ``feat_dim`` bins (e.g. 80 log-mel)."""

    def __init__(self, feat_dim, g_dim=128, hidden=256):
        super().__init__()
        self.frame_shape = (feat_dim,)
        self.layers = nn.ModuleList([
            nn.Linear(feat_dim, hidden), ReferenceBatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, hidden), ReferenceBatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, g_dim), ReferenceBatchNorm1d(g_dim), nn.Tanh(),
        ])

    def forward(self, x, extra=None):
        _check_frames(self.frame_shape, x, extra)
        return apply_layers(self.layers, x, extra)


class MLPFrameDecoder(nn.Module):
    """Mirror of :class:`MLPFrameEncoder`; linear output because log-mel is unbounded."""

    def __init__(self, in_dim, feat_dim, hidden=256):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, feat_dim),
        )

    def forward(self, h):
        return self.layers(h)


def _halvings(length, times=3):
    for _ in range(times):
        length = (length + 1) // 2
    return length


class Conv1dFrameEncoder(nn.Module):
    """1-D convolutions along the frequency axis of one spectral frame.

    3 x [conv 5 stride 2, BN, LeakyReLU] with (c, 2c, 4c) channels, c = hidden // 8,
    then a linear layer to g_dim, BN, tanh: local spectral patterns (formants,
    harmonics) share weights across frequency.
    """

    def __init__(self, feat_dim, g_dim=128, hidden=256):
        super().__init__()
        c = max(hidden // 8, 1)
        self.frame_shape = (feat_dim,)
        length = _halvings(feat_dim)
        self.layers = nn.ModuleList([
            nn.Conv1d(1, c, 5, 2, 2), ReferenceBatchNorm1d(c), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(c, 2 * c, 5, 2, 2), ReferenceBatchNorm1d(2 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(2 * c, 4 * c, 5, 2, 2), ReferenceBatchNorm1d(4 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(1), nn.Linear(4 * c * length, g_dim), ReferenceBatchNorm1d(g_dim), nn.Tanh(),
        ])

    def forward(self, x, extra=None):
        _check_frames(self.frame_shape, x, extra)
        return apply_layers(self.layers, x[:, None, :], None if extra is None else extra[:, None, :])


class Conv1dFrameDecoder(nn.Module):
    """Mirror of :class:`Conv1dFrameEncoder`; output cropped to ``feat_dim``, linear."""

    def __init__(self, in_dim, feat_dim, hidden=256):
        super().__init__()
        c = max(hidden // 8, 1)
        self.feat_dim = feat_dim
        self.length = _halvings(feat_dim)
        self.channels = 4 * c
        self.fc = nn.Sequential(nn.Linear(in_dim, 4 * c * self.length),
                                nn.BatchNorm1d(4 * c * self.length), nn.LeakyReLU(0.2, inplace=True))
        self.deconv = nn.Sequential(
            nn.ConvTranspose1d(4 * c, 2 * c, 4, 2, 1), nn.BatchNorm1d(2 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.ConvTranspose1d(2 * c, c, 4, 2, 1), nn.BatchNorm1d(c), nn.LeakyReLU(0.2, inplace=True),
            nn.ConvTranspose1d(c, 1, 4, 2, 1),
        )

    def forward(self, h):
        h = self.fc(h).view(h.shape[0], self.channels, self.length)
        return self.deconv(h)[:, 0, : self.feat_dim]


def build_frame_coders(frame, g_dim, dec_in_dim, in_channels=3, feat_dim=80, conv_width=64,
                       frame_hidden=256):
    """(encoder, decoder) for a frame type: "conv64", "mlp" or "conv1d"."""
    if frame == "conv64":
        return (Conv64Encoder(in_channels, g_dim, conv_width),
                Conv64Decoder(dec_in_dim, in_channels, conv_width))
    if frame == "mlp":
        return (MLPFrameEncoder(feat_dim, g_dim, frame_hidden),
                MLPFrameDecoder(dec_in_dim, feat_dim, frame_hidden))
    if frame == "conv1d":
        return (Conv1dFrameEncoder(feat_dim, g_dim, frame_hidden),
                Conv1dFrameDecoder(dec_in_dim, feat_dim, frame_hidden))
    raise ValueError(f"unknown frame type {frame!r}; expected one of conv64, mlp, conv1d")


__all__ = [
    "Conv64Encoder", "Conv64Decoder", "MLPFrameEncoder", "MLPFrameDecoder",
    "Conv1dFrameEncoder", "Conv1dFrameDecoder", "build_frame_coders",
]
