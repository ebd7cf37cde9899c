"""cmd_backend=slurm (utils/run_slurm.sh) and the README's srun + torchrun recipe on a real
one-node Slurm cluster of this machine (the slurm_cluster fixture, tests/utils/_slurm.py);
skipped where that cluster cannot start."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from _signals import harmonic_wave
from _slurm import free_port
from cdsvae.fbank import compute_fbank, load_fbank_config
from cdsvae import checkpoint as ckpt

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "egs" / "TEMPLATE" / "cdsvae1"
VENV_BIN = REPO / "tools" / "venv" / "bin"
TOY = REPO / "tests" / "train" / "_toy.py"
SR = 16000


@pytest.fixture()
def recipe(tmp_path: Path, slurm_cluster) -> Path:
    """tmp/egs/demo/cdsvae1 linked like a real recipe (tmp/tools/venv is the real venv), with the
    mini recipe's feature config."""
    if slurm_cluster.memory_mb < 4096:
        pytest.skip(f"cmd.sh's slurm jobs ask for 4G; the node has {slurm_cluster.memory_mb} MB")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "venv").symlink_to(REPO / "tools" / "venv")
    rdir = tmp_path / "egs" / "demo" / "cdsvae1"
    (rdir / "conf").mkdir(parents=True)
    for name in ("cdsvae.sh", "path.sh", "cmd.sh"):
        (rdir / name).symlink_to(TEMPLATE / name)
    (rdir / "utils").symlink_to(REPO / "utils")
    shutil.copy(REPO / "egs" / "mini" / "cdsvae1" / "conf" / "fbank.yaml", rdir / "conf" / "fbank.yaml")
    return rdir


def write_data_dir(rdir: Path, name: str, speakers: list[str], utts: int = 2) -> dict[str, np.ndarray]:
    """data/<name> of a few 0.3 s harmonic 'utterances' per speaker; returns the audio as written."""
    data, audio = rdir / "data" / name, rdir / "audio"
    data.mkdir(parents=True)
    audio.mkdir(exist_ok=True)
    waves, wav_scp, utt2spk, spk2utt = {}, [], [], []
    for s, spk in enumerate(speakers):
        ids = [f"{spk}-{name}{u}" for u in range(utts)]
        for u, utt in enumerate(ids):
            path = audio / f"{utt}.wav"
            sf.write(path, harmonic_wave(110 + 40 * s, 0.3, SR, seed=10 * s + u), SR, subtype="PCM_16")
            waves[utt] = sf.read(path, dtype="float32")[0]
            wav_scp.append(f"{utt} {path}\n")
            utt2spk.append(f"{utt} {spk}\n")
        spk2utt.append(f"{spk} {' '.join(ids)}\n")
    (data / "wav.scp").write_text("".join(wav_scp))
    (data / "utt2spk").write_text("".join(utt2spk))
    (data / "spk2utt").write_text("".join(spk2utt))
    return waves


def recipe_env(cluster) -> dict[str, str]:
    """The cluster's client environment with cmd.sh's slurm backend chosen."""
    env = {k: v for k, v in cluster.env.items() if k not in ("MASTER_ADDR", "MASTER_PORT")}
    return {**env, "cmd_backend": "slurm"}


def last_line(path: Path) -> str:
    return path.read_text().rstrip("\n").splitlines()[-1]


def test_the_node_advertises_this_machines_cpus_and_memory(slurm_cluster):
    r = subprocess.run(["sinfo", "--noheader", "--Node", "--format", "%N %c %m %T"], env=slurm_cluster.env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    node, cpus, memory_mb, state = r.stdout.split()
    assert (node, int(cpus), state) == (slurm_cluster.node, os.cpu_count(), "idle")
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    assert 0.8 * total_mb < int(memory_mb) <= total_mb


def test_stage_2_runs_its_feature_jobs_as_slurm_job_arrays(slurm_cluster, recipe, monkeypatch):
    waves = write_data_dir(recipe, "train", ["s1", "s2", "s3"])
    waves |= write_data_dir(recipe, "test", ["s4"])
    r = subprocess.run(["./cdsvae.sh", "--train_set", "train", "--test_sets", "test", "--stage", "2",
                        "--stop_stage", "2", "--nj", "3"], cwd=recipe, env=recipe_env(slurm_cluster),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    monkeypatch.chdir(recipe)  # feats.scp names its archives relative to the recipe
    cfg = load_fbank_config(recipe / "conf" / "fbank.yaml")
    for dset, njobs in (("train", 3), ("test", 1)):
        out = recipe / "dump" / dset
        # One array per set: sbatch printed its job id, Slurm wrote each task's output file and
        # each task wrote its log with the local launcher's end line.
        assert re.fullmatch(r"\d+(;\S+)?\n", (out / "log" / "q" / "make_fbank.sbatch").read_text())
        for job in range(1, njobs + 1):
            assert last_line(out / "log" / f"make_fbank.{job}.log").startswith("# Ended (code 0)")
            assert (out / "log" / "q" / f"make_fbank.{job}.out").is_file()
        assert not (out / "log" / f"make_fbank.{njobs + 1}.log").exists()
        feats = {k: np.asarray(v) for k, v in kaldiio.load_scp(str(out / "feats.scp")).items()}
        assert sorted(feats) == sorted(u for u in waves if f"-{dset}" in u)
        for utt, x in feats.items():
            np.testing.assert_allclose(x, compute_fbank(waves[utt], cfg), rtol=1e-5, atol=1e-5)
    assert (recipe / "dump" / "train" / "cmvn.npz").is_file()
    assert "Features of train: 3 job(s)" in r.stderr and "Features of test: 1 job(s)" in r.stderr


def test_a_failed_job_of_the_array_fails_the_launcher_which_names_it(slurm_cluster, recipe):
    write_data_dir(recipe, "train", ["s1", "s2", "s3"])
    (recipe / "audio" / "s2-train1.wav").unlink()
    # Stage 2's command, through cmd.sh's cpu_cmd as cdsvae.sh calls it.
    script = ("set -e; . ./path.sh; . ./cmd.sh; utils/split_data.sh data/train 3; "
              "${cpu_cmd} JOB=1:3 dump/train/log/make_fbank.JOB.log python -m cdsvae.bin.make_fbank "
              "--config conf/fbank.yaml --skip_bad false --job JOB data/train/split3/JOB dump/train")
    r = subprocess.run(["bash", "-c", script], cwd=recipe, env=recipe_env(slurm_cluster), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1, r.stderr[-3000:]
    bad = next(j for j in (1, 2, 3) if "s2-train1" in (recipe / f"data/train/split3/{j}/wav.scp").read_text())
    assert re.search(rf"^run_slurm\.sh: 1 / 3 jobs of Slurm job \d+ failed \(JOB={bad}\); "
                     rf"log: dump/train/log/make_fbank\.{bad}\.log$", r.stderr, re.M), r.stderr
    assert "s2-train1.wav" in r.stderr and "# Ended (code 1)" in r.stderr
    logs = recipe / "dump" / "train" / "log"
    for job in {1, 2, 3} - {bad}:
        assert last_line(logs / f"make_fbank.{job}.log").startswith("# Ended (code 0)")


# The README's multi-node recipe on one node: an allocation, MASTER_ADDR from its node list,
# one srun task per node that starts torchrun, which meets its peers through c10d rendezvous
# (the launcher cdsvae.sh builds for --num_nodes > 1).
MASTER_ADDR = 'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1); '
SRUN_TORCHRUN = (MASTER_ADDR + 'srun --nodes 1 --ntasks-per-node 1 torchrun --nnodes 1 --nproc_per_node 2 '
                 '--rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv_id "$SLURM_JOB_ID" "$@"')
# Without torchrun: srun starts both processes, which read SLURM_PROCID / SLURM_STEP_NUM_TASKS.
SRUN_TASKS = MASTER_ADDR + 'srun --nodes 1 --ntasks 2 python "$@"'

TINY = ["--model.frame", "mlp", "--model.feat_dim", "12", "--model.s_dim", "8", "--model.z_dim", "4",
        "--model.hidden_dim", "16", "--model.g_dim", "8", "--model.frame_hidden", "16",
        "--data.type", "synthetic", "--data.frame_shape", "[12]", "--data.num_train", "16", "--data.num_valid", "8",
        "--data.with_motion", "true", "--train.tensorboard", "false"]


def salloc(cluster, script: str, *args: str, cwd: Path, ntasks: int = 1) -> subprocess.CompletedProcess:
    """``salloc`` of 2 CPUs on the node running ``bash -c script`` with ``args``, as a user would
    with the venv on PATH (path.sh)."""
    if cluster.cpus < 2:
        pytest.skip(f"two training processes need 2 CPUs; the node has {cluster.cpus}")
    env = {**cluster.env, "PATH": f"{VENV_BIN}:{cluster.env['PATH']}", "OMP_NUM_THREADS": "1",
           "MASTER_PORT": str(free_port()), "PYTHONPATH": str(REPO)}
    env.pop("MASTER_ADDR", None)
    cmd = ["salloc", "--nodes", "1", "--ntasks", str(ntasks), "--cpus-per-task", str(2 // ntasks),
           "bash", "-c", script, "bash", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def check_two_process_run(r: subprocess.CompletedProcess, out: Path) -> None:
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"salloc: Granted job allocation \d+", r.stderr), r.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert "2 process(es) (gloo), batch 4 per process, global batch 8, 2 steps per epoch, 2 epochs" in log
    _, state = ckpt.load_latest(out / "checkpoints")
    assert state["world_size"] == 2 and state["progress"]["epoch"] == 2 and state["progress"]["step"] == 4


def test_srun_torchrun_trains_with_two_gloo_processes(slurm_cluster, tmp_path):
    out = tmp_path / "exp"
    r = salloc(slurm_cluster, SRUN_TORCHRUN, "-m", "cdsvae.bin.train", "--outdir", str(out), *TINY,
               "--train.batch_size", "4", "--train.epochs", "2", "--train.device", "cpu", cwd=tmp_path)
    check_two_process_run(r, out)


def test_two_srun_tasks_train_as_two_gloo_processes(slurm_cluster, tmp_path):
    out = tmp_path / "exp"
    r = salloc(slurm_cluster, SRUN_TASKS, "-m", "cdsvae.bin.train", "--outdir", str(out), *TINY,
               "--train.batch_size", "4", "--train.epochs", "2", "--train.device", "cpu", cwd=tmp_path, ntasks=2)
    check_two_process_run(r, out)


def test_a_plain_run_inside_an_allocation_of_two_tasks_trains_as_one_process(slurm_cluster, tmp_path):
    """`salloc -n2` then `python -m cdsvae.bin.train` without srun: one process, not a rendezvous
    that waits for a second one."""
    out = tmp_path / "exp"
    r = salloc(slurm_cluster, 'env | grep "^SLURM_" | sort > slurm_env.txt; python "$@"', "-m",
               "cdsvae.bin.train", "--outdir", str(out), *TINY, "--train.batch_size", "4", "--train.epochs", "1",
               "--train.device", "cpu", cwd=tmp_path, ntasks=2)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = (tmp_path / "slurm_env.txt").read_text()
    assert "SLURM_NTASKS=2" in seen and "SLURM_STEP_NUM_TASKS" not in seen, seen
    assert "1 process(es), batch 4 per process, global batch 4" in (out / "train.log").read_text()
    assert ckpt.load_latest(out / "checkpoints")[1]["world_size"] == 1


def test_srun_torchrun_ddp_matches_one_process_with_the_global_batch(slurm_cluster, tmp_path):
    """tests/train/test_trainer.py's gloo equivalence, with the two processes started by srun."""
    toy = ["--num_train", "32", "--epochs", "2", "--schedule", "constant"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    one = subprocess.run([sys.executable, str(TOY), "--outdir", str(tmp_path / "one"), "--batch_size", "8", *toy],
                         env=env, capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    two = salloc(slurm_cluster, SRUN_TORCHRUN, str(TOY), "--outdir", str(tmp_path / "two"), "--batch_size", "4", *toy,
                 cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es) (gloo), batch 4 per process, global batch 8" in (tmp_path / "two" / "train.log").read_text()
    a, b = (ckpt.load_latest(tmp_path / d / "checkpoints")[1] for d in ("one", "two"))
    assert a["progress"] == b["progress"] and b["world_size"] == 2
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6), k
