"""Batch normalisation whose statistics come from the original frames only.

The training step puts the original frames and their augmented views through one frame
encoder call. Ordinary BatchNorm would mix the views into the batch statistics and the
running averages (a defect of the authors' code). Here, in training mode, the original
frames go through the layer stack first with ordinary training-mode BatchNorm (PyTorch's
fused kernel, which also hands back the batch statistics): their outputs, gradients and
running averages are exactly those of a pass on them alone. The views then go through
the same layers normalised with those statistics held constant, as eval mode holds the
running averages constant. Views are thus normalised as the data are, and in eval mode
everything equals separate passes.

With constant statistics, BatchNorm followed by LeakyReLU is an invertible per-channel
map, so the views' pass keeps only its output (which the next convolution keeps anyway)
and recovers the rest in backward: one stored activation per block instead of two.
"""

import torch
from torch import nn


class _ReferenceBatchNorm:
    def forward_reference(self, x):
        """Training-mode BN of x; returns (output, (mean, var)) with the batch statistics, detached."""
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
        out, mean, invstd = torch.native_batch_norm(x, self.weight, self.bias, self.running_mean,
                                                    self.running_var, True, factor, self.eps)
        var = invstd.detach().pow(-2) - self.eps
        return out, (mean.detach(), var)

    def forward_with_stats(self, x, stats):
        """BN of x with given (mean, var), held constant."""
        self._check_input_dim(x)
        mean, var = stats
        return nn.functional.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)


class ReferenceBatchNorm1d(_ReferenceBatchNorm, nn.BatchNorm1d):
    """BatchNorm1d whose statistics :func:`apply_layers` can take from the original frames."""


class ReferenceBatchNorm2d(_ReferenceBatchNorm, nn.BatchNorm2d):
    """BatchNorm2d whose statistics :func:`apply_layers` can take from the original frames."""


def apply_layers(layers, x, extra=None):
    """Run ``layers`` on x, and on ``extra`` with batch-norm statistics from x alone.

    Returns the outputs for x, or for cat([x, extra]) when ``extra`` is given. In
    training mode x goes first, recording each batch norm's statistics; ``extra`` then
    goes through the same layers with those statistics held constant. In eval mode both
    use the running averages, so the result equals a pass on each part alone.
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
                extra = _FixedNormLeakyReLU.apply(extra, layer.weight, layer.bias, mean, invstd,
                                                  following.negative_slope)
                skip_next = True
            else:
                extra = layer.forward_with_stats(extra, next(recorded))
        else:
            extra = layer(extra)
    return torch.cat([x, extra])


def _invertible(norm, min_abs_weight=1e-3):
    return (norm.weight is not None and norm.bias is not None
            and bool(norm.weight.detach().abs().min() >= min_abs_weight))


class _FixedNormLeakyReLU(torch.autograd.Function):
    """leaky_relu(weight * (x - mean) * invstd + bias) with constant statistics, keeping only its output.

    The next layer keeps this output anyway; x is recovered from it in backward (LeakyReLU
    with a positive slope and the affine map are invertible), so the views' pass stores
    one tensor per block instead of two. Used only when every |weight| >= 1e-3.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd, slope):
        shape = [1, -1] + [1] * (x.dim() - 2)
        scale = (weight * invstd).to(x.dtype)
        shift = (bias - mean * invstd * weight).to(x.dtype)
        out = torch.addcmul(shift.view(shape), x, scale.view(shape))
        out = nn.functional.leaky_relu_(out, slope)
        ctx.save_for_backward(out, weight, bias, invstd)
        ctx.slope = slope
        return out

    @staticmethod
    def backward(ctx, grad_out):
        # ordered so that at most two activation-sized temporaries exist at once
        out, weight, bias, invstd = ctx.saved_tensors
        shape = [1, -1] + [1] * (out.dim() - 2)
        dims = [0] + list(range(2, out.dim()))
        grad_pre = torch.ops.aten.leaky_relu_backward(grad_out, out, ctx.slope, True)
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_bias = grad_pre.sum(dims).to(bias.dtype)
            pre = nn.functional.leaky_relu(out, 1.0 / ctx.slope)  # inverse of the activation
            # x_hat = (pre - bias) / weight, so sum(grad_pre * x_hat) needs no stored x
            grad_weight = (pre.mul_(grad_pre).sum(dims).to(weight.dtype) - bias * grad_bias) / weight
            del pre
        grad_x = grad_pre.mul_((weight * invstd).to(out.dtype).view(shape)) if ctx.needs_input_grad[0] else None
        return grad_x, grad_weight, grad_bias, None, None, None


def _sequential(layers, x):
    for layer in layers:
        x = layer(x)
    return x
