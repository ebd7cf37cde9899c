"""The stage 5-7 entry points as a user runs them: --help, one-line errors, and the chain end to end."""

import json
import os
import subprocess
import sys

import kaldiio
import numpy as np
import pytest
import torch

from _tools import run_tool

TOOLS = ["extract_embeddings", "score", "make_demo", "make_report"]


def run(tool, *args, cwd=None):
    """The tool as its console script runs it, in this process (tests/_tools.py)."""
    return run_tool(tool, *args, cwd=cwd)


@pytest.mark.parametrize("tool", TOOLS)
def test_help(tool):
    """A real process per tool: ``python -m`` reaches the entry point."""
    out = subprocess.run([sys.executable, "-m", f"cdsvae.bin.{tool}", "--help"], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert f"cdsvae.bin.{tool}" in out.stdout and "--" in out.stdout


def assert_one_line_error(out, *fragments):
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    # progress bars may precede it; the error itself is one line, the last
    lines = [line for line in out.stderr.strip().splitlines() if "%|" not in line]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_missing_files_give_one_line_errors(tmp_path):
    (tmp_path / "feats").mkdir()
    assert_one_line_error(run("extract_embeddings", "--expdir", tmp_path / "exp", "--feats", tmp_path / "feats",
                              "--outdir", tmp_path / "emb"), "extract_embeddings: error:", "feats.scp")
    assert_one_line_error(run("score", "--emb_dir", tmp_path / "emb", "--utt2spk", tmp_path / "utt2spk",
                              "--outdir", tmp_path / "score"), "score: error:", "s.scp")
    assert_one_line_error(run("make_demo", "--expdir", tmp_path / "nope"), "make_demo: error:", "nope")
    assert_one_line_error(run("make_report", "--expdirs", tmp_path / "nope", "--out", tmp_path / "R.md"),
                          "make_report: error:", "nope")


def test_score_errors_on_bad_input(tmp_path):
    from cdsvae.eval.metrics.embeddings import write_vectors

    emb = tmp_path / "emb"
    write_vectors(emb, "s", {"a_1": np.ones(3), "a_2": np.ones(3)})
    write_vectors(emb, "z", {"a_1": np.ones(3), "a_2": np.ones(3)})
    (tmp_path / "utt2spk").write_text("a_1 a\na_2 a\n")
    # one speaker: no nontarget trials, EER is undefined
    assert_one_line_error(run("score", "--emb_dir", emb, "--utt2spk", tmp_path / "utt2spk", "--outdir", tmp_path / "o"),
                          "0 nontarget trials")
    # b_1 has no embedding: it is left out of the trials (not an error), which leaves one speaker again
    (tmp_path / "utt2spk").write_text("a_1 a\na_2 a\nb_1 b\n")
    out = run("score", "--emb_dir", emb, "--utt2spk", tmp_path / "utt2spk", "--outdir", tmp_path / "o")
    assert "1 of 3 utterance(s)" in out.stdout and "b_1" in out.stdout
    assert_one_line_error(out, "1 target and 0 nontarget trials")


def test_stages_5_to_7_end_to_end(tmp_path):
    """extract_embeddings -> score -> make_report, and make_demo, on a tiny model in a recipe-like directory."""
    from cdsvae.models import build_model
    from cdsvae import checkpoint as ckpt
    from cdsvae.config import dump_config
    from cdsvae.experiment.schema import check_config

    rng = np.random.default_rng(0)
    feats_dir = tmp_path / "dump" / "test"
    feats_dir.mkdir(parents=True)
    utts = {f"spk{s}_u{u}": f"spk{s}" for s in range(3) for u in range(3)}
    feats = {u: (rng.normal(size=(int(rng.integers(16, 40)), 5)) + 3 * int(s[-1])).astype(np.float32)
             for u, s in utts.items()}
    feats["spk0_u9"] = rng.normal(size=(3, 5)).astype(np.float32)  # shorter than a segment
    utts["spk0_u9"] = "spk0"
    kaldiio.save_ark(str(feats_dir / "feats.ark"), dict(sorted(feats.items())), scp=str(feats_dir / "feats.scp"))
    (feats_dir / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utts.items())))

    model_cfg = {"frame": "mlp", "feat_dim": 5, "s_dim": 4, "z_dim": 2, "hidden_dim": 8, "g_dim": 8,
                 "frame_hidden": 8, "init": "default"}
    for tag, weights in (("cdsvae", {}), ("dsvae", {"con_s": 0.0, "con_z": 0.0, "mi_sz": 0.0})):
        exp = tmp_path / "exp" / tag
        exp.mkdir(parents=True)
        dump_config(check_config({"model": model_cfg, "loss": weights,
                                  "data": {"type": "speech", "segment_frames": 8}}), exp / "config.yaml")
        torch.manual_seed(len(tag))
        ckpt.save_checkpoint(ckpt.step_path(exp / "checkpoints", 3), {"model": build_model(model_cfg).state_dict()})

    for tag in ("cdsvae", "dsvae"):
        if tag == "cdsvae":
            out = run("extract_embeddings", "--expdir", f"exp/{tag}", "--feats", "dump/test", "--outdir",
                      f"exp/{tag}/emb_test", cwd=tmp_path)
            assert_one_line_error(out, "utterance spk0_u9: 3 frames", "--skip_bad true")
        out = run("extract_embeddings", "--expdir", f"exp/{tag}", "--feats", "dump/test", "--outdir",
                  f"exp/{tag}/emb_test", "--skip_bad", "true", "--batch_size", "4", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "skipped 1 utterance(s): spk0_u9" in out.stdout
        assert (tmp_path / f"exp/{tag}/emb_test/s.scp").read_text().startswith(f"spk0_u0 exp/{tag}/emb_test/s.ark:")
        out = run("score", "--emb_dir", f"exp/{tag}/emb_test", "--utt2spk", "dump/test/utt2spk",
                  "--outdir", f"exp/{tag}/score_test", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        res = json.loads((tmp_path / f"exp/{tag}/score_test/results.json").read_text())
        assert res["n_target"] == 9 and res["n_nontarget"] == 27  # 9 utterances after the skip
        assert set(res) >= {"s", "z", "n_target", "n_nontarget"} and set(res["s"]) == {"eer", "min_dcf", "threshold"}
        assert len((tmp_path / f"exp/{tag}/score_test/trials").read_text().splitlines()) == 36
        if tag != "cdsvae":
            continue
        # rescoring with the written trials reproduces the result
        out = run("score", "--emb_dir", f"exp/{tag}/emb_test", "--utt2spk", "dump/test/utt2spk",
                  "--trials", f"exp/{tag}/score_test/trials", "--outdir", f"exp/{tag}/rescore", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert json.loads((tmp_path / f"exp/{tag}/rescore/results.json").read_text())["s"] == res["s"]

    out = run("make_report", "--expdirs", "exp/cdsvae", "exp/dsvae", "--out", "RESULTS.md", "--demo", "false",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| C-DSVAE | cdsvae |" in text and "| DSVAE | dsvae |" in text
    assert "| C-DSVAE | cdsvae |" in out.stdout
    for tag in ("cdsvae", "dsvae"):
        assert (tmp_path / f"exp/{tag}/RESULTS.md").is_file()
        assert (tmp_path / f"exp/{tag}/report/test/det.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / f"exp/{tag}/report/test/tsne.png").read_bytes()[:4] == b"\x89PNG"
    # the demo needs the feature options (fbank.yaml): without them the demo step says so instead of
    # failing, and the report shows its note; an experiment without a demo says how to make one
    out = run("make_demo", "--expdir", "exp/cdsvae", "--set", "test", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "make_demo: No demo: dump/test/fbank.yaml" in out.stdout
    out = run("make_report", "--expdirs", "exp/cdsvae", "exp/dsvae", "--out", "R2.md", "--plots", "false",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "No demo: dump/test/fbank.yaml" in (tmp_path / "exp/cdsvae/R2.md").read_text()
    assert "No demo (run the demo step: `python -m cdsvae.bin.make_demo --expdir exp/dsvae --set test`)" \
        in (tmp_path / "exp/dsvae/R2.md").read_text()
    # every experiment against a baseline, in the comparison and on the console; an unknown one writes nothing
    out = run("make_report", "--expdirs", "exp/cdsvae", "exp/dsvae", "--out", "R3.md", "--plots", "false",
              "--baseline", "cdsvae", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "R3.md").read_text()
    assert "## Against cdsvae, paired by seed (test set)" in text
    row = next(line for line in text.splitlines() if line.startswith("| dsvae - cdsvae | EER z (%) |"))
    assert row.endswith("| one seed: not tested |") and row in out.stdout
    out = run("make_report", "--expdirs", "exp/cdsvae", "exp/dsvae", "--out", "R4.md", "--plots", "false",
              "--baseline", "conz30", cwd=tmp_path)
    assert_one_line_error(out, "make_report: error:", "baseline 'conz30' is none of the experiments (cdsvae, dsvae)")
    assert not (tmp_path / "R4.md").exists() and not (tmp_path / "exp/cdsvae/R4.md").exists()


def test_score_cli_mean_normalised_scoring(tmp_path):
    from cdsvae.eval.metrics.embeddings import write_vectors

    rng = np.random.default_rng(1)
    utt2spk = {f"a_{u}": "a" for u in range(3)} | {f"b_{u}": "b" for u in range(3)}
    for name, utts in (("emb", list(utt2spk)), ("train", [f"t{k}" for k in range(6)])):
        for factor, dim in (("s", 4), ("z", 3)):
            write_vectors(tmp_path / name, factor, {u: 5.0 + rng.normal(size=dim) for u in utts})
    (tmp_path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    out = run("score", "--emb_dir", "emb", "--utt2spk", "utt2spk", "--outdir", "score", "--mean_from", "train",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "s (mean-normalised): EER" in out.stdout
    res = json.loads((tmp_path / "score" / "results.json").read_text())
    assert res["mean_norm"]["n_utts"] == 6 and res["mean_norm"]["mean_from"] == "train"
    assert set(res["mean_norm"]["s"]) == {"eer", "min_dcf", "threshold"}
    for name in ("scores_s", "scores_z", "scores_s_meannorm", "scores_z_meannorm"):
        assert len((tmp_path / "score" / name).read_text().splitlines()) == 15
    out = run("score", "--emb_dir", "emb", "--utt2spk", "utt2spk", "--outdir", "score2", "--mean_from", "nowhere",
              cwd=tmp_path)
    assert_one_line_error(out, "nowhere/s.scp: embedding scp not found")


def test_score_leaves_out_and_counts_utterances_without_embeddings(tmp_path):
    """Utterances of utt2spk absent from s.scp (skipped at extraction, or without features) are left out
    of the trials and counted in results.json; the trials are all pairs of the others."""
    from itertools import combinations

    from cdsvae.eval.metrics.embeddings import write_vectors

    rng = np.random.default_rng(2)
    utt2spk = {f"spk{s}_u{u}": f"spk{s}" for s in range(4) for u in range(3)}
    missing = ["spk1_u1", "spk3_u0", "spk3_u2"]  # spk3 keeps one utterance: nontarget trials only
    kept = {u: s for u, s in utt2spk.items() if u not in missing}
    write_vectors(tmp_path / "emb", "s", {u: rng.normal(size=4) for u in kept})
    write_vectors(tmp_path / "emb", "z", {u: rng.normal(size=3) for u in kept})
    (tmp_path / "emb" / "meta.json").write_text(json.dumps({"skipped": ["spk3_u0"]}))
    (tmp_path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    out = run("score", "--emb_dir", "emb", "--utt2spk", "utt2spk", "--outdir", "score", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert ("3 of 12 utterance(s) of utt2spk have no embedding and are left out of the trials "
            "(1 skipped at extraction, 2 without features): spk1_u1 spk3_u0 spk3_u2") in out.stdout

    res = json.loads((tmp_path / "score" / "results.json").read_text())
    assert res["n_utts"] == 12 and res["n_without_embedding"] == 3 and res["without_embedding"] == missing
    pairs = list(combinations(sorted(kept), 2))
    n_target = sum(kept[a] == kept[b] for a, b in pairs)
    assert (res["n_target"], res["n_nontarget"]) == (n_target, len(pairs) - n_target) == (7, 29)
    trials = [line.split() for line in (tmp_path / "score" / "trials").read_text().splitlines()]
    assert sorted((a, b) for a, b, _ in trials) == pairs
    assert all((label == "target") == (kept[a] == kept[b]) for a, b, label in trials)
    assert not {u for a, b, _ in trials for u in (a, b)} & set(missing)
    for name in ("scores_s", "scores_z"):
        assert len((tmp_path / "score" / name).read_text().splitlines()) == len(pairs)

    # every utterance embedded: nothing left out, and results.json says so
    write_vectors(tmp_path / "emb_all", "s", {u: rng.normal(size=4) for u in utt2spk})
    write_vectors(tmp_path / "emb_all", "z", {u: rng.normal(size=3) for u in utt2spk})
    out = run("score", "--emb_dir", "emb_all", "--utt2spk", "utt2spk", "--outdir", "score_all", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "left out" not in out.stdout
    res = json.loads((tmp_path / "score_all" / "results.json").read_text())
    assert (res["n_utts"], res["n_without_embedding"], res["without_embedding"]) == (12, 0, [])
    assert res["n_target"] + res["n_nontarget"] == 66
