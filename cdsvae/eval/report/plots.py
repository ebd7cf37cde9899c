"""Every figure of the reports and demos: DET curves, t-SNE maps and log-mel pictures (speech),
swap grids and sequence strips (video), and the PNG writers they share.

Drawing only: the inputs are arrays (scores, embeddings, frames, decoded sequences) computed
elsewhere; nothing here loads a model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cdsvae.io import atomic_open


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_det(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], out_png: str | os.PathLike, title: str = "") -> Path:
    """DET curves on normal-deviate axes; ``curves[name] = (false_alarm_rate, miss_rate)``."""
    from scipy.stats import norm

    plt = _pyplot()
    ticks = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9])
    lo, hi = 0.0005, 0.95
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (pfa, pmiss) in curves.items():
        pfa = np.clip(np.asarray(pfa, dtype=float), lo, hi)
        pmiss = np.clip(np.asarray(pmiss, dtype=float), lo, hi)
        ax.plot(norm.ppf(pfa), norm.ppf(pmiss), label=name)
    ax.plot(norm.ppf([lo, hi]), norm.ppf([lo, hi]), color="grey", linestyle=":", linewidth=0.8)
    ax.set_xticks(norm.ppf(ticks))
    ax.set_xticklabels([f"{100 * t:g}" for t in ticks], fontsize=7)
    ax.set_yticks(norm.ppf(ticks))
    ax.set_yticklabels([f"{100 * t:g}" for t in ticks], fontsize=7)
    ax.set_xlim(norm.ppf(lo), norm.ppf(hi))
    ax.set_ylim(norm.ppf(lo), norm.ppf(hi))
    ax.set_xlabel("false alarm rate (%)")
    ax.set_ylabel("miss rate (%)")
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    return _write_figure(fig, out_png, dpi=120, bbox_inches="tight")


def plot_logmel(frames: np.ndarray, out_png: str | os.PathLike, scale: tuple[float, float] | None = None,
                frame_shift_s: float = 0.01) -> Path:
    """Log-mel frames (T, n_mels) as an image: time across, mel bins up; ``scale`` fixes the colour
    range (vmin, vmax) so that the pictures of one demo compare."""
    plt = _pyplot()
    x = np.asarray(frames, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 1.9))
    vmin, vmax = scale if scale is not None else (float(x.min()), float(x.max()))
    ax.imshow(x.T, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest",
              extent=(0.0, x.shape[0] * frame_shift_s, 0, x.shape[1]))
    ax.set_xlabel("time (s)", fontsize=7)
    ax.set_ylabel("mel bin", fontsize=7)
    ax.tick_params(labelsize=6)
    return _write_figure(fig, out_png, dpi=100, bbox_inches="tight")


def _write_figure(fig, path: str | os.PathLike, **savefig) -> Path:
    """Save ``fig`` as a PNG at ``path`` (atomically), close it, and return the path."""
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", **savefig)
    _pyplot().close(fig)
    return path


def embed_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE map with a perplexity that suits small sets; PCA below 5 points."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 5:
        centred = x - x.mean(axis=0)
        if n < 2 or not np.any(centred):
            return np.zeros((n, 2))
        u, sv, _ = np.linalg.svd(centred, full_matrices=False)
        out = np.zeros((n, 2))
        k = min(2, u.shape[1])
        out[:, :k] = u[:, :k] * sv[:k]
        return out
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500).fit_transform(x)


def plot_tsne(
    embeddings: Mapping[str, np.ndarray], speakers: Sequence[str], out_png: str | os.PathLike, title: str = ""
) -> Path:
    """One panel per factor, points coloured by speaker (legend only when it stays readable)."""
    plt = _pyplot()
    names = sorted(set(speakers))
    colour_of = {s: k for k, s in enumerate(names)}
    colours = np.array([colour_of[s] for s in speakers])
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    fig, axes = plt.subplots(1, len(embeddings), figsize=(5 * len(embeddings), 4.5), squeeze=False)
    for ax, (factor, x) in zip(axes[0], embeddings.items()):
        xy = embed_2d(x)
        for s in names:
            m = colours == colour_of[s]
            ax.scatter(xy[m, 0], xy[m, 1], s=12, color=cmap(colour_of[s] % cmap.N), label=s)
        ax.set_title(f"t-SNE of {factor} ({len(speakers)} utterances, {len(names)} speakers)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(names) <= 12:
        axes[0][-1].legend(fontsize=6, loc="best", markerscale=0.8)
    if title:
        fig.suptitle(title)
    return _write_figure(fig, out_png, dpi=120, bbox_inches="tight")


def _cell(seq, frame: int | None) -> np.ndarray:
    """(T, C, H, W) tensor -> (H, W*T, 3) strip of all frames, or (H, W, 3) of one frame."""
    import torch

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


def swap_grid_image(x, decoded, frame: int | None = None) -> np.ndarray:
    """Swap grid of N sequences ``x`` (N, T, C, H, W) and ``decoded`` (N, N, T, C, H, W) = decode(s_i, z_j).

    Row i keeps s of sequence i, column j keeps z of sequence j; the first row and column show
    the real sequences. ``frame`` draws one frame per cell instead of the whole sequence.
    """
    n = x.shape[0]
    cells: list[list[np.ndarray | None]] = [[None] + [_cell(x[j], frame) for j in range(n)]]
    for i in range(n):
        cells.append([_cell(x[i], frame)] + [_cell(decoded[i, j], frame) for j in range(n)])
    return tile(cells)


def sequence_rows(seqs) -> np.ndarray:
    """One row per sequence (N, T, C, H, W), frames left to right."""
    return tile([[_cell(s, None)] for s in seqs])


def save_png(path: str | os.PathLike, image: np.ndarray, title: str | None = None, dpi: int = 100) -> Path:
    """Write an RGB array as a PNG (atomically), at one image pixel per output pixel."""
    plt = _pyplot()
    h, w = image.shape[:2]
    extra = 0.3 if title else 0.0
    fig = plt.figure(figsize=(w / dpi, h / dpi + extra), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, h / (h + extra * dpi)])
    ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1 - 0.5 * extra * dpi / (h + extra * dpi), title, ha="center", va="center", fontsize=9)
    return _write_figure(fig, path, dpi=dpi)
