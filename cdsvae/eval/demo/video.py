"""The video demo: swap grids and samples of a trained video model, as PNG images.

A swap grid shows disentanglement at a glance: row i keeps s (appearance) of sequence i, column j
keeps z_1:T (motion) of sequence j, so along a row the look stays and the motion changes, and down a
column the motion stays and the look changes. The first row and column show the real sequences.
``make_video_demo`` writes ``swap_grid.png``, ``swap_grid_frame0.png`` and ``samples.png`` (s and
z_1:T from the priors) under ``exp/<tag>/demo/`` with the index of :mod:`cdsvae.eval.demo.index`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cdsvae.eval.demo.index import Demo, demo_dir, write_demo
from cdsvae.eval.report.plots import save_png, sequence_rows, swap_grid_image
from cdsvae.io import UserError


@torch.no_grad()
def swap_grid(model, x: torch.Tensor, frame: int | None = None) -> np.ndarray:
    """Image of decode(s_i, z_j) for the N sequences of ``x`` (N, T, C, H, W), headers included."""
    model.eval()
    enc = model.encode(x)
    s, z = enc.s_mean, enc.z_mean
    n = x.shape[0]
    # All N*N pairs in one decode: s repeated per row, z tiled per column.
    dec = model.decode(s.repeat_interleave(n, dim=0), z.repeat(n, *([1] * (z.dim() - 1))))
    return swap_grid_image(x.cpu(), dec.view(n, n, *dec.shape[1:]).float().cpu(), frame)


def demo_sequences(data_dir: str | os.PathLike, num: int) -> torch.Tensor:
    """``num`` test sequences (N, T, C, H, W) spread evenly over the split, so they differ in label."""
    from cdsvae.data.video import VideoDataset

    data = VideoDataset(data_dir, labels=False)
    n = min(num, len(data))
    if n < 1:
        raise UserError(f"{data_dir}: no sequences")
    idx = torch.linspace(0, len(data) - 1, n).round().long().tolist()
    return torch.stack([data[i]["x"] for i in idx])


def make_video_demo(
    expdir: str | os.PathLike,
    data_dir: str | os.PathLike,
    outdir: str | os.PathLike | None = None,
    num: int = 6,
    num_samples: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Demo:
    """Swap grids of ``num`` sequences of ``data_dir`` and ``num_samples`` samples, indexed by demo.json."""
    from cdsvae.eval.metrics.video_swap import sample_with
    from cdsvae.experiment.load import load_model

    exp = Path(expdir)
    outdir = Path(outdir) if outdir is not None else demo_dir(exp)
    x = demo_sequences(data_dir, num).to(device)
    model, _ = load_model(exp, device)
    model.eval()
    with torch.no_grad():
        grid = save_png(outdir / "swap_grid.png", swap_grid(model, x), f"{exp.name}: rows keep s, columns keep z")
        grid0 = save_png(outdir / "swap_grid_frame0.png", swap_grid(model, x, frame=0), f"{exp.name}: frame 0")
        gen = torch.Generator().manual_seed(seed)
        samples = sample_with(model.generate, gen, num_samples, x.shape[1])
        if not isinstance(samples, torch.Tensor):
            raise UserError(f"{exp}: model.generate returned {type(samples).__name__}, expected a tensor")
        drawn = save_png(outdir / "samples.png", sequence_rows(samples.float().cpu()),
                         f"{exp.name}: samples from the priors")
    files = [
        ("swap grid: row i keeps s (appearance) of sequence i, column j keeps z (motion) of sequence j; "
         "the first row and column are the real sequences. Better: the look stays the same along each row "
         "and the motion the same down each column", grid),
        ("swap grid, first frame only: better when each row shows one character and each column one pose", grid0),
        (f"{num_samples} sequences with s and z_1:T drawn from the priors (seed {seed}): better when they look "
         "like real characters, varied, each keeping its look over its frames", drawn),
    ]
    note = f"{x.shape[0]} sequences of {data_dir}, spread evenly over it."
    demo = Demo(kind="video", files=files, note=note, source=str(data_dir))
    write_demo(outdir, demo)
    return demo
