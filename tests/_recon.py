"""Fitting a model to reconstruct one fixed batch, for the eval/train-mode checks."""

from __future__ import annotations

import torch

from cdsvae.objectives import LossWeights, cdsvae_loss


def fit_reconstruction(model: torch.nn.Module, x: torch.Tensor, steps: int, lr: float = 3e-3) -> None:
    """``steps`` Adam steps of the ELBO alone (no contrastive or MI terms) on ``x``, then eval mode:
    a model that reconstructs x, with batch-norm running averages that describe it."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    weights = LossWeights(con_s=0.0, con_z=0.0, mi_sz=0.0)
    for _ in range(steps):
        loss, _ = cdsvae_loss(model, x, None, None, weights, x.shape[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
