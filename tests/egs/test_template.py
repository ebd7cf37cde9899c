"""egs/TEMPLATE/cdsvae1/cdsvae.sh driven the way recipes drive it: from a recipe directory
that symlinks cdsvae.sh, path.sh, cmd.sh and utils (built here in a temporary tree)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "egs" / "TEMPLATE" / "cdsvae1"

DATA_SH = r"""#!/usr/bin/env bash
# Writes tiny valid data dirs; BREAK=1 leaves data/test unsorted.
set -euo pipefail
echo "data.sh args: $*" > data_sh_args
mkdir -p audio
for set in train test; do
    d=data/$set
    mkdir -p $d
    : > $d/wav.scp; : > $d/utt2spk; : > $d/spk2utt
    for spk in s1 s2; do
        utts=""
        for i in 1 2; do
            touch audio/$set-$spk-$i.wav
            echo "$spk-$set$i audio/$set-$spk-$i.wav" >> $d/wav.scp
            echo "$spk-$set$i $spk" >> $d/utt2spk
            utts="$utts $spk-$set$i"
        done
        echo "$spk$utts" >> $d/spk2utt
    done
done
if [ "${BREAK:-0}" = 1 ]; then
    printf 's2-test1 s2\ns1-test1 s1\ns1-test2 s1\ns2-test2 s2\n' > data/test/utt2spk
fi
"""

# Stands in for cdsvae.bin.train: records how it was launched (check_processes: each check process,
# check_calls: the options of each experiment it checks); --check_inputs fails for the
# experiment named by FAKE_CHECK_FAIL, as the real one does for a run trained on other inputs,
# and says the one named by FAKE_FINISHED is trained to the end; FAKE_WARNINGS goes to train.log.
FAKE_TRAIN = r"""
import os, shlex, sys, time
args = sys.argv[1:]
if "--check_inputs" in args:
    with open("check_processes", "a") as f:
        f.write(" ".join(args) + "\n")
    nproc = int(args[args.index("--nproc") + 1])
    many = "--experiments" in args
    for exp in [shlex.split(line) for line in sys.stdin.read().splitlines() if line.strip()] if many else [args]:
        outdir = exp[exp.index("--outdir") + 1]
        with open("check_calls", "a") as f:
            f.write(" ".join(exp) + "\n")
        if os.environ.get("FAKE_CHECK_FAIL") and outdir.endswith(os.environ["FAKE_CHECK_FAIL"]):
            print("some warning first", file=sys.stderr)
            print(f"train: error: {outdir} was trained on other inputs: dump/train/feats.scp changed; "
                  f"train into a new --outdir or move {outdir} aside", file=sys.stderr)
            sys.exit(1)
        if os.environ.get("FAKE_UTTS") and 4 * nproc > int(os.environ["FAKE_UTTS"]):
            print(f"train: error: the training set has {os.environ['FAKE_UTTS']} utterances, fewer than one global "
                  f"batch of {4 * nproc} (train.batch_size 4 x {nproc} process(es)): use train.batch_size 2 or less",
                  file=sys.stderr)
            sys.exit(1)
        if os.environ.get("FAKE_FINISHED") and outdir.endswith(os.environ["FAKE_FINISHED"]):
            print(f"finished {outdir}: step 38, 2/2 epochs" if many else "finished: step 38, 2/2 epochs")
        elif many:
            print(f"checked {outdir}")
    sys.exit(0)
outdir = args[args.index("--outdir") + 1]
os.makedirs(outdir, exist_ok=True)
if os.environ.get("FAKE_WARNINGS"):  # what the trainer's log adds: INFO and WARNING lines
    with open(os.path.join(outdir, "train.log"), "a") as f:
        f.write(os.environ["FAKE_WARNINGS"])
rank = os.environ.get("RANK", "none")
start = time.time()
if os.environ.get("FAKE_TRAIN_SLEEP"):
    with open(os.path.join(outdir, "progress"), "w") as f:
        f.write("epoch 1/1, step 1/2, loss 3.5, ETA 2s\n")
time.sleep(float(os.environ.get("FAKE_TRAIN_SLEEP", "0")))
with open(os.path.join(outdir, f"launched.{rank}"), "w") as f:
    f.write(" ".join(args) + "\n")
    f.write(f"WORLD_SIZE={os.environ.get('WORLD_SIZE', 'none')}\n")
    f.write(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')!r}\n")
    f.write(f"{start} {time.time()}\n")
if os.environ.get("FAKE_TRAIN_FAIL") and outdir.endswith(os.environ["FAKE_TRAIN_FAIL"]):
    sys.exit(3)
print("fake training done", rank)
"""


@pytest.fixture()
def recipe(tmp_path: Path) -> Path:
    """tmp/egs/demo/cdsvae1 linked like a real recipe; tmp/tools/venv is the real venv."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "venv").symlink_to(REPO / "tools" / "venv")
    rdir = tmp_path / "egs" / "demo" / "cdsvae1"
    (rdir / "local").mkdir(parents=True)
    (rdir / "conf").mkdir()
    for name in ("cdsvae.sh", "path.sh", "cmd.sh"):
        (rdir / name).symlink_to(TEMPLATE / name)
    (rdir / "utils").symlink_to(REPO / "utils")
    (rdir / "local" / "data.sh").write_text(DATA_SH)
    (rdir / "local" / "data.sh").chmod(0o755)
    for conf in ("train.yaml", "train_dsvae.yaml"):
        (rdir / "conf" / conf).write_text("{}\n")
    return rdir


@pytest.fixture()
def fake_tools(tmp_path: Path) -> Path:
    """A `cdsvae` package, first on PYTHONPATH, whose cdsvae.bin has only `train`."""
    root = tmp_path / "fakepkg"
    (root / "cdsvae" / "bin").mkdir(parents=True)
    (root / "cdsvae" / "__init__.py").write_text("")
    (root / "cdsvae" / "bin" / "__init__.py").write_text("")
    (root / "cdsvae" / "bin" / "train.py").write_text(FAKE_TRAIN)
    return root


def run(cwd: Path, *args: str, extra_env: dict[str, str] | None = None, timeout: int = 120):
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "cmd_backend")}
    env.update(extra_env or {})
    return subprocess.run(["./cdsvae.sh", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


SETS = ("--train_set", "train", "--test_sets", "test")
# What stage 4 passes for SETS (speech): the data paths of --train_set/--dev_set under --dumpdir,
# --skip_bad, and the device of --ngpu 0.
DATA = ("--data.train_split train --data.train_feats dump/train --data.cmvn dump/train/cmvn.npz "
        "--data.motion_feats dump/train_vc --data.skip_bad false --data.valid_split null --train.device cpu")
DATA_GPU = DATA.replace("--train.device cpu", "--train.device cuda")


@pytest.fixture()
def fake_gpus(tmp_path: Path) -> Path:
    """A directory holding an `nvidia-smi` that lists two GPUs (put it first on PATH)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\necho 'GPU 1: Fake GPU (UUID: GPU-1)'\n")
    smi.chmod(0o755)
    return bindir


@pytest.mark.parametrize("modality, other", [("speech", "video"), ("video", "speech")])
def test_each_modality_has_its_seven_stages_in_its_own_file(modality, other):
    """stages/<modality>.sh defines stage_1 ... stage_7 of that modality, with no branch for the other."""
    text = (TEMPLATE / "stages" / f"{modality}.sh").read_text()
    assert sorted(re.findall(r"^(stage_\d)\(\) \{", text, re.M)) == [f"stage_{n}" for n in range(1, 8)]
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "${modality}" not in code
    assert other not in code.lower()


def test_the_entry_script_leaves_the_stages_to_the_modality_files():
    script = (TEMPLATE / "cdsvae.sh").read_text()
    assert not re.search(r"^stage_\d\(\)", script, re.M)
    assert not re.search(r"\$\{modality\}\"? *!?=", script)  # no test of --modality beyond its check
    assert '. "${cdsvae_dir}/stages/${modality}.sh"' in script


def test_recipes_share_the_template_files_and_one_log():
    for rdir in sorted((REPO / "egs").glob("*/cdsvae1")):
        if rdir.parent.name == "TEMPLATE":
            continue
        for name in ("cdsvae.sh", "path.sh", "cmd.sh", "db.sh"):
            assert (rdir / name).is_symlink(), rdir / name
            assert (rdir / name).resolve() == (TEMPLATE / name).resolve(), rdir / name
    defined = []
    for top in ("utils", "egs"):
        for root, _, files in os.walk(REPO / top):
            for name in files:
                path = Path(root) / name
                if name.endswith(".sh") and not path.is_symlink() and re.search(
                        r"^\s*log\(\) *\{", path.read_text(), re.M):
                    defined.append(path.relative_to(REPO).as_posix())
    assert defined == ["utils/log.sh"]


def test_help_lists_the_seven_stages_and_options():
    r = run(TEMPLATE, "--help")
    assert r.returncode == 0, r.stderr
    for n, what in enumerate(["data preparation", "features", "motion augmentation", "training",
                              "extraction", "scoring", "report"], 1):
        assert re.search(rf"^\s+{n}\s+{what}", r.stdout, re.M), what
    for opt in ("--stage", "--stop_stage", "--ngpu", "--nj", "--num_nodes", "--help"):
        assert opt in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--stage", "9"], "--stage and --stop_stage must be within 1..7"),
    (["--stage", "0"], "--stage and --stop_stage must be within 1..7"),
    (["--stop_stage", "8"], "--stage and --stop_stage must be within 1..7"),
    (["--stage", "5", "--stop_stage", "3"], "--stage 5 is after --stop_stage 3"),
    (["--stage", "two"], "--stage expects a non-negative integer"),
    (["--modality", "text"], "--modality must be speech or video"),
    (["--num_nodes", "2"], "--num_nodes 2 needs --ngpu >= 1"),
    (["--seeds", "1 two"], "--seeds expects non-negative integers, got 'two'"),
    (["--norm_max_utts", "0"], "--norm_max_utts must be at least 1"),
    (["--ngpu", "1", "--num_nodes", "2", "--retrain", "true"], "--retrain true with --num_nodes 2: move the"),
])
def test_bad_stage_options_fail_clearly(args, message):
    r = run(TEMPLATE, *args, *SETS)
    assert r.returncode == 2
    assert message in r.stderr
    assert "See './cdsvae.sh --help'" in r.stderr


def test_unknown_option_exits_2_with_help():
    r = run(TEMPLATE, "--stagee", "3")
    assert r.returncode == 2
    assert "unknown option --stagee" in r.stderr
    assert "Usage: ./cdsvae.sh" in r.stderr and "motion augmentation" in r.stderr


def test_boolean_option_checked():
    r = run(TEMPLATE, "--skip_bad", "yes", *SETS)
    assert r.returncode == 2
    assert "true or false" in r.stderr


def test_required_sets(recipe):
    r = run(recipe, "--test_sets", "test")
    assert r.returncode == 2
    assert "--train_set is required" in r.stderr


def test_stage_1_prepares_and_validates_data(recipe):
    r = run(recipe, *SETS, "--stop_stage", "1", "--local_data_opts", "--foo bar")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    # The command line first, then the stage, elapsed time last; each with time and file:line.
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \(cdsvae\.sh:\d+:main\) \./cdsvae\.sh --train_set train", lines[0])
    assert any("Stage 1: data preparation: local/data.sh --foo bar -> data/{train,test}" in x for x in lines)
    assert re.search(r"\(cdsvae\.sh:\d+:main\) Successfully finished\. \[elapsed=\d+s\]$", lines[-1])
    assert (recipe / "data_sh_args").read_text() == "data.sh args: --foo bar\n"
    assert "data/train: OK (4 utterances, 2 speakers)" in r.stdout
    assert "data/test: OK (4 utterances, 2 speakers)" in r.stdout


def test_stage_1_fails_on_an_invalid_data_dir(recipe):
    r = run(recipe, *SETS, "--stop_stage", "1", extra_env={"BREAK": "1"})
    assert r.returncode == 1
    assert "data/test/utt2spk:2: not sorted under LC_ALL=C" in r.stdout
    assert "data/test is not a valid data dir" in r.stderr
    assert "Successfully finished" not in r.stderr


def test_stage_with_a_missing_tool_fails_naming_it(recipe, fake_tools):
    r = run(recipe, *SETS, "--stage", "2", "--stop_stage", "2", extra_env={"PYTHONPATH": str(fake_tools)})
    assert r.returncode == 1
    assert "Stage 2: features" in r.stderr
    assert "Stage 2 needs the tool cdsvae.bin.make_fbank (python -m cdsvae.bin.make_fbank)" in r.stderr
    assert "Successfully finished" not in r.stderr


def test_video_skips_feature_and_augmentation_stages(recipe):
    r = run(recipe, *SETS, "--modality", "video", "--stage", "2", "--stop_stage", "3")
    assert r.returncode == 0, r.stderr
    assert "Skip stage 2: " in r.stderr
    assert "Skip stage 3: " in r.stderr
    assert "Successfully finished" in r.stderr


# Stands in for cdsvae.bin.world_vc: records each call's arguments.
FAKE_WORLD_VC = r"""
import sys
with open("world_vc_calls", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
"""


@pytest.fixture()
def fake_world_vc(tmp_path: Path) -> Path:
    """A `cdsvae` package whose bin.world_vc is FAKE_WORLD_VC and whose other modules are the real ones."""
    root = tmp_path / "vcpkg"
    (root / "cdsvae" / "bin").mkdir(parents=True)
    real = REPO / "cdsvae"
    (root / "cdsvae" / "__init__.py").write_text(f"__path__.append({str(real)!r})\n")
    (root / "cdsvae" / "bin" / "__init__.py").write_text(
        f"__path__.append({str(real / 'bin')!r})\nexec(open({str(real / 'bin' / '__init__.py')!r}).read())\n")
    (root / "cdsvae" / "bin" / "world_vc.py").write_text(FAKE_WORLD_VC)
    return root


def test_stage_3_passes_the_vc_yaml_file_to_world_vc(recipe, fake_world_vc):
    """Every key of vc.yaml reaches the converter through --vc_config, none becomes a flag of its own."""
    assert run(recipe, *SETS, "--stop_stage", "1").returncode == 0
    dump = recipe / "dump" / "train"
    dump.mkdir(parents=True)
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (dump / name).write_text((recipe / "data" / "train" / name).read_text())
    (dump / "feats.scp").write_text("")
    (dump / "fbank.yaml").write_text("n_mels: 40\n")
    (recipe / "conf" / "vc.yaml").write_text("num_copies: 1\nframe_period: 10.0\nf0_floor: 60.0\n")
    env = {"PYTHONPATH": str(fake_world_vc)}
    r = run(recipe, *SETS, "--stage", "3", "--stop_stage", "3", "--nj", "2", extra_env=env)
    assert r.returncode == 0, r.stderr
    calls = sorted((recipe / "world_vc_calls").read_text().splitlines())
    assert calls == [
        "--vc_config conf/vc.yaml --fbank_config dump/train/fbank.yaml --skip_bad false --job 1 "
        "dump/train/split2/1 dump/train_vc",
        "--vc_config conf/vc.yaml --fbank_config dump/train/fbank.yaml --skip_bad false --job 2 "
        "dump/train/split2/2 dump/train_vc",
        "--vc_config conf/vc.yaml --merge --nj 2 dump/train dump/train_vc",
    ]
    # The stage is redone when vc.yaml changes, not otherwise.
    r = run(recipe, *SETS, "--stage", "3", "--stop_stage", "3", "--nj", "2", extra_env=env)
    assert "Voice-converted features are up to date" in r.stderr
    (recipe / "conf" / "vc.yaml").write_text("num_copies: 1\nframe_period: 5.0\nf0_floor: 60.0\n")
    r = run(recipe, *SETS, "--stage", "3", "--stop_stage", "3", "--nj", "2", extra_env=env)
    assert r.returncode == 0 and "up to date" not in r.stderr
    assert len((recipe / "world_vc_calls").read_text().splitlines()) == 6
    r = run(recipe, *SETS, "--stage", "3", "--stop_stage", "3", "--vc_conf", "conf/nope.yaml", extra_env=env)
    assert r.returncode == 1 and "voice-conversion config conf/nope.yaml not found" in r.stderr


def test_training_on_cpu_runs_plain_python_per_config(recipe, fake_tools):
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--ngpu", "0", "--tag_suffix", "_t",
            "--train_args", "--optim.lr 0.5", extra_env={"PYTHONPATH": str(fake_tools)})
    assert r.returncode == 0, r.stderr
    for tag, conf in (("cdsvae_t", "conf/train.yaml"), ("dsvae_t", "conf/train_dsvae.yaml")):
        launched = (recipe / "exp" / tag / "launched.none").read_text().splitlines()
        assert launched[0] == f"--config {conf} --outdir exp/{tag} {DATA} --optim.lr 0.5"
        assert launched[1] == "WORLD_SIZE=none"
        assert launched[2] == "CUDA_VISIBLE_DEVICES=''"
        log = (recipe / "exp" / tag / "log" / "launch.log").read_text()
        assert log.startswith("# python -m cdsvae.bin.train --config")
        assert "# Ended (code 0)" in log


def test_seeds_train_every_config_once_per_seed(recipe, fake_tools):
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--seeds", "3 1",
            "--train_args", "--optim.lr 0.5", extra_env={"PYTHONPATH": str(fake_tools)})
    assert r.returncode == 0, r.stderr
    for name, conf in (("cdsvae", "conf/train.yaml"), ("dsvae", "conf/train_dsvae.yaml")):
        for seed in (3, 1):
            tag = f"{name}_seed{seed}"
            launched = (recipe / "exp" / tag / "launched.none").read_text().splitlines()
            assert launched[0] == f"--config {conf} --outdir exp/{tag} {DATA} --train.seed {seed} --optim.lr 0.5"
    assert sorted(p.name for p in (recipe / "exp").iterdir() if p.is_dir()) == [
        "cdsvae_seed1", "cdsvae_seed3", "dsvae_seed1", "dsvae_seed3"]
    assert "exp/{cdsvae_seed3,cdsvae_seed1,dsvae_seed3,dsvae_seed1}" in r.stderr


def test_seeds_train_video_configs_once_per_seed(recipe, fake_tools):
    r = run(recipe, *SETS, "--modality", "video", "--stage", "4", "--stop_stage", "4", "--seeds", "1 2",
            extra_env={"PYTHONPATH": str(fake_tools)})
    assert r.returncode == 0, r.stderr
    for name, conf in (("cdsvae", "conf/train.yaml"), ("dsvae", "conf/train_dsvae.yaml")):
        for seed in (1, 2):
            tag = f"{name}_seed{seed}"
            launched = (recipe / "exp" / tag / "launched.none").read_text().splitlines()
            assert launched[0] == (f"--config {conf} --outdir exp/{tag} --data.root data --data.train_split train "
                                   f"--data.valid_split null --train.device cpu --train.seed {seed}")


def test_train_jobs_runs_cpu_trainings_at_once_and_names_failures(recipe, fake_tools):
    env = {"PYTHONPATH": str(fake_tools), "FAKE_TRAIN_SLEEP": "2"}
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--train_jobs", "2", extra_env=env)
    assert r.returncode == 0, r.stderr
    spans = [tuple(map(float, (recipe / "exp" / tag / "launched.none").read_text().splitlines()[3].split()))
             for tag in ("cdsvae", "dsvae")]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # the two trainings overlapped
    for tag in ("cdsvae", "dsvae"):
        assert (recipe / "exp" / tag / "log" / "launch.rc").read_text().strip() == "0"
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--train_jobs", "2", "--expdir", "exp2",
            extra_env={**env, "FAKE_TRAIN_FAIL": "exp2/cdsvae"})
    assert r.returncode == 1
    assert "training failed: cdsvae (exit 1, log: exp2/cdsvae/log/launch.log)" in r.stderr  # run_local.sh: 1
    assert (recipe / "exp2" / "dsvae" / "launched.none").is_file()  # the other one still finished
    r = run(recipe, *SETS, "--train_jobs", "0")
    assert r.returncode == 2 and "--train_jobs must be at least 1" in r.stderr


def start(cwd: Path, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "cmd_backend")}
    env.update(extra_env or {})
    return subprocess.Popen(["./cdsvae.sh", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)


def wait_for_holder(lock: Path, proc: subprocess.Popen, timeout: float = 60.0) -> list[str]:
    """The "pid host what" line of a lock file once its holder has written it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        if lock.is_file() and lock.read_text().strip():
            return lock.read_text().split()
        time.sleep(0.05)
    raise AssertionError(f"{lock}: no holder within {timeout} s")


def test_a_second_run_on_a_live_experiment_is_refused_and_a_killed_runs_lock_is_taken_over(recipe, fake_tools):
    env = {"PYTHONPATH": str(fake_tools), "FAKE_TRAIN_SLEEP": "3"}
    stage4 = (*SETS, "--stage", "4", "--stop_stage", "4", "--train_configs", "conf/train.yaml")
    first = start(recipe, *stage4, extra_env=env)
    pid, host, *what = wait_for_holder(recipe / "exp" / ".cdsvae.lock", first)
    assert int(pid) == first.pid and host == socket.gethostname() and what[:2] == ["stage", "4"]
    t0 = time.monotonic()
    second = run(recipe, *stage4, extra_env=env)
    assert second.returncode == 1 and time.monotonic() - t0 < 3 and first.poll() is None
    errors = [ln for ln in second.stderr.splitlines() if "Error" in ln]
    assert len(errors) == 1 and f"exp/cdsvae is being written by process {pid} on host {host} (stage 4 of" in errors[0]
    assert "exp/.cdsvae.lock" in errors[0] and "Training cdsvae" not in second.stderr
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert (recipe / "exp" / "cdsvae" / "log" / "launch.rc").read_text().strip() == "0"

    # killed with its training: the kernel drops the lock, and the next run takes it over
    env["FAKE_TRAIN_SLEEP"] = "60"
    killed = start(recipe, *stage4, "--expdir", "exp2", extra_env=env)
    wait_for_holder(recipe / "exp2" / ".cdsvae.lock", killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=30)
    env["FAKE_TRAIN_SLEEP"] = "0"
    r = run(recipe, *stage4, "--expdir", "exp2", extra_env=env)
    assert r.returncode == 0, r.stderr
    assert (recipe / "exp2" / ".cdsvae.lock").read_text().split()[1] == socket.gethostname()


def test_features_being_written_by_a_live_process_are_refused(recipe):
    """Stages 2-3 hold dump/.lock; another holder (here this test, through fcntl.flock) stops them
    before anything is written."""
    import fcntl

    run(recipe, *SETS, "--stage", "1", "--stop_stage", "1")
    (recipe / "dump").mkdir()
    with open(recipe / "dump" / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (recipe / "dump" / ".lock").write_text("4242 gpu-node-7 stages 2-3 of /elsewhere\n")
        for stage in ("2", "3"):
            r = run(recipe, *SETS, "--stage", stage, "--stop_stage", stage)
            assert r.returncode == 1
            assert ("dump is being written by process 4242 on host gpu-node-7 (stages 2-3 of /elsewhere); this run "
                    "will not write it at the same time") in r.stderr
    assert sorted(p.name for p in (recipe / "dump").iterdir()) == [".lock"]


def test_training_data_paths_follow_the_sets_and_dumpdir(recipe, fake_tools):
    r = run(recipe, "--train_set", "train_spk8", "--dev_set", "dev2", "--test_sets", "test", "--dumpdir", "/d/dump",
            "--stage", "4", "--stop_stage", "4", "--train_configs", "conf/train.yaml",
            "--train_args", "--data.cmvn other.npz", extra_env={"PYTHONPATH": str(fake_tools)})
    assert r.returncode == 0, r.stderr
    launched = (recipe / "exp" / "cdsvae" / "launched.none").read_text().splitlines()[0]
    assert launched == ("--config conf/train.yaml --outdir exp/cdsvae --data.train_split train "
                        "--data.train_feats /d/dump/train_spk8 --data.cmvn /d/dump/train_spk8/cmvn.npz "
                        "--data.motion_feats /d/dump/train_spk8_vc --data.skip_bad false --data.valid_split dev "
                        "--data.dev_feats /d/dump/dev2 --train.device cpu "
                        "--data.cmvn other.npz")  # --train_args come last and win
    r = run(recipe, *SETS, "--modality", "video", "--stage", "4", "--stop_stage", "4", "--skip_bad", "true",
            "--train_configs", "conf/train.yaml", extra_env={"PYTHONPATH": str(fake_tools)})
    assert r.returncode == 0, r.stderr
    launched = (recipe / "exp" / "cdsvae" / "launched.none").read_text().splitlines()[0]
    assert launched == ("--config conf/train.yaml --outdir exp/cdsvae --data.root data --data.train_split train "
                        "--data.valid_split null --train.device cpu")
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--skip_bad", "true", "--expdir", "exp3",
            "--train_configs", "conf/train.yaml", extra_env={"PYTHONPATH": str(fake_tools)})
    launched = (recipe / "exp3" / "cdsvae" / "launched.none").read_text().splitlines()[0]
    assert "--data.skip_bad true" in launched


def test_training_with_ngpu_2_uses_torchrun(recipe, fake_tools, fake_gpus):
    env = {"PYTHONPATH": str(fake_tools), "PATH": f"{fake_gpus}:{os.environ['PATH']}"}
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--ngpu", "2", "--train_configs", "conf/train.yaml",
            extra_env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "--nproc_per_node 2 -m cdsvae.bin.train" in r.stderr
    assert "training on 2 GPU(s) per node x 1 node(s)" in r.stderr
    exp = recipe / "exp" / "cdsvae"
    for rank in (0, 1):
        launched = (exp / f"launched.{rank}").read_text().splitlines()
        assert launched[0] == f"--config conf/train.yaml --outdir exp/cdsvae {DATA_GPU}"
        assert launched[1] == "WORLD_SIZE=2"
        assert launched[2] == "CUDA_VISIBLE_DEVICES='0,1'"
    assert "run_local.sh: exp/cdsvae/log/launch.log on GPU 0,1" in r.stderr
    assert not (recipe / "exp" / "dsvae").exists()


def test_the_run_uses_the_first_ngpu_visible_gpus_and_names_each_jobs_gpu(recipe, fake_tools, fake_gpus):
    env = {"PYTHONPATH": str(fake_tools), "PATH": f"{fake_gpus}:{os.environ['PATH']}",
           "RUN_LOCAL_GPU_DIR": str(recipe / "gpus")}
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--ngpu", "1", "--train_configs", "conf/train.yaml",
            extra_env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (recipe / "exp" / "cdsvae" / "launched.none").read_text().splitlines()[2] == "CUDA_VISIBLE_DEVICES='0'"
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--ngpu", "1", "--train_configs", "conf/train.yaml",
            "--tag_suffix", "_b", extra_env={**env, "CUDA_VISIBLE_DEVICES": "1,0"}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (recipe / "exp" / "cdsvae_b" / "launched.none").read_text().splitlines()[2] == "CUDA_VISIBLE_DEVICES='1'"
    assert "run_local.sh: exp/cdsvae_b/log/launch.log on GPU 1" in r.stderr


def test_more_processes_than_the_training_set_can_fill_are_refused_before_any_starts(recipe, fake_tools, fake_gpus):
    """--ngpu 2: the check is told the run's process count, and its refusal names the options."""
    env = {"PYTHONPATH": str(fake_tools), "PATH": f"{fake_gpus}:{os.environ['PATH']}", "FAKE_UTTS": "6"}
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--ngpu", "2", extra_env=env, timeout=120)
    assert r.returncode == 1
    errors = [x for x in r.stderr.splitlines() if "Error:" in x]
    assert len(errors) == 1 and errors[0].endswith(
        "Error: cdsvae: the training set has 6 utterances, fewer than one global batch of 8 (train.batch_size 4 x 2 "
        "process(es)): use train.batch_size 2 or less (--ngpu sets the processes per node, --train_args "
        "'--train.batch_size B' the batch)"), errors
    assert (recipe / "check_processes").read_text() == "--check_inputs --nproc 2 --experiments -\n"
    assert not list((recipe / "exp").glob("*/launched.*"))
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--ngpu", "1", extra_env=env, timeout=120)
    assert r.returncode == 0, r.stderr


def test_asking_for_more_gpus_than_visible_stops_at_once(recipe, fake_tools, fake_gpus):
    """--ngpu N needs N CUDA devices on the machine that runs the GPU stages (local backend)."""
    env = {"PYTHONPATH": str(fake_tools), "PATH": f"/nonexistent:{os.environ['PATH']}"}
    for stage in ("4", "5", "6"):
        r = run(recipe, *SETS, "--stage", stage, "--stop_stage", stage, "--ngpu", "2", extra_env=env, timeout=30)
        assert r.returncode == 1
        errors = [x for x in r.stderr.splitlines() if "Error:" in x]
        assert len(errors) == 1 and "--ngpu 2 asks for 2 GPU(s), but this machine shows 0 CUDA device(s)" in errors[0]
        assert "use --ngpu 0 to run on the CPU" in errors[0]
        assert not (recipe / "exp").exists()
    gpus = {**env, "PATH": f"{fake_gpus}:{os.environ['PATH']}"}
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--ngpu", "3", extra_env=gpus, timeout=30)
    assert r.returncode == 1 and "shows 2 CUDA device(s)" in r.stderr
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--ngpu", "2",
            extra_env={**gpus, "CUDA_VISIBLE_DEVICES": "1"}, timeout=30)
    assert r.returncode == 1 and "shows 1 CUDA device(s)" in r.stderr and "CUDA_VISIBLE_DEVICES='1'" in r.stderr
    # The CPU stages do not need GPUs; --ngpu 0 never looks.
    r = run(recipe, *SETS, "--stop_stage", "1", "--ngpu", "2", extra_env={"PATH": env["PATH"]}, timeout=30)
    assert r.returncode == 0, r.stderr
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--ngpu", "0", extra_env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Stage 4: training on CPU" in r.stderr


def test_training_on_other_inputs_is_refused_before_any_starts(recipe, fake_tools):
    env = {"PYTHONPATH": str(fake_tools), "FAKE_CHECK_FAIL": "exp/dsvae"}
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", extra_env=env)
    assert r.returncode == 1
    errors = [x for x in r.stderr.splitlines() if "Error:" in x]
    assert len(errors) == 1
    assert errors[0].endswith("Error: exp/dsvae was trained on other inputs: dump/train/feats.scp changed; to go on, "
                              "rerun with --retrain true (moves exp/dsvae aside) or choose a new --tag_suffix")
    assert not (recipe / "exp" / "cdsvae" / "launched.none").exists()  # checked before anything trained
    # One check process for both experiments, given each one's training options, in order.
    assert (recipe / "check_processes").read_text() == "--check_inputs --nproc 1 --experiments -\n"
    checks = (recipe / "check_calls").read_text().splitlines()
    assert checks == [f"--config conf/{conf} --outdir exp/{tag} {DATA}"
                      for conf, tag in (("train.yaml", "cdsvae"), ("train_dsvae.yaml", "dsvae"))]
    # --retrain true moves every experiment aside (never deletes it) and trains afresh.
    (recipe / "exp" / "dsvae").mkdir(parents=True)
    (recipe / "exp" / "dsvae" / "old_model").write_text("kept")
    (recipe / "exp" / "dsvae.old1").mkdir()
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--retrain", "true",
            extra_env={"PYTHONPATH": str(fake_tools)})
    assert r.returncode == 0, r.stderr
    assert (recipe / "exp" / "dsvae.old2" / "old_model").read_text() == "kept"
    assert "Moved exp/dsvae aside to exp/dsvae.old2 (--retrain true)" in r.stderr
    assert (recipe / "exp" / "dsvae" / "launched.none").is_file()
    assert not (recipe / "exp" / "dsvae" / "old_model").exists()
    # A new tag suffix is the other way on.
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--tag_suffix", "_new", extra_env=env)
    assert r.returncode == 0, r.stderr


def test_training_progress_and_logs_are_shown_on_the_console(recipe, fake_tools):
    env = {"PYTHONPATH": str(fake_tools), "FAKE_TRAIN_SLEEP": "4"}
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--train_configs", "conf/train.yaml",
            "--progress_secs", "1", extra_env=env)
    assert r.returncode == 0, r.stderr
    assert "logs: exp/cdsvae/log/launch.log and exp/cdsvae/train.log" in r.stderr
    progress = [x for x in r.stderr.splitlines() if "cdsvae: epoch 1/1, step 1/2, loss 3.5, ETA 2s" in x]
    assert 1 <= len(progress) <= 6  # about once per --progress_secs while the training runs
    assert "Trained cdsvae: epoch 1/1, step 1/2" in r.stderr
    r = run(recipe, *SETS, "--progress_secs", "0")
    assert r.returncode == 2 and "--progress_secs must be at least 1" in r.stderr


def test_finished_runs_are_not_started_and_training_warnings_reach_the_console(recipe, fake_tools):
    """A run trained to the end already is not launched (nor announced as training); the warnings a
    training adds to train.log are summed up on the console at the end of stage 4, each once with
    its count (those of earlier runs in the same log are not repeated)."""
    old = ("2026-01-01 00:00:00 WARNING validation split 'dev' is empty: no validation, no best checkpoint\n"
           "2026-01-01 00:00:01 INFO finished: epoch 1, step 2\n")
    (recipe / "exp" / "cdsvae").mkdir(parents=True)
    (recipe / "exp" / "cdsvae" / "train.log").write_text(old)
    new = ("2026-01-02 10:00:00 INFO training on cpu: 1 process(es), batch 8 per process\n"
           "2026-01-02 10:00:01 WARNING no motion views in the validation data: con_z is left out of the validation loss\n"
           "2026-01-02 10:00:02 WARNING eval mode reconstructs a fixed batch 1.63 times worse than train mode "
           "(limit 1.25): every number measured in eval mode is suspect\n"
           "2026-01-02 10:00:03 INFO epoch 2 step 38: loss 61.2 WARNING in a message is no warning\n"
           "2026-01-02 10:00:04 WARNING eval mode reconstructs a fixed batch 1.71 times worse than train mode "
           "(limit 1.25): every number measured in eval mode is suspect\n")
    env = {"PYTHONPATH": str(fake_tools), "FAKE_FINISHED": "exp/dsvae", "FAKE_WARNINGS": new}
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", extra_env=env)
    assert r.returncode == 0, r.stderr
    assert not (recipe / "exp" / "dsvae" / "launched.none").exists()
    assert "Training dsvae" not in r.stderr and "Training cdsvae: python -m cdsvae.bin.train" in r.stderr
    lines = [line.split(") ", 1)[1] for line in r.stderr.splitlines() if ") " in line]
    assert ("Trained dsvae already (step 38, 2/2 epochs): not started again (--retrain true trains it afresh)"
            in lines)
    at = lines.index("Warnings of cdsvae (3 in exp/cdsvae/train.log):")
    assert lines[at + 1:at + 3] == [
        "  1x no motion views in the validation data: con_z is left out of the validation loss",
        "  2x eval mode reconstructs a fixed batch 1.71 times worse than train mode (limit 1.25): every number "
        "measured in eval mode is suspect"]
    assert "validation split 'dev' is empty" not in r.stderr
    assert "Warnings of dsvae" not in r.stderr
    # a training without warnings adds no summary
    env["FAKE_WARNINGS"] = "2026-01-03 10:00:00 INFO training on cpu\n"
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", extra_env=env)
    assert r.returncode == 0 and "Warnings of" not in r.stderr, r.stderr


def test_multi_node_needs_a_rendezvous_host(recipe, fake_tools, fake_gpus):
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--ngpu", "1", "--num_nodes", "2",
            extra_env={"PYTHONPATH": str(fake_tools), "PATH": f"{fake_gpus}:{os.environ['PATH']}"})
    assert r.returncode == 1
    assert "set MASTER_ADDR" in r.stderr


def test_missing_training_config(recipe, fake_tools):
    r = run(recipe, *SETS, "--stage", "4", "--stop_stage", "4", "--train_configs", "conf/nope.yaml",
            extra_env={"PYTHONPATH": str(fake_tools)})
    assert r.returncode == 1
    assert "training config conf/nope.yaml not found" in r.stderr


def test_unknown_cmd_backend(recipe):
    r = run(recipe, *SETS, "--stop_stage", "1", extra_env={"cmd_backend": "pbs"})
    assert r.returncode != 0
    assert "unknown cmd_backend 'pbs'" in r.stderr
