"""A tiny model and per-sequence loss for the trainer tests, helpers that build and run a
Trainer on it, and a script that trains it.

Independent of cdsvae.models on purpose: these tests check the training engine only.
``python tests/train/_toy.py --outdir DIR ...`` (optionally under torchrun) trains it on
synthetic sequences with the generic Trainer.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from cdsvae import checkpoint as ckpt
from cdsvae.bin import run_main
from cdsvae.data.synthetic import SyntheticSequenceDataset
from cdsvae.train.batches import seed_everything
from cdsvae.train.distributed import shutdown
from cdsvae.train.trainer import Trainer, setup_process

FEAT = 6
TOY = str(Path(__file__).resolve())
REPO = Path(__file__).resolve().parents[2]


class ToyModel(nn.Module):
    def __init__(self, feat: int = FEAT, hidden: int = 8):
        super().__init__()
        self.enc = nn.Linear(feat, hidden)
        self.dec = nn.Linear(hidden, feat)

    def forward(self, x: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        h = torch.tanh(self.enc(x))
        if noise:
            h = h + noise * torch.randn_like(h)  # the global RNG, like a VAE's reparameterisation
        return self.dec(h)


def toy_loss(model, batch, generator, noisy: bool = False):
    """Mean over sequences of per-sequence terms, so a batch split over processes and averaged
    gives the same gradient as the whole batch. ``noisy`` adds randomness from both the step
    generator (a frame permutation) and the global RNG, to test that resuming restores them."""
    x = batch["x"]
    target = x
    if noisy:
        order = torch.rand(x.shape[0], x.shape[1], generator=generator).argsort(dim=1)
        x = x[torch.arange(x.shape[0])[:, None], order]
        target = x
    recon = model(x, noise=0.1 if noisy else 0.0)
    terms = {
        "recon": (recon - target).pow(2).sum(dim=(1, 2)).mean(),
        "l2": 1e-3 * sum(p.pow(2).sum() for p in model.parameters()),
    }
    return terms["recon"] + terms["l2"], {k: v.detach() for k, v in terms.items()}


def toy_config(**train) -> dict:
    cfg = {"optim": {"lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "grad_clip": 1.0,
                     "schedule": "cosine", "warmup_steps": 2, "implementation": "auto"},
           "train": {"epochs": 2, "batch_size": 4, "num_workers": 0, "seed": 3, "deterministic": True,
                     "amp": "none", "compile": False, "log_every": 2, "ckpt_every_steps": 0, "keep_last": 2,
                     "max_steps": None, "device": "cpu", "tensorboard": False}}
    cfg["train"].update(train)
    return cfg


def toy_data(n=32, **kw):
    return SyntheticSequenceDataset(n, seq_len=4, frame_shape=(FEAT,), **kw)


def new_trainer(outdir, loss, train_set, valid_set, cfg, **kw):
    """A Trainer of a ToyModel initialised from seed 0, in a process set up as an entry point sets it up."""
    ctx = setup_process(cfg["train"], outdir)
    seed_everything(0)
    return Trainer(ToyModel(), loss, train_set, valid_set, cfg, outdir, ctx, **kw)


def toy_trainer(outdir, loss=toy_loss, n=32, valid=True, **train):
    """The toy Trainer on ``n`` training and 8 validation sequences, ``train`` options over toy_config's."""
    return new_trainer(outdir, loss, toy_data(n), toy_data(8, split="valid") if valid else None,
                       toy_config(**train))


def final_params(outdir) -> dict:
    _, state = ckpt.load_latest(Path(outdir) / "checkpoints")
    return state["model"]


def toy_env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def run_toy(args, outdir, **kw):
    """This file run as a script in a fresh process."""
    return subprocess.run([sys.executable, TOY, "--outdir", str(outdir), *args], env=toy_env(), capture_output=True,
                          text=True, timeout=240, **kw)


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--outdir", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--num_train", type=int, default=32)
    p.add_argument("--num_valid", type=int, default=8)
    p.add_argument("--ckpt_every_steps", type=int, default=0)
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--delay_s", type=float, default=0.0)
    p.add_argument("--noisy", action="store_true")
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--amp", default="none")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (cuda:LOCAL_RANK where a GPU is visible)")
    p.add_argument("--nan_step", type=int, default=0, help="this rank's loss term 'kl' is NaN at this step")
    p.add_argument("--nan_rank", type=int, default=0)
    args = p.parse_args(argv)

    cfg = toy_config(epochs=args.epochs, batch_size=args.batch_size, ckpt_every_steps=args.ckpt_every_steps,
                     num_workers=args.num_workers, amp=args.amp, device=args.device)
    cfg["optim"]["schedule"] = args.schedule
    ctx = setup_process(cfg["train"], args.outdir)
    try:
        train = toy_data(args.num_train, delay_s=args.delay_s)
        valid = toy_data(args.num_valid, split="valid")
        seed_everything(0)
        model = ToyModel()
        calls = [0]

        def loss(m, b, g):
            total, terms = toy_loss(m, b, g, noisy=args.noisy)
            if args.nan_step:
                calls[0] += 1
                bad = calls[0] == args.nan_step and ctx.rank == args.nan_rank
                terms["kl"] = torch.tensor(float("nan") if bad else 0.0)
                total = total + terms["kl"]
            return total, terms

        Trainer(model, loss, train, valid, cfg, args.outdir, ctx).fit()
    finally:
        shutdown(ctx)


if __name__ == "__main__":
    run_main(main)
