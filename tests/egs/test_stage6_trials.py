"""Stage 6 hands --trials to the scoring of the first test set only; the other sets keep all pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_template import SETS, fake_tools, recipe, run  # noqa: F401 (fixtures)

# Stands in for cdsvae.bin.score: records its arguments and writes a results.json.
FAKE_SCORE = r"""
import json, os, sys
args = sys.argv[1:]
out = args[args.index("--outdir") + 1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "args"), "w") as f:
    f.write(" ".join(args) + "\n")
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"n_without_embedding": 0}, f)
"""


@pytest.fixture()
def scoring_recipe(recipe: Path, fake_tools: Path) -> Path:  # noqa: F811
    (fake_tools / "cdsvae" / "bin" / "score.py").write_text(FAKE_SCORE)
    (fake_tools / "cdsvae" / "bin" / "check_experiment.py").write_text("")
    for tag in ("cdsvae", "dsvae"):
        (recipe / "exp" / tag / "emb_train").mkdir(parents=True)
        (recipe / "exp" / tag / "emb_train" / "s.scp").write_text("")
    (recipe / "veri_test.txt").write_text("1 id1/v/00001.wav id1/w/00002.wav\n")
    return recipe


def test_trials_reach_the_first_test_set_only(scoring_recipe: Path, fake_tools: Path):  # noqa: F811
    r = run(scoring_recipe, "--stage", "6", "--stop_stage", "6", "--judges", "false", "--train_set", "train",
            "--test_sets", "test dev", "--trials", "veri_test.txt", extra_env={"PYTHONPATH": str(fake_tools)})
    assert r.returncode == 0, r.stderr
    for tag in ("cdsvae", "dsvae"):
        first = (scoring_recipe / "exp" / tag / "score_test" / "args").read_text()
        assert first.rstrip().endswith("--trials veri_test.txt --trials_format auto")
        assert "--trials" not in (scoring_recipe / "exp" / tag / "score_dev" / "args").read_text()


@pytest.mark.parametrize("args, message", [
    (["--trials", "nowhere.txt"], "--trials nowhere.txt: file not found"),
    (["--trials_format", "nist"], "--trials_format must be auto, kaldi or voxceleb, got 'nist'"),
])
def test_bad_trials_options_fail_clearly(scoring_recipe: Path, args, message):
    r = run(scoring_recipe, *args, *SETS)
    assert r.returncode == 2 and message in r.stderr
