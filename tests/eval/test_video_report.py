"""Swap grids put decode(s_i, z_j) in row i, column j; the judge table and the report CLI."""

import json
import os
import types

import numpy as np
import pytest
import torch

from cdsvae.data.video import Factor, write_video_split
from cdsvae.eval.video_report import judge_table, save_png, sequence_rows, swap_grid, tile

T, HW = 3, 4


class ChannelModel:
    """s = the channel a sequence lights, z_t = its brightness at frame t; decode renders them back."""

    def eval(self):
        return self

    def encode(self, x):
        s = x.mean(dim=(1, 3, 4))  # (B, 3)
        z = x.amax(dim=(2, 3, 4)).unsqueeze(-1)  # (B, T, 1)
        return types.SimpleNamespace(s_mean=s, z_mean=z)

    def decode(self, s, z):
        chan = torch.nn.functional.one_hot(s.argmax(dim=1), 3).float()  # (B, 3)
        return (chan[:, None, :, None, None] * z[:, :, :, None, None]).expand(-1, -1, 3, HW, HW).clone()

    def generate(self, n, length, generator=None):
        return torch.rand(n, length, 3, HW, HW, generator=generator)


def sequences(n=3):
    x = torch.zeros(n, T, 3, HW, HW)
    for i in range(n):
        for t in range(T):
            x[i, t, i % 3] = (i + 1) / (n + 1) * (t + 1) / T
    return x


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


def test_tile_and_png(tmp_path):
    a = np.zeros((2, 3, 3))
    img = tile([[a, None], [None, a + 1]], pad=1)
    assert img.shape == (7, 9, 3) and img[4:6, 5:8].min() == 1 and img[1:3, 1:4].max() == 0
    p = save_png(tmp_path / "x.png", sequence_rows(sequences(2)), "title")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def result(acc, is_):
    ms = lambda v: {"mean": v, "std": 0.01, "draws": [v]}  # noqa: E731
    return {"protocol_A": {"motion": {"acc": ms(acc), "is": ms(is_), "h_yx": ms(0.1), "h_y": ms(2.19),
                                      "num_classes": 9}},
            "protocol_B": {"skin": {"acc": ms(0.9), "num_classes": 6}},
            "reference": {"real": {"motion": 1.0, "skin": 1.0}, "recon": {"motion": 0.97, "skin": 0.99}}}


def test_judge_table():
    md = judge_table({"cdsvae": result(0.95, 8.1), "dsvae": result(0.70, 6.0)})
    assert "| cdsvae | 95.00 ± 1.00 | 8.100 ± 0.010 |" in md
    assert "| dsvae | 70.00 ± 1.00 | 6.000 ± 0.010 |" in md
    assert "ln 9 = 2.197" in md and "| skin |" in md and "| cdsvae | recon | 97.00 | 99.00 |" in md
    assert "Checkpoints evaluated" not in md
    with_ckpt = result(0.95, 8.1)
    with_ckpt["checkpoint"] = {"file": "checkpoints/step000000090.pt", "step": 90, "epoch": 30,
                               "why": "newest step checkpoint", "eval_train_ratio": 1.0042}
    md = judge_table({"cdsvae": with_ckpt})
    assert "| cdsvae | checkpoints/step000000090.pt | 90 (30) | newest step checkpoint | 1.004 |" in md


def test_video_report_cli(tmp_path, monkeypatch):
    import cdsvae.train
    from cdsvae.bin import run_main, video_report

    x = sequences(4).numpy()
    write_video_split(tmp_path / "test", x, {"k": np.arange(4) % 2}, [Factor("k", 2, "static")])
    for name, acc in (("cdsvae", 0.9), ("dsvae", 0.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "judge_results.json").write_text(json.dumps(result(acc, 5.0)))
    weights = {"cdsvae": {"con_s": 10.0, "con_z": 10.0, "mi_sz": 1.0}, "dsvae": {"con_s": 0.0, "con_z": 0.0, "mi_sz": 0.0}}
    monkeypatch.setattr(cdsvae.train, "load_model",
                        lambda d, device="cpu": (ChannelModel(), {"loss": weights[os.path.basename(d)]}))
    with pytest.raises(SystemExit) as e:
        run_main(video_report.main, [str(tmp_path / "cdsvae"), str(tmp_path / "dsvae"), "--data",
                                     str(tmp_path / "test"), "--num", "3", "--out", str(tmp_path / "RESULTS.md")])
    assert e.value.code == 0
    for name in ("cdsvae", "dsvae"):
        for f in ("swap_grid.png", "swap_grid_frame0.png", "samples.png", "RESULTS.md"):
            assert (tmp_path / name / f).is_file()
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| C-DSVAE (cdsvae) | 90.00" in text and "| DSVAE (dsvae) | 50.00" in text and "torch" in text
