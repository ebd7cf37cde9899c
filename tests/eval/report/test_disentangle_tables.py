"""Disentanglement tables from experiment dirs: rows, judge references, seeds and paired differences."""

import json
import statistics

import pytest
import yaml
from scipy import stats

from _experiments import CDSVAE_W, DSVAE_W, make_exp, results
from cdsvae.eval.report.disentangle_tables import (disentanglement_difference_table, disentanglement_table,
                                            seed_disentanglement_table, swap_detail_table, variant_table)
from cdsvae.eval.report.results import load_experiment
from cdsvae.io import UserError


def metrics(z, s, speaker, content):
    summary = {v: {"speaker": speaker, "content_error": content} for v in ("swap", "random_s", "random_z")}
    summary.update({"input_a": {"speaker": [1.0] * len(speaker)}, "input_b": {"content_error": [0.1] * len(content)},
                    "reconstruction_b": {"content_error": content}})
    return {"probes": {"z": {"rate": z}, "s": {"rate": s}}, "swap": {"summary": summary}}


def experiment(root, tag, weights, seed, figures, sv=None):
    """An experiment dir with these disentanglement figures and speaker-verification results ``sv``."""
    exp = make_exp(root, tag, weights, sv or results(0.05, 0.3, 0.5, 0.9, 10, 50))
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


def variant(root, tag, seed, eer_z, random_s, reconstruction):
    """An experiment whose EER z, random-s speaker scores and reconstruction content errors are given."""
    figures = metrics(0.2, 1.0, [0.9, 0.8], [0.4, 0.5])
    summary = figures["swap"]["summary"]
    summary["random_s"] = {"speaker": random_s, "content_error": [0.4, 0.5]}
    summary["reconstruction_b"] = {"content_error": reconstruction, "speaker": [1.0, 0.9]}
    return experiment(root, tag, CDSVAE_W, seed, figures, results(0.01, eer_z, 0.1, 1.0, 10, 50))


def test_every_experiment_against_a_baseline_paired_by_seed(tmp_path):
    base_z, var_z = {1: 0.36, 2: 0.37, 3: 0.35}, {1: 0.39, 2: 0.385, 3: 0.38}
    base_rs, var_rs = {1: [0.6, 0.5], 2: [0.55, 0.65], 3: [0.6, 0.6]}, {1: [0.5, 0.5], 2: [0.6, 0.6], 3: [0.55, 0.65]}
    rows = []
    for k in (1, 2, 3):
        rows.append(variant(tmp_path, f"cdsvae_seed{k}", k, base_z[k], base_rs[k], [0.30, 0.28]))
        rows.append(variant(tmp_path, f"conz30_seed{k}", k, var_z[k], var_rs[k], [0.30, 0.28]))
    rows.append(variant(tmp_path, "zdim8_seed1", 1, 0.40, [0.5, 0.5], [0.40, 0.42]))
    table = variant_table(rows, "test", "cdsvae").markdown()
    lines = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in table.splitlines()}
    # EER z, by hand: differences 3.0, 1.5, 3.0 points
    diffs = [100 * (var_z[k] - base_z[k]) for k in (1, 2, 3)]
    p = stats.ttest_rel([100 * var_z[k] for k in (1, 2, 3)], [100 * base_z[k] for k in (1, 2, 3)]).pvalue
    eer_z = lines[("conz30 - cdsvae", "EER z (%)")]
    assert f"| 1,2,3 | {statistics.mean(diffs):+.2f} ± {statistics.stdev(diffs):.2f} | 36.00 ± 1.00 | 38.50 ± 0.50 | 3/3 |" in eer_z
    assert (f"conz30 better (p = {p:.3f})" if p < 0.05 else f"within noise (p = {p:.2f})") in eer_z
    # random s: the per-experiment mean over draws; lower is better (0.55 0.6 0.6 against 0.5 0.6 0.6)
    random_s = lines[("conz30 - cdsvae", "random s (s ~ p(s), z_B): closer to B")]
    assert "| 1,2,3 | -0.017 ± 0.029 | 0.583 ± 0.029 | 0.567 ± 0.058 | 1/3 | within noise" in random_s
    # identical figures: no difference, better in none, p = 1
    recon = lines[("conz30 - cdsvae", "reconstruction of B: content error (%)")]
    assert "| +0.00 ± 0.00 |" in recon and "| 0/3 | within noise (p = 1.00) |" in recon
    # one seed in common: the difference, not tested
    one = lines[("zdim8 - cdsvae", "reconstruction of B: content error (%)")]
    assert "| 1 | +12.00 | 29.00 ± 0.00 | 41.00 ± 0.00 | 0/1 | one seed: not tested |" in one
    assert not any(key[0].startswith("cdsvae - ") for key in lines)
    with pytest.raises(UserError, match="baseline 'default' is none of the experiments .*cdsvae, conz30, zdim8"):
        variant_table(rows, "test", "default")
