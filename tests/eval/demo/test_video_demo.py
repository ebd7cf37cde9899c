"""The video demo: swap grids put decode(s_i, z_j) in row i, column j; pictures indexed in demo.json."""

import json

import numpy as np
import pytest
import torch

from _experiments import HW, T, ChannelModel, sequences, video_exps
from cdsvae.eval.demo.video import demo_sequences, make_video_demo, swap_grid


def test_swap_grid_cells():
    n, pad = 3, 2
    x = sequences(n)
    m = ChannelModel()
    img = swap_grid(m, x)
    cell_h, cell_w = HW, HW * T
    assert img.shape == ((n + 1) * (cell_h + pad) + pad, (n + 1) * (cell_w + pad) + pad, 3)
    for i in range(n):
        for j in range(n):
            want = m.decode(m.encode(x[i:i + 1]).s_mean, m.encode(x[j:j + 1]).z_mean)[0]
            y0, x0 = pad + (i + 1) * (cell_h + pad), pad + (j + 1) * (cell_w + pad)
            for t in range(T):
                got = img[y0:y0 + HW, x0 + t * HW:x0 + (t + 1) * HW].transpose(2, 0, 1)
                assert np.allclose(got, want[t].numpy())
    one = swap_grid(m, x, frame=1)
    assert one.shape == ((n + 1) * (HW + pad) + pad, (n + 1) * (HW + pad) + pad, 3)


def test_demo_sequences_are_spread_over_the_split(tmp_path):
    data, _ = video_exps(tmp_path, n_seq=5)
    x = demo_sequences(data, 3)
    assert torch.allclose(x, sequences(5)[[0, 2, 4]])
    assert demo_sequences(data, 10).shape[0] == 5


def test_make_video_demo_writes_pngs_and_index(tmp_path, monkeypatch):
    import cdsvae.experiment.load

    data, (exp, _) = video_exps(tmp_path)
    monkeypatch.setattr(cdsvae.experiment.load, "load_model", lambda d, device="cpu": (ChannelModel(), {}))
    demo = make_video_demo(exp, data, num=3, num_samples=2)
    names = ["swap_grid.png", "swap_grid_frame0.png", "samples.png"]
    assert [p.name for _, p in demo.files] == names and demo.kind == "video"
    assert sorted(p.name for p in (exp / "demo").iterdir()) == sorted(names + ["demo.json"])
    for name in names:
        assert (exp / "demo" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = json.loads((exp / "demo" / "demo.json").read_text())
    assert index["source"] == str(data) and [e["file"] for e in index["files"]] == names
    assert index["files"][2]["caption"].startswith("2 sequences with s and z_1:T drawn from the priors (seed 0): better")


def test_a_sampler_that_returns_no_tensor_is_named(tmp_path, monkeypatch):
    import cdsvae.experiment.load
    from cdsvae.io import UserError

    class Odd(ChannelModel):
        def generate(self, n, length, generator=None):
            return [1, 2]

    data, (exp, _) = video_exps(tmp_path)
    monkeypatch.setattr(cdsvae.experiment.load, "load_model", lambda d, device="cpu": (Odd(), {}))
    with pytest.raises(UserError, match="model.generate returned list, expected a tensor"):
        make_video_demo(exp, data, num=2)
