"""The speech reports: tables from results.json, figures, the linked demo, and no model anywhere."""

import json
import subprocess
import sys

import pytest
import yaml

from _experiments import CDSVAE_W, DEMO_WAVS, DSVAE_W, assert_png, make_exp, results, trained_speech_exp
from cdsvae.eval.report.results import load_experiment
from cdsvae.eval.report.speech import write_recipe_report
from cdsvae.io import UserError


def test_table_rows_from_results_json_and_config(tmp_path):
    a = make_exp(tmp_path, "cdsvae", CDSVAE_W, results(0.05, 0.30, 0.5, 0.99, 10, 90))
    b = make_exp(tmp_path, "dsvae", DSVAE_W, results(0.0625, 0.125, 0.75, 1.0, 10, 90))
    out = tmp_path / "RESULTS.md"
    got = write_recipe_report([b, a], out, plots=False, demo=False)
    assert [r.system for r in got] == ["DSVAE", "C-DSVAE"]
    text = out.read_text()
    assert "| C-DSVAE | cdsvae | 5.00 | 30.00 | 25.00 | 0.5000 | 0.9900 | 100 (10/90) |" in text
    assert "| DSVAE | dsvae | 6.25 | 12.50 | 6.25 | 0.7500 | 1.0000 | 100 (10/90) |" in text
    assert text.index("| C-DSVAE |") < text.index("| DSVAE |")
    for key in ("- date:", "- python:", "- torch:", "- git commit:"):
        assert key in text
    import socket

    assert socket.gethostname() not in text
    assert "(cdsvae/RESULTS.md)" in text
    per_exp = (a / "RESULTS.md").read_text()
    assert "| C-DSVAE | cdsvae | 5.00 | 30.00 |" in per_exp and "| DSVAE |" not in per_exp


def test_plots_are_valid_png_files(tmp_path):
    a = make_exp(tmp_path, "cdsvae", CDSVAE_W)
    b = make_exp(tmp_path, "dsvae", DSVAE_W, seed=1)
    out = tmp_path / "RESULTS.md"
    got = write_recipe_report([a, b], out, demo=False)
    for exp in (a, b):
        assert_png(exp / "report" / "test" / "det.png")
        assert_png(exp / "report" / "test" / "tsne.png")
        text = (exp / "RESULTS.md").read_text()
        assert "![DET curves of s and z](report/test/det.png)" in text
        assert "(report/test/tsne.png)" in text
    # speaker-clustered s and random z: s must verify better than z
    assert all(r.eer_s < r.eer_z for r in got)
    assert all(r.n_target == 4 * 3 and r.n_nontarget == 66 - 12 for r in got)


def test_det_legend_gives_the_eers_of_results_json(tmp_path, monkeypatch):
    """The DET legend is labelled with the table's EERs, not with a second computation."""
    import cdsvae.eval.metrics.eer
    import cdsvae.eval.report.plots

    exp = make_exp(tmp_path, "cdsvae", CDSVAE_W)
    res = json.loads((exp / "score_test" / "results.json").read_text())
    monkeypatch.setattr(cdsvae.eval.metrics.eer, "compute_eer", lambda *a, **k: pytest.fail("EER recomputed"))
    seen = {}
    real = cdsvae.eval.report.plots.plot_det
    monkeypatch.setattr(cdsvae.eval.report.plots, "plot_det", lambda curves, *a, **k: seen.update(curves) or real(curves, *a, **k))
    write_recipe_report([exp], tmp_path / "RESULTS.md", demo=False)
    assert sorted(seen) == [f"s (EER {100 * res['s']['eer']:.2f}%)", f"z (EER {100 * res['z']['eer']:.2f}%)"]


def test_report_links_the_demo_or_says_how_to_make_it(tmp_path):
    from cdsvae.eval.demo.index import Demo, write_demo

    a = make_exp(tmp_path, "cdsvae", CDSVAE_W, results(0.05, 0.30, 0.5, 0.99, 10, 90))
    b = make_exp(tmp_path, "dsvae", DSVAE_W, results(0.0625, 0.125, 0.75, 1.0, 10, 90))
    (a / "demo").mkdir()
    for name in ("A.wav", "B.wav"):
        (a / "demo" / name).write_bytes(b"RIFF")
    write_demo(a / "demo", Demo("speech", [("A, rebuilt", a / "demo" / "A.wav"), ("B, rebuilt", a / "demo" / "B.wav")],
                                "Utterance A = x, B = y.", "test"))
    write_recipe_report([a, b], tmp_path / "RESULTS.md", plots=False)
    text = (a / "RESULTS.md").read_text()
    assert "## Listening demo\n\nUtterance A = x, B = y.\n\n- [A.wav](demo/A.wav): A, rebuilt\n" \
           "- [B.wav](demo/B.wav): B, rebuilt\n" in text
    assert f"No demo (run the demo step: `python -m cdsvae.bin.make_demo --expdir {b} --set test`)." \
        in (b / "RESULTS.md").read_text()
    # --demo false: no section at all
    write_recipe_report([a], tmp_path / "RESULTS.md", plots=False, demo=False)
    assert "Listening demo" not in (a / "RESULTS.md").read_text()
    # a file the index lists but which is gone is named, not linked
    (a / "demo" / "B.wav").unlink()
    with pytest.raises(UserError, match="lists B.wav, which is missing; rerun the demo step"):
        write_recipe_report([a], tmp_path / "RESULTS.md", plots=False)


def test_full_report_of_a_finished_experiment_never_loads_a_model(tmp_path, monkeypatch):
    """Figures and the listening demo of a finished experiment (demo step done) without any inference."""
    import cdsvae.experiment.load
    from cdsvae.eval.demo.speech import make_speech_demo

    exp = trained_speech_exp(tmp_path)
    make_speech_demo(exp, "test", n_iter=4)

    def refuse(*args, **kwargs):
        raise AssertionError("the report loaded a model")

    for module in (cdsvae.experiment.load,):
        monkeypatch.setattr(module, "load_model", refuse)
        monkeypatch.setattr(module, "load_model_with_info", refuse)
    write_recipe_report([exp], tmp_path / "RESULTS.md")
    text = (exp / "RESULTS.md").read_text()
    assert "(report/test/det.png)" in text and "(report/test/tsne.png)" in text
    for name in DEMO_WAVS:
        assert f"[{name}](demo/{name})" in text
    assert "| C-DSVAE | cdsvae_tiny |" in (tmp_path / "RESULTS.md").read_text()


REPORT_MODULES = ("cdsvae.eval.report.speech", "cdsvae.eval.report.video", "cdsvae.bin.make_report",
                  "cdsvae.bin.video_report")


def test_report_modules_do_not_import_the_trainer_or_the_models(tmp_path):
    """Making both kinds of report imports neither the experiment (its loader), the trainer nor cdsvae.models."""
    a = make_exp(tmp_path, "cdsvae", CDSVAE_W)
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "config.yaml").write_text(yaml.safe_dump({"loss": CDSVAE_W, "data": {"type": "video"}}))
    (tmp_path / "v" / "judge_results.json").write_text(json.dumps({"protocol_A": {}}))
    code = (
        "import sys\n"
        f"for m in {REPORT_MODULES!r}: __import__(m)\n"
        "from cdsvae.bin import make_report, video_report\n"
        f"assert make_report.main(['--expdirs', {str(a)!r}, '--out', {str(tmp_path / 'R.md')!r}]) == 0\n"
        f"assert video_report.main([{str(tmp_path / 'v')!r}, '--out', {str(tmp_path / 'V.md')!r}]) == 0\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[:2] == ['cdsvae', 'models']\n"
        "             or m.startswith(('cdsvae.experiment.load', 'cdsvae.experiment.run', 'cdsvae.train.trainer')))\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "(report/test/tsne.png)" in (a / "R.md").read_text()
    assert (tmp_path / "V.md").is_file()


def test_reports_of_two_sets_do_not_overwrite_each_other(tmp_path):
    exp = make_exp(tmp_path, "cdsvae", CDSVAE_W, results(0.05, 0.30, 0.5, 0.99, 10, 90))
    (exp / "score_dev").mkdir()
    (exp / "score_dev" / "results.json").write_text(json.dumps(results(0.25, 0.5, 1.0, 1.0, 2, 4)))
    write_recipe_report([exp], tmp_path / "RESULTS.md", plots=False, demo=False)
    write_recipe_report([exp], tmp_path / "RESULTS_dev.md", test_set="dev", plots=False, demo=False)
    assert "| 5.00 | 30.00 |" in (exp / "RESULTS.md").read_text()
    dev = (exp / "RESULTS_dev.md").read_text()
    assert "| 25.00 | 50.00 |" in dev and "(dev set)" in dev
    assert "(cdsvae/RESULTS_dev.md)" in (tmp_path / "RESULTS_dev.md").read_text()
    # and so do their pages: index.html and index_dev.html, each linking its own set's pages
    assert ">25.00</td>" in (exp / "index_dev.html").read_text() and ">5.00</td>" in (exp / "index.html").read_text()
    assert 'href="cdsvae/index_dev.html"' in (tmp_path / "index_dev.html").read_text()
    assert 'href="cdsvae/index.html"' in (tmp_path / "index.html").read_text()


def _seeded(root, tag, weights, seed, eer_s, eer_z, mean_norm=None):
    res = results(eer_s, eer_z, 0.5, 0.9, 10, 90)
    if mean_norm is not None:
        res["mean_norm"] = results(*mean_norm, 0.4, 0.95, 10, 90)
    exp = make_exp(root, f"{tag}_seed{seed}", weights, res)
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    cfg["train"] = {"seed": seed}
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    (exp / "emb_test" / "meta.json").write_text(json.dumps({"checkpoint": {
        "file": "checkpoints/best.pt", "step": 40 + seed, "epoch": 2, "why": "lowest validation neg_elbo",
        "criterion": "neg_elbo", "criterion_value": 123.456, "eval_train_ratio": 1.0123,
        "eval_train_ratio_train": 0.998}}))
    return exp


def test_seed_summary_and_paired_difference_known_answers(tmp_path):
    exps = []
    # C-DSVAE EER s 4, 6, 8 %; DSVAE 5, 5, 11 %: differences -1, +1, -3 -> mean -1, std 2
    for seed, (a, b) in zip((1, 2, 3), ((0.04, 0.05), (0.06, 0.05), (0.08, 0.11))):
        exps.append(_seeded(tmp_path, "cdsvae", CDSVAE_W, seed, a, 0.30, (a / 2, 0.35)))
        exps.append(_seeded(tmp_path, "dsvae", DSVAE_W, seed, b, 0.20, (b / 2, 0.21)))
    out = tmp_path / "RESULTS.md"
    write_recipe_report(exps, out, plots=False, demo=False)
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    # EER s: mean 6 (std 2); EER z 30 (std 0); gap 24 ± 2
    assert "| C-DSVAE | cdsvae | 3 (1,2,3) | 6.00 ± 2.00 | 30.00 ± 0.00 | 24.00 ± 2.00 | 0.5000 ± 0.0000 |" \
           " 0.9000 ± 0.0000 |" in rows
    assert "| DSVAE | dsvae | 3 (1,2,3) | 7.00 ± 3.46 | 20.00 ± 0.00 | 13.00 ± 3.46 |" in " ".join(rows)
    from scipy.stats import ttest_rel

    p = ttest_rel([4, 6, 8], [5, 5, 11]).pvalue
    # pooled std of EER s: sqrt((2^2 + 3.46^2) / 2) = sqrt(8) = 2.83 > |-1|
    assert f"| cdsvae - dsvae | EER s (%) | 3 | -1.00 ± 2.00 | 2.83 | no | 2/3 | within noise (p = {p:.2f}) |" in rows
    assert "| cdsvae - dsvae | EER z (%) | 3 | +10.00 ± 0.00 | 0.00 | yes | 3/3 | C-DSVAE better (p = 0.000) |" \
        in rows
    # the mean-normalised scoring gets its own tables, after the raw ones
    assert "| C-DSVAE | cdsvae | 3 (1,2,3) | 3.00 ± 1.00 | 35.00 ± 0.00 |" in " ".join(rows)
    assert text.index("Scoring: cosine.") < text.index("Scoring: cosine after subtracting the training-set mean")
    # which checkpoint each experiment used, and why
    assert "| cdsvae_seed2 | checkpoints/best.pt | 42 (2) | lowest validation neg_elbo | neg_elbo 123.5 | 1.012 " \
           "| 0.998 |" in rows
    per_exp = (tmp_path / "cdsvae_seed1" / "RESULTS.md").read_text()
    assert "## Checkpoint" in per_exp and "| cdsvae_seed1 | checkpoints/best.pt | 41 (2) |" in per_exp


def test_one_seed_has_no_spread_tables(tmp_path):
    a = make_exp(tmp_path, "cdsvae", CDSVAE_W, results(0.05, 0.30, 0.5, 0.99, 10, 90))
    b = make_exp(tmp_path, "dsvae", DSVAE_W, results(0.0625, 0.125, 0.75, 1.0, 10, 90))
    write_recipe_report([a, b], tmp_path / "RESULTS.md", plots=False, demo=False)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "Mean ± std" not in text and "paired by seed" not in text
    assert "| cdsvae | not recorded |" in text


def test_skipped_utterances_are_noted_only_when_there_are_some(tmp_path):
    from cdsvae.eval.report.document import markdown_lines
    from cdsvae.eval.report.tables import skipped_note

    res = results(0.05, 0.30, 0.5, 0.99, 10, 90)
    a = make_exp(tmp_path, "cdsvae", CDSVAE_W, {**res, "n_utts": 12, "n_without_embedding": 1,
                                                "without_embedding": ["spk2_u7"]})
    b = make_exp(tmp_path, "dsvae", DSVAE_W, {**res, "n_utts": 12, "n_without_embedding": 0, "without_embedding": []})
    out = tmp_path / "RESULTS.md"
    got = write_recipe_report([a, b], out, plots=False, demo=False)
    assert [r.without_embedding for r in got] == [["spk2_u7"], []]
    text = out.read_text()
    assert "Skipped utterances:" in text
    assert "- cdsvae: 1 of 12 test utterances skipped (unreadable or too short; --skip_bad) and left out of " \
           "the trials: spk2_u7" in text
    assert "- dsvae:" not in text
    assert "1 of 12 test utterances skipped" in (a / "RESULTS.md").read_text()
    assert "Skipped utterances" not in (b / "RESULTS.md").read_text()

    # the note as a function: the count, at most ten ids, nothing without skips
    many = [f"u{k:02d}" for k in range(12)]
    c = make_exp(tmp_path, "many", CDSVAE_W, {**res, "n_utts": 40, "without_embedding": many})
    lines = [line for block in skipped_note([load_experiment(c), load_experiment(b)], "dev")
             for line in markdown_lines(block, tmp_path)]
    assert lines[0] == "Skipped utterances:" and lines[-1] == ""
    assert [line for line in lines if line.startswith("- ")] == [
        "- many: 12 of 40 dev utterances skipped (unreadable or too short; --skip_bad) and left out of the "
        "trials: " + ", ".join(many[:10]) + ", ..."]
    assert skipped_note([load_experiment(b)], "test") == []
    # results.json of an older score (no without_embedding): no note
    d = make_exp(tmp_path, "old", DSVAE_W, res)
    assert load_experiment(d).without_embedding == [] and skipped_note([load_experiment(d)], "test") == []
    write_recipe_report([d], tmp_path / "R_old.md", plots=False, demo=False)
    assert "Skipped" not in (tmp_path / "R_old.md").read_text()


def test_skipped_note_from_the_score_cli(tmp_path):
    """End to end: an utterance without an embedding, left out by score, is named in RESULTS.md."""
    from cdsvae.bin.score import main as score_main

    exp = make_exp(tmp_path, "cdsvae", CDSVAE_W, n_spk=3, n_utt=3)
    write_recipe_report([exp], tmp_path / "R.md", plots=False, demo=False)
    assert "Skipped" not in (tmp_path / "R.md").read_text()
    emb = exp / "emb_test"
    with (emb / "utt2spk").open("a") as f:
        f.write("spk9_u0 spk9\n")  # in the test set, but never embedded
    assert score_main(["--emb_dir", str(emb), "--utt2spk", str(emb / "utt2spk"),
                       "--outdir", str(exp / "score_test")]) == 0
    write_recipe_report([exp], tmp_path / "R.md", plots=False, demo=False)
    assert "- cdsvae: 1 of 10 test utterances skipped (unreadable or too short; --skip_bad) and left out of the " \
           "trials: spk9_u0" in (tmp_path / "R.md").read_text()
