"""Pictures and tables for video models: swap grids, samples, and the judge results table.

A swap grid shows disentanglement at a glance: row i keeps s (appearance) of sequence i, column j
keeps z_1:T (motion) of sequence j, so along a row the look stays and the motion changes, and down a
column the motion stays and the look changes. The first row and column show the real sequences.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from cdsvae.eval.report import environment_header
from cdsvae.io import atomic_open, atomic_write_text


def _cell(seq: torch.Tensor, frame: int | None) -> np.ndarray:
    """(T, C, H, W) -> (H, W*T, 3) strip of all frames, or (H, W, 3) of one frame."""
    x = seq.detach().float().clamp(0, 1).cpu()
    if frame is not None:
        x = x[frame:frame + 1]
    x = x.permute(0, 2, 3, 1)  # T, H, W, C
    if x.shape[-1] == 1:
        x = x.expand(*x.shape[:-1], 3)
    return torch.cat(list(x), dim=1).numpy()


def tile(cells: Sequence[Sequence[np.ndarray | None]], pad: int = 2) -> np.ndarray:
    """Lay out equally sized cells (None = blank) on a white canvas with ``pad`` pixels between."""
    shape = next(c.shape for row in cells for c in row if c is not None)
    h, w = shape[:2]
    rows, cols = len(cells), max(len(r) for r in cells)
    canvas = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), dtype=np.float32)
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            if c is not None:
                y0, x0 = pad + i * (h + pad), pad + j * (w + pad)
                canvas[y0:y0 + h, x0:x0 + w] = c
    return canvas


@torch.no_grad()
def swap_grid(model, x: torch.Tensor, frame: int | None = None) -> np.ndarray:
    """Image of decode(s_i, z_j) for the N sequences of ``x`` (N, T, C, H, W), headers included."""
    model.eval()
    enc = model.encode(x)
    s, z = enc.s_mean, enc.z_mean
    n = x.shape[0]
    # All N*N pairs in one decode: s repeated per row, z tiled per column.
    dec = model.decode(s.repeat_interleave(n, dim=0), z.repeat(n, *([1] * (z.dim() - 1))))
    dec = dec.view(n, n, *dec.shape[1:])
    cells: list[list[np.ndarray | None]] = [[None] + [_cell(x[j], frame) for j in range(n)]]
    for i in range(n):
        cells.append([_cell(x[i], frame)] + [_cell(dec[i, j], frame) for j in range(n)])
    return tile(cells)


@torch.no_grad()
def sequence_rows(seqs: torch.Tensor) -> np.ndarray:
    """One row per sequence (N, T, C, H, W), frames left to right."""
    return tile([[_cell(s, None)] for s in seqs])


def save_png(path: str | os.PathLike, image: np.ndarray, title: str | None = None, dpi: int = 100) -> Path:
    """Write an RGB array as a PNG (atomically), at one image pixel per output pixel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = image.shape[:2]
    extra = 0.3 if title else 0.0
    fig = plt.figure(figsize=(w / dpi, h / dpi + extra), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, h / (h + extra * dpi)])
    ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1 - 0.5 * extra * dpi / (h + extra * dpi), title, ha="center", va="center", fontsize=9)
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    plt.close(fig)
    return path


def _fmt(r: Mapping | None, scale: float = 1.0, digits: int = 2) -> str:
    if not r:
        return "-"
    return f"{scale * r['mean']:.{digits}f} ± {scale * r['std']:.{digits}f}"


def judge_table(results: Mapping[str, Mapping]) -> str:
    """Markdown tables of protocol A and B from ``{row name: judge_results.json content}``."""
    rows = list(results.items())
    dyn = sorted({n for _, r in rows for n in r.get("protocol_A", {})})
    sta = [n for n in next((list(r.get("protocol_B", {})) for _, r in rows if r.get("protocol_B")), [])]
    out = []
    for n in dyn:
        k = next(r["protocol_A"][n]["num_classes"] for _, r in rows if n in r.get("protocol_A", {}))
        out.append(f"Protocol A: keep z, draw s ~ N(0, I), judge `{n}` "
                   f"(ceiling IS = {k}, H(y) = ln {k} = {np.log(k):.3f})\n")
        out.append("| model | Acc % | IS | H(y\\|x) | H(y) |")
        out.append("|---|---|---|---|---|")
        for name, r in rows:
            a = r.get("protocol_A", {}).get(n, {})
            out.append(f"| {name} | {_fmt(a.get('acc'), 100)} | {_fmt(a.get('is'), 1, 3)} | "
                       f"{_fmt(a.get('h_yx'), 1, 3)} | {_fmt(a.get('h_y'), 1, 3)} |")
        out.append("")
    if sta:
        out.append("Protocol B: keep s, draw z from the learned prior, judge the static factors (Acc %)\n")
        out.append("| model | " + " | ".join(sta) + " |")
        out.append("|---" * (len(sta) + 1) + "|")
        for name, r in rows:
            b = r.get("protocol_B", {})
            out.append(f"| {name} | " + " | ".join(_fmt(b.get(n, {}).get("acc"), 100) for n in sta) + " |")
        out.append("")
    ckpts = [(name, r["checkpoint"]) for name, r in rows if r.get("checkpoint")]
    if ckpts:
        out.append("Checkpoints evaluated (the eval/train ratio is eval-mode over train-mode reconstruction error "
                   "on a fixed batch; 1 means eval mode reproduces training)\n")
        out.append("| model | checkpoint | step (epoch) | chosen because | eval/train recon ratio |")
        out.append("|---|---|---:|---|---:|")
        for name, c in ckpts:
            ratio = c.get("eval_train_ratio")
            out.append(f"| {name} | {c.get('file')} | {c.get('step')} ({c.get('epoch')}) | {c.get('why')} | "
                       f"{'n/a' if ratio is None else f'{ratio:.3f}'} |")
        out.append("")
    ref = [(name, r["reference"]) for name, r in rows if "reference" in r]
    if ref:
        names = list(ref[0][1]["real"])
        out.append("Judge accuracy % on real test sequences and on reconstructions (ceilings)\n")
        out.append("| model | input | " + " | ".join(names) + " |")
        out.append("|---|---" + "|---" * len(names) + "|")
        for name, r in ref:
            for kind in ("real", "recon"):
                out.append(f"| {name} | {kind} | " + " | ".join(f"{100 * r[kind][n]:.2f}" for n in names) + " |")
        out.append("")
    return "\n".join(out)


def write_results_md(path: str | os.PathLike, results: Mapping[str, Mapping], title: str = "Results",
                     command: str | None = None) -> Path:
    cmd = f"## Command\n\n    {command}\n\n" if command else ""
    text = f"# {title}\n\n{environment_header()}\n{cmd}## Judge metrics (test set)\n\n{judge_table(results)}"
    atomic_write_text(path, text)
    return Path(path)
