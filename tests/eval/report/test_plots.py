"""Figures: t-SNE and DET for any handful of points, and the tiled PNG images of the video demo."""

import numpy as np
import pytest
import torch

from _experiments import HW, T, assert_png, sequences
from cdsvae.eval.report.plots import embed_2d, plot_det, plot_tsne, save_png, sequence_rows, swap_grid_image, tile


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_tsne_copes_with_tiny_sets(tmp_path, n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 5))
    xy = embed_2d(x)
    assert xy.shape == (n, 2) and np.isfinite(xy).all()
    path = plot_tsne({"s": x, "z": x[:, :2]}, [f"spk{k % 2}" for k in range(n)], tmp_path / "t.png")
    assert_png(path)


def test_det_plot_handles_perfect_and_degenerate_curves(tmp_path):
    from cdsvae.eval.metrics.eer import det_curve

    perfect = det_curve([1.0, 2.0], [0.0, -1.0])
    tied = det_curve([0.5, 0.5], [0.5])
    assert_png(plot_det({"s": perfect, "z": tied}, tmp_path / "det.png"))


def test_tile_and_png(tmp_path):
    a = np.zeros((2, 3, 3))
    img = tile([[a, None], [None, a + 1]], pad=1)
    assert img.shape == (7, 9, 3) and img[4:6, 5:8].min() == 1 and img[1:3, 1:4].max() == 0
    p = save_png(tmp_path / "x.png", sequence_rows(sequences(2)), "title")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_swap_grid_image_puts_decoded_pair_i_j_in_row_i_column_j():
    n, pad = 2, 2
    x = sequences(n)
    decoded = np.zeros((n, n, T, 3, HW, HW), dtype=np.float32)
    for i in range(n):
        for j in range(n):
            decoded[i, j] = (1 + i + 2 * j) / 10
    img = swap_grid_image(x, torch.from_numpy(decoded))
    cell_h, cell_w = HW, HW * T
    assert img.shape == ((n + 1) * (cell_h + pad) + pad, (n + 1) * (cell_w + pad) + pad, 3)
    assert np.all(img[:pad + cell_h, :pad + cell_w] == 1.0)  # the corner is blank
    for i in range(n):
        y0 = pad + (i + 1) * (cell_h + pad)
        row_head = img[y0:y0 + HW, pad:pad + cell_w]
        assert np.allclose(row_head, np.concatenate([f.permute(1, 2, 0).numpy() for f in x[i]], axis=1))
        for j in range(n):
            x0 = pad + (j + 1) * (cell_w + pad)
            assert np.allclose(img[y0:y0 + HW, x0:x0 + cell_w], (1 + i + 2 * j) / 10)
    one = swap_grid_image(x, torch.from_numpy(decoded), frame=1)
    assert one.shape == ((n + 1) * (HW + pad) + pad, (n + 1) * (HW + pad) + pad, 3)
