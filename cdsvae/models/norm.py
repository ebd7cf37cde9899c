"""Batch normalisation whose statistics come from the original frames only.

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
