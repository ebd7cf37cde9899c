"""Result files of a scored speech experiment read into rows, and what a broken one says."""

import json

import pytest

from _experiments import CDSVAE_W, DSVAE_W, make_exp, results
from cdsvae.eval.report.results import load_experiment
from cdsvae.io import UserError


def test_row_from_results_json_config_and_meta(tmp_path):
    res = {**results(0.05, 0.30, 0.5, 0.99, 10, 90), "mean_norm": results(0.04, 0.35, 0.4, 0.95, 10, 90),
           "n_utts": 12, "without_embedding": ["spk1_u2"]}
    exp = make_exp(tmp_path, "cdsvae_seed3", CDSVAE_W, res)
    (exp / "config.yaml").write_text((exp / "config.yaml").read_text() + "train:\n  seed: 3\n")
    (exp / "emb_test" / "meta.json").write_text(json.dumps({"checkpoint": {"file": "checkpoints/best.pt"}}))
    r = load_experiment(exp)
    assert (r.tag, r.group, r.system, r.seed) == ("cdsvae_seed3", "cdsvae", "C-DSVAE", 3)
    assert (r.eer_s, r.eer_z, r.min_dcf_s, r.min_dcf_z) == (0.05, 0.30, 0.5, 0.99)
    assert r.gap == pytest.approx(0.25) and r.n_trials == 100
    assert r.scores("mean_norm").eer_z == 0.35 and r.scores("mean_norm").gap == pytest.approx(0.31)
    assert r.checkpoint == {"file": "checkpoints/best.pt"} and r.n_utts == 12 and r.without_embedding == ["spk1_u2"]
    with pytest.raises(ValueError, match="unknown scoring"):
        r.scores("plda")
    plain = load_experiment(make_exp(tmp_path, "dsvae", DSVAE_W, results(0.1, 0.2, 0.3, 0.4, 1, 1)))
    assert plain.system == "DSVAE" and plain.mean_norm is None and plain.seed is None and plain.checkpoint is None


def test_missing_or_broken_results_are_named(tmp_path):
    exp = make_exp(tmp_path, "e", CDSVAE_W, results(0.1, 0.2, 0.3, 0.4, 1, 1))
    (exp / "score_test" / "results.json").write_text('{"s": {}}')
    with pytest.raises(UserError, match="results.json: missing or malformed entry"):
        load_experiment(exp)
    (exp / "score_test" / "results.json").unlink()
    with pytest.raises(UserError, match="results.json: results not found"):
        load_experiment(exp)
    (exp / "config.yaml").unlink()
    with pytest.raises(UserError, match="config.yaml: resolved config not found"):
        load_experiment(exp)
