"""Content views: the frames of each sequence reordered, which keeps s and breaks z_1:T."""

import torch

from cdsvae.errors import UserError

MODES = ("shuffle", "reverse")


def content_order(batch, length, generator=None, mode="shuffle", device=None):
    """Per-sequence frame orders (batch, length), int64: a random permutation each, or reversal.

    Drawn on the CPU from ``generator`` (a CPU torch.Generator; None uses the global
    RNG), so the same seed gives the same views on every device. For another ``device`` the
    order is copied from pinned memory without blocking: a copy from pageable memory would make
    the host wait for the GPU at every training step.
    """
    if mode not in MODES:
        raise UserError(f"content view mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "reverse":
        order = torch.arange(length - 1, -1, -1).expand(batch, length).contiguous()
    else:
        order = torch.rand(batch, length, generator=generator).argsort(dim=1)
    if device is None or torch.device(device).type == "cpu":
        return order
    if torch.cuda.is_available():
        order = order.pin_memory()
    return order.to(device, non_blocking=True)


def apply_order(x, order):
    """x (B, T, ...) with the frames of sequence b taken in ``order[b]`` (B, T)."""
    if order.shape != x.shape[:2]:
        raise ValueError(f"order must have shape {tuple(x.shape[:2])}, got {tuple(order.shape)}")
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, order.to(x.device)]


def content_view(x, generator, mode="shuffle"):
    """The content view of a batch x (B, T, ...): each sequence's frames shuffled or reversed."""
    if x.dim() < 2:
        raise ValueError(f"content_view expects a batch of sequences (B, T, ...), got shape {tuple(x.shape)}")
    return apply_order(x, content_order(x.shape[0], x.shape[1], generator, mode))
