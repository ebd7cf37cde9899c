import json

import numpy as np
import pytest
import yaml

from cdsvae.errors import UserError
from cdsvae.eval.embeddings import write_vectors
from cdsvae.eval.report import (
    embed_2d,
    load_experiment,
    plot_det,
    plot_tsne,
    results_table,
    system_label,
    write_recipe_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


def make_exp(root, tag, weights, results=None, n_spk=4, n_utt=3, seed=0):
    """An experiment dir as the stages leave it: config, embeddings, and scores from the score CLI."""
    exp = root / tag
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(yaml.safe_dump({"model": {"frame": "mlp", "feat_dim": 8}, "loss": weights}))
    rng = np.random.default_rng(seed)
    utt2spk = {f"spk{s}_u{u}": f"spk{s}" for s in range(n_spk) for u in range(n_utt)}
    centre = {f"spk{s}": rng.normal(size=6) * 3 for s in range(n_spk)}
    emb = exp / "emb_test"
    write_vectors(emb, "s", {u: centre[s] + rng.normal(size=6) * 0.3 for u, s in utt2spk.items()})
    write_vectors(emb, "z", {u: rng.normal(size=4) for u in utt2spk})
    (emb / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    if results is None:
        from cdsvae.bin.score import main as score_main

        assert score_main(["--emb_dir", str(emb), "--utt2spk", str(emb / "utt2spk"), "--outdir", str(exp / "score_test")]) == 0
    else:
        (exp / "score_test").mkdir()
        (exp / "score_test" / "results.json").write_text(json.dumps(results))
    return exp


DSVAE_W = {"con_s": 0.0, "con_z": 0, "mi_sz": 0.0, "kl_s": 1.0}
CDSVAE_W = {"con_s": 10.0, "con_z": 10.0, "mi_sz": 1.0}


def results(eer_s, eer_z, dcf_s, dcf_z, nt, nn):
    return {
        "s": {"eer": eer_s, "min_dcf": dcf_s, "threshold": 0.1},
        "z": {"eer": eer_z, "min_dcf": dcf_z, "threshold": 0.2},
        "n_target": nt,
        "n_nontarget": nn,
    }


def test_system_label_from_config():
    assert system_label({"loss": DSVAE_W}) == "DSVAE"
    assert system_label({"loss": CDSVAE_W}) == "C-DSVAE"
    assert system_label({"loss": {"con_s": 0, "con_z": 0, "mi_sz": 0.5}}) == "C-DSVAE"
    assert system_label({"model": {}}) == "C-DSVAE"  # objective defaults are C-DSVAE's


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


def test_results_table_known_answer():
    from pathlib import Path

    from cdsvae.eval.report import ExperimentResult

    r = ExperimentResult(Path("exp/x"), "x", "DSVAE", 0.1, 0.4, 0.2, 0.3, 3, 7)
    assert results_table([r]).splitlines()[-1] == "| DSVAE | x | 10.00 | 40.00 | 30.00 | 0.2000 | 0.3000 | 10 (3/7) |"


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


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_tsne_copes_with_tiny_sets(tmp_path, n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 5))
    xy = embed_2d(x)
    assert xy.shape == (n, 2) and np.isfinite(xy).all()
    path = plot_tsne({"s": x, "z": x[:, :2]}, [f"spk{k % 2}" for k in range(n)], tmp_path / "t.png")
    assert_png(path)


def test_det_plot_handles_perfect_and_degenerate_curves(tmp_path):
    from cdsvae.eval.eer import det_curve

    perfect = det_curve([1.0, 2.0], [0.0, -1.0])
    tied = det_curve([0.5, 0.5], [0.5])
    assert_png(plot_det({"s": perfect, "z": tied}, tmp_path / "det.png"))


def harmonic_wave(f0, seconds=1.0, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / sr
    amp = 0.1 * (1 + 0.5 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)))
    return (amp * sum(np.sin(k * phase) / k for k in range(1, 15))).astype(np.float32)


def test_listening_demo_writes_wavs_indexed_in_results(tmp_path):
    import soundfile as sf
    import torch

    from cdsvae.bin.score import main as score_main
    from cdsvae.data.feats import CMVNStats, FeatureWriter
    from cdsvae.eval.embeddings import extract_feature_dir
    from cdsvae.fbank import compute_fbank, load_fbank_config
    from cdsvae.models import build_model
    from cdsvae.train import checkpoint as ckpt
    from cdsvae.train.config import dump_config
    from cdsvae.train.task import check_config

    fbank = load_fbank_config({"n_mels": 16})
    feats_dir = tmp_path / "dump" / "test"
    feats_dir.mkdir(parents=True)
    (feats_dir / "fbank.yaml").write_text(yaml.safe_dump(fbank))
    stats = CMVNStats()
    utt2spk = {}
    with FeatureWriter(feats_dir / "feats.ark", feats_dir / "feats.scp", feats_dir / "utt2num_frames") as w:
        for spk, f0 in (("spkA", 110.0), ("spkB", 220.0)):
            for k in range(2):
                utt = f"{spk}_u{k}"
                feats = compute_fbank(harmonic_wave(f0, 0.6, seed=k), fbank)
                w.write(utt, feats)
                stats.accumulate(feats)
                utt2spk[utt] = spk
    (feats_dir / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    stats.save(tmp_path / "cmvn.npz")

    model_cfg = {"frame": "mlp", "feat_dim": 16, "s_dim": 4, "z_dim": 3, "hidden_dim": 8, "g_dim": 8,
                 "frame_hidden": 16, "init": "default"}
    exp = tmp_path / "exp" / "cdsvae_tiny"
    cfg = check_config({"model": model_cfg, "data": {"type": "speech", "segment_frames": 10,
                                                     "cmvn": str(tmp_path / "cmvn.npz")}})
    exp.mkdir(parents=True)
    dump_config(cfg, exp / "config.yaml")
    torch.manual_seed(0)
    ckpt.save_checkpoint(ckpt.step_path(exp / "checkpoints", 1), {"model": build_model(model_cfg).state_dict()})

    extract_feature_dir(exp, feats_dir, exp / "emb_test")
    score_main(["--emb_dir", str(exp / "emb_test"), "--utt2spk", str(feats_dir / "utt2spk"),
                "--outdir", str(exp / "score_test")])
    write_recipe_report([exp], tmp_path / "RESULTS.md", plots=True, demo=True)

    demo = exp / "report" / "test" / "demo"
    names = ["A_input.wav", "B_input.wav", "A.wav", "B.wav", "A_content_B_speaker.wav"]
    assert sorted(p.name for p in demo.iterdir()) == sorted(names)
    lengths = {}
    for name in names:
        wave, sr = sf.read(demo / name)
        assert sr == 16000 and np.isfinite(wave).all() and np.abs(wave).max() > 0.1
        lengths[name] = len(wave)
    # 58 frames -> 5 segments of 10 frames -> 50 frames of 160 samples (minus one hop, centred ISTFT)
    assert lengths["A.wav"] == lengths["A_content_B_speaker.wav"] == lengths["A_input.wav"] == 49 * 160
    text = (exp / "RESULTS.md").read_text()
    assert "## Listening demo" in text
    assert "A = spkA_u0 (speaker spkA)" in text and "B = spkB_u0 (speaker spkB)" in text
    for name in names:
        assert f"[{name}](report/test/demo/{name})" in text
    assert "| C-DSVAE | cdsvae_tiny |" in (tmp_path / "RESULTS.md").read_text()


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


def test_paired_p_value_matches_scipy_ttest_rel():
    from scipy.stats import ttest_rel

    from cdsvae.eval.report import paired_p_value

    rng = np.random.default_rng(3)
    for n in (2, 3, 5):
        a, b = rng.normal(size=n), rng.normal(size=n) + 0.3
        assert paired_p_value(a - b) == pytest.approx(ttest_rel(a, b).pvalue, rel=1e-10)
    assert paired_p_value([0.0, 0.0]) == 1.0 and paired_p_value([0.5, 0.5]) == 0.0
    with pytest.raises(ValueError):
        paired_p_value([1.0])


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
    from cdsvae.eval.report import skipped_note

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
    lines = skipped_note([load_experiment(c), load_experiment(b)], "dev")
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
