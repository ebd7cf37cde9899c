"""Disentanglement tables from experiment dirs: rows, judge references, seeds and paired differences."""

import json

import yaml

from _experiments import CDSVAE_W, DSVAE_W, make_exp, results
from cdsvae.eval.disentangle_tables import (disentanglement_difference_table, disentanglement_table,
                                            seed_disentanglement_table, swap_detail_table)
from cdsvae.eval.results import load_experiment


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
    assert "| cdsvae_seed2 | 0.710 ± 0.014 |" in swap_detail_table(rows, "test").markdown()
    assert disentanglement_table(rows[:0], "test", judge) is None and disentanglement_difference_table(rows[:2], "test") is None
