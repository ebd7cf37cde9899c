"""The judge table and the video report CLI, which links the demo's pictures and loads no model."""

import pytest

from _experiments import ChannelModel, judge_result, video_exps
from cdsvae.eval.report.video import judge_table

result = judge_result


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
    import cdsvae.experiment.load
    from cdsvae.bin import run_main, video_report
    from cdsvae.eval.demo.video import make_video_demo

    data, (cdsvae_exp, dsvae_exp) = video_exps(tmp_path)
    monkeypatch.setattr(cdsvae.experiment.load, "load_model", lambda d, device="cpu": (ChannelModel(), {}))
    make_video_demo(cdsvae_exp, data, num=3)  # the demo step, before the report

    def refuse(*args, **kwargs):
        raise AssertionError("the report loaded a model")

    for module in (cdsvae.experiment.load,):
        monkeypatch.setattr(module, "load_model", refuse)
        monkeypatch.setattr(module, "load_model_with_info", refuse)
    with pytest.raises(SystemExit) as e:
        run_main(video_report.main, [str(cdsvae_exp), str(dsvae_exp), "--out", str(tmp_path / "RESULTS.md")])
    assert e.value.code == 0
    for exp in (cdsvae_exp, dsvae_exp):
        assert (exp / "RESULTS.md").is_file()
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| C-DSVAE (cdsvae) | 90.00" in text and "| DSVAE (dsvae) | 50.00" in text and "torch" in text
    per_exp = (cdsvae_exp / "RESULTS.md").read_text()
    assert "| C-DSVAE (cdsvae) | 90.00" in per_exp and "## Swap grids and samples" in per_exp
    for name in ("swap_grid.png", "swap_grid_frame0.png", "samples.png"):
        assert f"](demo/{name})" in per_exp
    assert "No demo (run the demo step: `python -m cdsvae.bin.make_demo --expdir" in (dsvae_exp / "RESULTS.md").read_text()


def test_video_report_needs_judge_results(tmp_path, capsys):
    from cdsvae.bin import run_main, video_report

    _, (exp, _) = video_exps(tmp_path)
    (exp / "judge_results.json").unlink()
    with pytest.raises(SystemExit) as e:
        run_main(video_report.main, [str(exp), "--out", str(tmp_path / "RESULTS.md")])
    assert e.value.code == 1
    assert "no judge_results.json in any experiment dir" in capsys.readouterr().err
