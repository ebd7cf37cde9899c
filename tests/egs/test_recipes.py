"""Whole recipes, all seven stages, with tiny settings: the mini speech recipe and Sprites.

Each recipe directory is copied into a temporary tree that mirrors the repository (_recipes.py);
the first full run of each is made once per session (conftest.py) and shared with the results
page test (test_results_page.py).
"""

from __future__ import annotations

import json
import math
import re
import subprocess

import pytest

from _recipes import MINI_TAGS, REPO, run_recipe, table_rows

SKIP_BAD = ("--skip_bad", "true")  # as the shared mini run (conftest.py): its inputs unchanged


def test_mini_speech_recipe_end_to_end(mini_recipe):
    rdir, log, tags = mini_recipe.rdir, mini_recipe.log, MINI_TAGS
    for tag in tags:
        assert f"Demo of {tag} -> exp/{tag}/demo/" in log
    for n in range(1, 8):
        assert re.search(rf"Stage {n}: ", log), f"stage {n} did not run"
    assert "Successfully finished." in log
    # C-DSVAE and DSVAE side by side, one experiment per seed, each with finite EERs in [0, 100]
    # for s and z, raw and mean-normalised; the report adds mean ± std and the paired difference.
    results = (rdir / "exp" / "RESULTS.md").read_text()
    assert "C-DSVAE" in results and "DSVAE" in results
    assert "Mean ± std over seeds" in results and "| cdsvae - dsvae | EER s (%) | 2 |" in results
    rows = table_rows(results)
    for tag, seed in (("cdsvae_seed1", 1), ("cdsvae_seed2", 2), ("dsvae_seed1", 1), ("dsvae_seed2", 2)):
        scores = json.loads((rdir / "exp" / tag / "score_test" / "results.json").read_text())
        for entry in (scores, scores["mean_norm"]):
            for factor in ("s", "z"):
                eer = entry[factor]["eer"]
                assert math.isfinite(eer) and 0.0 <= eer <= 1.0
        assert (rdir / "exp" / tag / "emb_test" / "s.scp").is_file()
        cfg = (rdir / "exp" / tag / "config.yaml").read_text()
        assert f"seed: {seed}\n" in cfg
        assert rows[tag][1].startswith("checkpoints/best.pt")  # the checkpoint table
        assert "eval/train ratio" in (rdir / "exp" / tag / "train.log").read_text()
    # The judges of stage 5, the disentanglement metrics of stage 6, their table and judged swaps.
    for which in ("speaker", "content"):
        assert json.loads((rdir / "exp" / "judge" / which / "judge.json").read_text())["complete"]
    assert "## Disentanglement (test set)" in results and "| speaker judge (supervised reference) |" in results
    for tag in tags:
        res = json.loads((rdir / "exp" / tag / "disentangle_test" / "results.json").read_text())
        assert 0.0 <= res["probes"]["z"]["rate"] and len(res["swap"]["draws"]) == 2
        assert "speaker judge: closer to" in (rdir / "exp" / tag / "demo" / "demo.json").read_text()
    assert (rdir / "data" / "test" / "units").is_file()
    assert list((rdir / "exp").glob("*/report/test/*.png")), "no plots"
    assert list((rdir / "exp").glob("*/demo/*.wav")), "no listening demo"
    for tag in tags:
        assert "](demo/A_content_B_speaker.wav)" in (rdir / "exp" / tag / "RESULTS.md").read_text(), tag
        assert 'src="demo/A_content_B_speaker.wav"' in (rdir / "exp" / tag / "index.html").read_text(), tag
    assert "page with figures and demos: exp/index.html" in log and (rdir / "exp" / "index.html").is_file()
    # Training already finished: running stage 4 again resumes at the end and trains no more.
    before = (rdir / "exp" / "cdsvae_seed1" / "train.log").read_text()
    run_recipe(rdir, "--stage", "4", "--stop_stage", "4", "--train_configs", "conf/train.yaml", "--seeds", "1",
               *SKIP_BAD, "--train_args", "--train.epochs 1 --train.max_steps 4 --train.batch_size 16 --data.segments_per_utt 2")
    after = (rdir / "exp" / "cdsvae_seed1" / "train.log").read_text()
    assert "step 5" not in after[len(before):]
    # The experiment records absolute data paths and holds its own CMVN copy.
    cfg = (rdir / "exp" / "cdsvae_seed1" / "config.yaml").read_text()
    assert f"train_feats: {rdir / 'dump' / 'train'}\n" in cfg
    assert (rdir / "exp" / "cdsvae_seed1" / "cmvn.npz").read_bytes() == (rdir / "dump/train/cmvn.npz").read_bytes()
    # Re-running features and voice conversion with the same inputs and options does nothing...
    feats_mtime = (rdir / "dump" / "train" / "feats.scp").stat().st_mtime_ns
    rerun = run_recipe(rdir, "--stage", "2", "--stop_stage", "3", "--nj", "2", *SKIP_BAD).stderr
    assert rerun.count("are up to date") == 4, rerun
    assert (rdir / "dump" / "train" / "feats.scp").stat().st_mtime_ns == feats_mtime
    # ...and a changed option redoes the stage.
    with open(rdir / "conf" / "vc.yaml", "a") as f:
        f.write("num_copies: 1\n")
    rerun = run_recipe(rdir, "--stage", "3", "--stop_stage", "3", "--nj", "2", *SKIP_BAD).stderr
    assert "are up to date" not in rerun and "Stage 3: motion augmentation" in rerun
    assert "num_copies: 1" in (rdir / "dump" / "train_vc" / "vc.yaml").read_text()
    # The experiments were trained on the old copies: stages 4 and 5 stop, naming what changed.
    tiny = "--train.epochs 1 --train.max_steps 2 --train.batch_size 16 --data.segments_per_utt 2"
    for stage in ("4", "5"):
        r = run_recipe(rdir, "--stage", stage, "--stop_stage", stage, "--seeds", "1", *SKIP_BAD, "--train_args",
                       tiny, check=False)
        assert r.returncode == 1
        error = [x for x in r.stderr.splitlines() if "Error:" in x]
        assert len(error) == 1 and "exp/cdsvae_seed1 was trained on other inputs: " in error[0], r.stderr[-2000:]
        assert "dump/train_vc/copy2/feats.scp missing now" in error[0] and "--retrain true" in error[0]
        assert "--outdir" not in error[0]  # the recipe's ways on, not the trainer's
    r = run_recipe(rdir, "--stage", "4", "--stop_stage", "4", "--train_configs", "conf/train_dsvae.yaml",
                   "--seeds", "1", "--retrain", "true", *SKIP_BAD, "--train_args", tiny)
    assert (rdir / "exp" / "dsvae_seed1.old1" / "checkpoints").is_dir()  # moved aside, not deleted
    assert "Stage 4: training on CPU" in r.stderr and "dsvae_seed1: " in r.stderr


def test_mini_recipe_skips_an_unreadable_utterance_in_every_stage(mini_recipe):
    """--skip_bad true: one test wav, unreadable from stage 2 on, is counted in stages 2 and 6 and
    in RESULTS.md (the shared run, before test_mini_speech_recipe_end_to_end reruns its stages)."""
    rdir, log, bad_utt, n_test = mini_recipe.rdir, mini_recipe.log, mini_recipe.bad_utt, mini_recipe.n_test
    assert bad_utt and n_test > 1
    assert f"Skipped 1 of {n_test} utterance(s) of data/test (unreadable audio; --skip_bad true)" in log
    assert "Left 1 utterance(s) of data/test without embedding" in log
    report = (mini_recipe.pages / "RESULTS.md").read_text()
    assert f"1 of {n_test} test utterances skipped" in report and bad_utt in report
    # the judges and the disentanglement metrics work on the utterances that have features
    judged = json.loads((mini_recipe.pages / "judge" / "speaker" / "judge.json").read_text())["eval"]["test"]
    assert judged["n_utts"] == n_test - 1
    for tag in MINI_TAGS:
        results = json.loads((mini_recipe.pages / tag / "score_test" / "results.json").read_text())
        assert results["without_embedding"] == [bad_utt] and results["n_utts"] == n_test, tag
        trials = (mini_recipe.pages / tag / "score_test" / "trials").read_text()
        assert bad_utt not in trials and trials, tag
        metrics = json.loads((mini_recipe.pages / tag / "disentangle_test" / "results.json").read_text())
        assert metrics["n_test_utts"] == n_test - 1 and bad_utt not in str(metrics["swap"]["draws"]), tag
    featured = [line.split()[0] for line in (rdir / "dump" / "test" / "feats.scp").read_text().splitlines()]
    assert bad_utt not in featured and len(featured) == n_test - 1


def test_sprites_video_recipe_end_to_end(sprites_recipe):
    rdir, log = sprites_recipe.rdir, sprites_recipe.log
    assert "Demo of cdsvae_cpu -> exp/cdsvae_cpu/demo/" in log
    assert "Skip stage 2: " in log and "Skip stage 3: " in log
    for n in (1, 4, 5, 6, 7):
        assert re.search(rf"Stage {n}: ", log), f"stage {n} did not run"
    for tag in ("cdsvae_cpu", "dsvae_cpu"):
        res = json.loads((rdir / "exp" / tag / "judge_results.json").read_text())
        assert res, tag
    results = (rdir / "exp" / "RESULTS.md").read_text()
    assert "C-DSVAE" in results and "DSVAE" in results
    assert list((rdir / "exp").glob("*/demo/swap_grid.png")), "no swap grids"
    for tag in ("cdsvae_cpu", "dsvae_cpu"):
        assert "](demo/swap_grid.png)" in (rdir / "exp" / tag / "RESULTS.md").read_text(), tag
        assert f'src="{tag}/demo/swap_grid.png"' in (rdir / "exp" / "index.html").read_text(), tag


@pytest.mark.parametrize("recipe", ["timit", "vctk", "mini", "custom", "sprites", "smmnist"])
def test_every_recipe_has_help_and_rejects_unknown_options(recipe):
    rdir = REPO / "egs" / recipe / "cdsvae1"
    r = subprocess.run(["./run.sh", "--help"], cwd=rdir, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Stages" in r.stdout
    r = subprocess.run(["./run.sh", "--no_such_option", "1"], cwd=rdir, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown option --no_such_option" in r.stderr


@pytest.mark.parametrize("recipe", ["timit", "vctk", "mini", "custom", "sprites", "smmnist"])
def test_recipe_training_configs_validate(recipe):
    """Every shipped training config passes the trainer's schema (typos fail here, not on a cluster)."""
    from cdsvae.experiment.schema import load_train_config

    confs = sorted((REPO / "egs" / recipe / "cdsvae1" / "conf").glob("**/train*.yaml"))
    assert confs
    for conf in confs:
        cfg = load_train_config(conf)
        weights = cfg["loss"]
        is_baseline = "dsvae" in conf.stem and "cdsvae" not in conf.stem
        assert (weights["con_s"] == weights["con_z"] == weights["mi_sz"] == 0) == is_baseline, conf
