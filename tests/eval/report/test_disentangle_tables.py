"""Disentanglement tables from experiment dirs: rows, judge references, seeds and paired differences."""

import json

import yaml

from _experiments import CDSVAE_W, DSVAE_W, make_exp, results
from cdsvae.eval.report.disentangle_tables import (disentanglement_difference_table, disentanglement_table,
                                            seed_disentanglement_table, swap_detail_table)
from cdsvae.eval.report.results import load_experiment


def metrics(z, s, speaker, content):
    summary = {v: {"speaker": speaker, "content_error": content} for v in ("swap", "random_s", "random_z")}
    summary.update({"input_a": {"speaker": [1.0] * len(speaker)}, "input_b": {"content_error": [0.1] * len(content)},
                    "reconstruction_b": {"content_error": content}})
    return {"probes": {"z": {"rate": z}, "s": {"rate": s}}, "swap": {"summary": summary}}


def experiment(root, tag, weights, seed, figures):
    exp = make_exp(root, tag, weights, results(0.05, 0.3, 0.5, 0.9, 10, 50))
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    (exp / "config.yaml").write_text(yaml.safe_dump({**cfg, "train": {"seed": seed}}))
    (exp / "disentangle_test").mkdir()
    (exp / "disentangle_test" / "results.json").write_text(json.dumps(figures))
    return load_experiment(exp)


def test_tables_rows_references_and_paired_differences(tmp_path):
    rows = []
    for k, noise in enumerate((0.01, -0.02, 0.015), start=1):
        rows.append(experiment(tmp_path, f"cdsvae_seed{k}", CDSVAE_W, k,
                               metrics(0.30 + noise, 1.0, [0.70, 0.72], [0.50, 0.52])))
        rows.append(experiment(tmp_path, f"dsvae_seed{k}", DSVAE_W, k,
                               metrics(0.30 - noise, 1.0, [0.60, 0.62], [0.60 + noise, 0.62])))
    judge = tmp_path / "judge"
    for kind, ev in (("speaker", {"eer": 0.0123, "min_dcf": 0.1}), ("content", {"error_rate": 0.1263})):
        (judge / kind).mkdir(parents=True)
        (judge / kind / "judge.json").write_text(json.dumps({"description": f"the {kind} judge", "eval": {"test": ev}}))
    table = disentanglement_table(rows, "test", judge).markdown()
    assert "| C-DSVAE | cdsvae_seed1 | 5.00 | 30.00 | 31.00 | 100.00 | 0.710 ± 0.014 | 51.00 ± 1.41 |" in table
    assert "| speaker judge (supervised reference) | judge/speaker | 1.23 |" in table
    assert "| content judge (supervised reference) | judge/content | | | 12.63 (on the audio) |" in table
    assert "speaker: the speaker judge; content: the content judge." in table
    by_seed = seed_disentanglement_table(rows, "test").markdown()
    assert "| C-DSVAE | cdsvae (3 seeds) | 5.00 ± 0.00 | 30.00 ± 0.00 | 30.17 ± 1.89 |" in by_seed
    diff = disentanglement_difference_table(rows, "test").markdown()
    # content error: C-DSVAE lower by 10 +- noise in every seed; z probe: opposite noise, no difference overall
    assert "| cdsvae - dsvae | swap content error (%) | 3 | " in diff
    content_row = next(line for line in diff.splitlines() if "swap content error" in line)
    assert "3/3" in content_row and "C-DSVAE better" in content_row
    z_row = next(line for line in diff.splitlines() if "unit error z" in line)
    assert "within noise" in z_row
    detail = swap_detail_table(rows, "test").markdown()
    seed2 = next(line for line in detail.splitlines() if line.startswith("| cdsvae_seed2 |"))
    assert seed2.startswith("| cdsvae_seed2 | 0.710 ± 0.014 |") and seed2.endswith("| 51.00 ± 1.41 | n/a |")
    figures = metrics(0.3, 1.0, [0.70, 0.72], [0.50, 0.52])
    figures["swap"]["summary"]["reconstruction_b"]["speaker"] = [0.9, 0.95]
    newer = experiment(tmp_path / "newer", "cdsvae_seed1", CDSVAE_W, 1, figures)
    newer_detail = swap_detail_table([newer], "test").markdown()
    assert newer_detail.splitlines()[2].endswith("| 51.00 ± 1.41 | 0.925 ± 0.035 |")
    # the note explains n/a only where a row has it
    assert "(n/a: results written before it was measured)" in detail
    assert "n/a" not in newer_detail and newer_detail.rstrip().endswith("when nothing is swapped.")
    assert disentanglement_table(rows[:0], "test", judge) is None and disentanglement_difference_table(rows[:2], "test") is None


def speaker_side_metrics(speaker, random_s, random_z):
    """results.json of cdsvae.bin.disentangle --content false: no probes, speaker scores only."""
    summary = {"swap": {"speaker": speaker}, "random_s": {"speaker": random_s}, "random_z": {"speaker": random_z},
               "input_a": {"speaker": [1.0] * len(speaker)}}
    return {"content": False, "probes": None, "swap": {"summary": summary}}


def test_without_transcripts_every_speaker_figure_is_kept_and_content_reads_not_measured(tmp_path):
    rows = []
    for k in (1, 2):
        rows.append(experiment(tmp_path, f"cdsvae_seed{k}", CDSVAE_W, k,
                               speaker_side_metrics([0.80, 0.90], [0.40, 0.50 + k / 10], [0.95, 1.0])))
        rows.append(experiment(tmp_path, f"dsvae_seed{k}", DSVAE_W, k,
                               speaker_side_metrics([0.60, 0.70], [0.70, 0.80], [0.90, 0.90])))
    judge = tmp_path / "judge"
    (judge / "speaker").mkdir(parents=True)
    (judge / "speaker" / "judge.json").write_text(json.dumps(
        {"description": "the speaker judge", "eval": {"test": {"eer": 0.02, "min_dcf": 0.1}}}))
    # a content judge left by an earlier run with transcripts is not shown next to these figures
    (judge / "content").mkdir()
    (judge / "content" / "judge.json").write_text(json.dumps(
        {"description": "a stale content judge", "eval": {"test": {"error_rate": 0.2}}}))
    table = disentanglement_table(rows, "test", judge).markdown()
    assert ("| C-DSVAE | cdsvae_seed1 | 5.00 | 30.00 | not measured | not measured | 0.850 ± 0.071 "
            "| not measured |") in table
    assert "| speaker judge (supervised reference) | judge/speaker | 2.00 |" in table
    assert "| content judge (no transcripts: not trained) | | | | not measured |" in table
    assert "stale" not in table and "speaker: the speaker judge." in table
    detail = swap_detail_table(rows, "test").markdown()
    assert ("| cdsvae_seed2 | 0.850 ± 0.071 | not measured | 0.550 ± 0.212 | not measured | 0.975 ± 0.035 "
            "| not measured | not measured |") in detail
    assert "content is not measured (no transcripts)" in detail
    by_seed = seed_disentanglement_table(rows, "test").markdown()
    assert "| DSVAE | dsvae (2 seeds) | 5.00 ± 0.00 | 30.00 ± 0.00 | not measured | not measured | 0.650 ± 0.000 " \
           "| not measured |" in by_seed
    diff = disentanglement_difference_table(rows, "test").markdown()
    assert "swap speaker score" in diff and "unit error" not in diff and "content error" not in diff
