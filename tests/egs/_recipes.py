"""The tiny recipe runs the recipe tests share: a temporary tree that mirrors the repository
(tools/venv, utils and the other recipes are symlinked, so a run writes nothing into the
checkout), the recipe's command line, and the first full runs of the mini and Sprites recipes
(conftest.py makes each once per test session).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import _shared_runs

REPO = Path(__file__).resolve().parents[2]
GENERATED = {"data", "dump", "exp", "corpus", "RESULTS.md"}


def make_tree(tmp_path: Path, recipe: str) -> Path:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "venv").symlink_to(REPO / "tools" / "venv")
    (tmp_path / "utils").symlink_to(REPO / "utils")
    (tmp_path / "egs").mkdir()
    for other in (REPO / "egs").iterdir():
        if other.name != recipe:
            (tmp_path / "egs" / other.name).symlink_to(other)
    rdir = tmp_path / "egs" / recipe / "cdsvae1"
    shutil.copytree(REPO / "egs" / recipe / "cdsvae1", rdir, symlinks=True,
                    ignore=lambda d, names: [n for n in names if n in GENERATED and Path(d).name == "cdsvae1"])
    return rdir


def run_recipe(rdir: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "cmd_backend")}
    env.setdefault("OMP_NUM_THREADS", "1")
    r = _shared_runs.run(["./run.sh", *args], timeout, cwd=rdir, env=env)
    if check:
        assert r.returncode == 0, r.stderr[-4000:]
    return r


def table_rows(results_md: str) -> dict[str, list[str]]:
    """Rows of the markdown results table, keyed by their first cell."""
    rows = {}
    for line in results_md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 2 and not set(cells[0]) <= set("-: "):
            rows[cells[0]] = cells
    return rows


TINY_JUDGES = """\
speaker: {channels: [16, 16, 16, 16, 48], lin_neurons: 8, attention_channels: 8, se_channels: 8, epochs: 1,
          batch_size: 8, crop_frames: 50}
content: {hidden: 8, layers: 1, proj: 8, subsample: 2, epochs: 1, batch_size: 4}
probe: {hidden: 8, layers: 1, proj: 8, subsample: 2, epochs: 1, batch_size: 4}
swap: {n_pairs: 4, n_draws: 2}
"""


MINI_TAGS = ("cdsvae_seed1", "cdsvae_seed2", "dsvae_seed1", "dsvae_seed2")
# --skip_bad true: the first run's stage 1 is followed by the loss of one test wav (first_run).
MINI_ARGS = (
    "--nj", "2", "--seeds", "1 2", "--judge_conf", "conf/judges_tiny.yaml", "--skip_bad", "true",
    "--local_data_opts", "--num_train_speakers 6 --num_dev_speakers 2 --num_test_speakers 2 --num_sx 2 "
                         "--num_si 1 --test_num_sx 2 --test_num_si 1",
    "--train_args", "--train.epochs 1 --train.max_steps 4 --train.batch_size 16 --data.segments_per_utt 2",
)
SPRITES_ARGS = (
    "--train_configs", "conf/tuning/train_cdsvae_cpu.yaml conf/tuning/train_dsvae_cpu.yaml",
    "--local_data_opts", "--train_size 36 --test_size 27",
    "--train_args", "--train.epochs 1 --train.max_steps 2 --train.batch_size 9",
    "--judge_args", "--epochs 1 --threshold 0",
    "--judge_eval_args", "--n_draws 2",
)
# What the results pages never link: left out of the copy the page tests open.
NOT_PAGES = shutil.ignore_patterns("checkpoints", "tensorboard", "packed", "packed.tar.gz", "*.ark", "log")


@dataclass(frozen=True)
class RecipeRun:
    """A finished recipe run: its directory, its console log, and ``pages``, a copy of its exp/
    made right after the run, elsewhere, that later tests changing ``rdir`` do not touch;
    ``bad_utt`` the test utterance whose wav was made unreadable after stage 1 (or ""), of
    ``n_test`` test utterances."""

    rdir: Path
    log: str
    pages: Path
    bad_utt: str = ""
    n_test: int = 0


def break_first_test_wav(rdir: Path) -> tuple[str, int]:
    """Overwrite the audio of data/test's first utterance with bytes no reader takes:
    (its id, the number of test utterances)."""
    wav_scp = (rdir / "data" / "test" / "wav.scp").read_text().splitlines()
    bad_utt, bad_wav = wav_scp[0].split(maxsplit=1)
    Path(bad_wav if os.path.isabs(bad_wav) else rdir / bad_wav).write_bytes(b"not audio at all")
    return bad_utt, len(wav_scp)


def first_run(root: Path, recipe: str, args: tuple[str, ...], judges: str | None = None,
              break_test_wav: bool = False) -> RecipeRun:
    """All seven stages; with ``break_test_wav``, stage 1 alone first, then one test wav is made
    unreadable and stages 2-7 run (``args`` should then say --skip_bad true)."""
    (root / "tree").mkdir()
    rdir = make_tree(root / "tree", recipe)
    if judges is not None:
        (rdir / "conf" / "judges_tiny.yaml").write_text(judges)
    log, bad_utt, n_test = "", "", 0
    if break_test_wav:
        log = run_recipe(rdir, *args, "--stop_stage", "1").stderr
        bad_utt, n_test = break_first_test_wav(rdir)
        args = (*args, "--stage", "2")
    r = run_recipe(rdir, *args)
    pages = root / "copied" / "exp"
    shutil.copytree(rdir / "exp", pages, ignore=NOT_PAGES)
    return RecipeRun(rdir, log + r.stderr, pages, bad_utt, n_test)
