"""The per-step loss of a C-DSVAE experiment, as the trainer calls it, and what the trainer checks
and selects checkpoints on.

Per step: the content view is the batch with each sequence's frames shuffled (or reversed:
:func:`content_order`, which keeps s and breaks z_1:T), or, with ``augment.content_view:
segment`` (speech), another segment of the same utterance; the motion view is
``batch["x_motion"]`` when the dataset provides one (speech: voice-converted copies), else made
on the fly for image sequences; then :func:`cdsvae.objectives.cdsvae_loss`. The video
augmentation is imported only for image sequences.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

import torch
from torch import nn

from cdsvae.io import UserError
from cdsvae.objectives import LossWeights, cdsvae_loss

log = logging.getLogger("cdsvae.train")

# The frame orders of a content view that keeps the frames (a segment view is another segment).
ORDER_MODES = ("shuffle", "reverse")


def content_order(batch, length, generator=None, mode="shuffle", device=None):
    """Per-sequence frame orders (batch, length), int64: a random permutation each, or reversal.

    Drawn on the CPU from ``generator`` (a CPU torch.Generator; None uses the global
    RNG), so the same seed gives the same views on every device. For another ``device`` the
    order is copied from pinned memory without blocking: a copy from pageable memory would make
    the host wait for the GPU at every training step.
    """
    if mode not in ORDER_MODES:
        raise UserError(f"content view mode must be one of {', '.join(ORDER_MODES)}, got {mode!r}")
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



def make_loss_fn(cfg: Mapping[str, Any], dataset_size: int):
    """``(model, batch, generator) -> (loss, terms)`` for the trainer."""
    weights = LossWeights(**cfg["loss"])
    mode = cfg["augment"]["content_view"]
    motion_opts = dict(cfg["augment"]["motion_view"] or {})
    needs_motion = weights.mi_estimator == "contrastive" and weights.con_z > 0
    needs_content = weights.mi_estimator == "contrastive" and weights.con_s > 0
    segment_view = mode == "segment"

    without_motion = dataclasses.replace(weights, con_z=0.0)
    warned = []

    def loss_fn(model: nn.Module, batch: Mapping[str, Any], generator: torch.Generator):
        x = batch["x"]
        order = x_content = None
        if needs_content and segment_view:
            x_content = batch.get("x_content")
            if x_content is None:
                raise UserError("augment.content_view segment: the batch has no 'x_content' (another segment of the "
                                "same utterance); it needs speech data built with content segments")
        elif needs_content:
            # The content view as a frame order: the model reuses x's frame embeddings for it.
            order = content_order(x.shape[0], x.shape[1], generator, mode, device=x.device)
        x_motion = batch.get("x_motion")
        w = weights
        if x_motion is None and needs_motion:
            if x.dim() == 5:
                from cdsvae.augment.video import motion_view  # image sequences only
                # Drawn on x's device (per-pixel noise on the CPU would stall a GPU), from a seed
                # taken from the step generator, so the views follow the checkpointed RNG state.
                seed = int(torch.randint(1 << 62, (1,), generator=generator))
                x_motion = motion_view(x, torch.Generator(device=x.device).manual_seed(seed), **motion_opts)
            elif torch.is_grad_enabled():
                raise UserError("loss.con_z > 0 needs motion views, but the data has no 'x_motion' (for speech, "
                                "run the motion-augmentation stage) and on-the-fly views exist only for images")
            else:
                # Validation sets often have no converted copies: score them without con_z.
                if not warned:
                    log.warning("no motion views in the validation data: con_z is left out of the validation loss")
                    warned.append(True)
                w = without_motion
        loss, terms = cdsvae_loss(model, x, x_content, x_motion, w, dataset_size, content_index=order)
        terms = {k: v for k, v in terms.items() if k != "loss"}
        return loss, terms

    return loss_fn


# best.pt is the checkpoint with the lowest validation negative ELBO (reconstruction + KL terms,
# unweighted): the contrastive and MI terms differ between systems, the ELBO does not.
SELECTION_CRITERION = ("neg_elbo", ("recon", "kl_s", "kl_z"))


@torch.no_grad()
def recon_consistency(model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction error of ``batch["x"]`` (per sequence) in eval mode and in train mode.

    Both decode the posterior means, so the only difference is batch normalisation: running
    averages in eval mode, the batch's own statistics in train mode. Parameters, buffers
    (running averages included) and the mode are left as they were.
    """
    x = batch["x"]
    was_training = model.training
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    errors = []
    try:
        for training in (False, True):
            model.train(training)
            recon = model(x, sample=False).recon
            errors.append(nn.functional.mse_loss(recon.float(), x.float(), reduction="sum") / x.shape[0])
    finally:
        for buf, saved in buffers:
            buf.copy_(saved)
        model.train(was_training)
    return errors[0], errors[1]
