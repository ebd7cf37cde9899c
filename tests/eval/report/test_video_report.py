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


def _seed_exps(root, accs):
    """Experiments ``<name>_seed<N>`` with judge results of protocol A accuracy ``accs[name][N - 1]``."""
    import json

    import yaml

    from _experiments import CDSVAE_W

    weights = {"cdsvae": CDSVAE_W, "dsvae": {"con_s": 0.0, "con_z": 0.0, "mi_sz": 0.0}}
    exps = []
    for name, values in accs.items():
        for seed, acc in enumerate(values, start=1):
            exp = root / f"{name}_seed{seed}"
            exp.mkdir()
            (exp / "config.yaml").write_text(yaml.safe_dump({"loss": weights[name], "data": {"type": "video"},
                                                             "train": {"seed": seed}}))
            res = judge_result(acc, 5.0 + seed)
            res["protocol_B"]["skin"]["acc"]["mean"] = 0.8 + 0.01 * seed
            (exp / "judge_results.json").write_text(json.dumps(res))
            exps.append(exp)
    return exps


def test_video_report_over_seeds(tmp_path):
    from cdsvae.eval.report.video import write_video_reports

    exps = _seed_exps(tmp_path, {"cdsvae": [0.9, 0.8, 0.7], "dsvae": [0.5, 0.4, 0.6]})
    write_video_reports(exps, tmp_path / "RESULTS.md")
    text = (tmp_path / "RESULTS.md").read_text()
    # per-seed rows stay; then mean ± std (sample std) over seeds per group
    assert "| C-DSVAE (cdsvae_seed2) | 80.00 ± 1.00 |" in text
    assert "### Mean ± std over seeds" in text
    assert "| C-DSVAE | cdsvae | 3 (1,2,3) | 80.00 ± 10.00 | 7.000 ± 1.000 | 0.100 ± 0.000 |" in text
    assert "| DSVAE | dsvae | 3 (1,2,3) | 50.00 ± 10.00 |" in text
    assert "| C-DSVAE | cdsvae | 3 (1,2,3) | 82.00 ± 1.00 |" in text  # protocol B, skin
    # paired by seed: differences 40, 40, 10 -> 30 ± 17.32; t = 3.0 on 2 df -> p = 0.095
    assert ("| cdsvae - dsvae | A motion Acc % | 3 | +30.00 ± 17.32 | 10.00 | yes | 3/3 | within noise (p = 0.10) |"
            in text)
    assert "| cdsvae - dsvae | A motion H(y\\|x) | 3 | +0.000 ± 0.000 | 0.000 | no | 0/3 | within noise (p = 1.00) |" in text
    assert "| cdsvae - dsvae | B skin Acc % | 3 | +0.00 ± 0.00 |" in text
    # a lone experiment per config: no seed tables
    single = tmp_path / "single"
    single.mkdir()
    exps = _seed_exps(single, {"cdsvae": [0.9], "dsvae": [0.5]})
    write_video_reports(exps, single / "RESULTS.md")
    assert "over seeds" not in (single / "RESULTS.md").read_text()


def test_video_seed_groups_refuse_mixed_systems(tmp_path):
    from cdsvae.io import UserError
    from cdsvae.eval.report.video import VideoRun, seed_blocks

    runs = [VideoRun("C-DSVAE", "x_seed1", 1, judge_result(0.9, 5.0)),
            VideoRun("DSVAE", "x_seed2", 2, judge_result(0.5, 5.0))]
    with pytest.raises(UserError, match="share the name x but are different systems"):
        seed_blocks(runs)
