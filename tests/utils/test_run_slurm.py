"""utils/run_slurm.sh: option mapping (dry run) and the job-array contract.

These tests need no Slurm: the array is run by a stand-in `sbatch` on PATH that does what
`sbatch --wait --array=A-B` does for these scripts: it runs the job script once per task id
with SLURM_ARRAY_TASK_ID set, writes each task's output where --output says, prints the job
id and exits non-zero when a task failed. test_slurm_cluster.py runs the launcher on a real
one-node cluster where one can start.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_SLURM = REPO / "utils" / "run_slurm.sh"

FAKE_SBATCH = r"""#!/usr/bin/env bash
set -u
echo "$*" >> "$(dirname "$0")/sbatch.calls"
array="" output="" script=""
for a in "$@"; do
    case "$a" in
        --array=*) array=${a#--array=} ;;
        --output=*) output=${a#--output=} ;;
        --*) ;;
        *) script=$a ;;
    esac
done
echo 4242
code=0
if [ -z "$array" ]; then
    bash "$script" > "${output//%j/4242}" 2>&1 || code=1
    exit $code
fi
range=${array%%%*}
for ((i = ${range%-*}; i <= ${range#*-}; i++)); do
    SLURM_ARRAY_TASK_ID=$i bash "$script" > "${output//%a/$i}" 2>&1 || code=1
done
exit $code
"""


@pytest.fixture()
def fake_slurm(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    sbatch = bindir / "sbatch"
    sbatch.write_text(FAKE_SBATCH)
    sbatch.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUN_SLURM), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def test_dry_run_maps_options_to_sbatch_flags(tmp_path):
    r = run("--dry-run", "true", "--mem", "8G", "--gpu", "2", "--time", "2:00:00", "--num-threads", "4",
            "--max-jobs-run", "3", "--partition", "gpu", "--sbatch-opts", "--account=abc --qos=high",
            "JOB=1:10", "exp/log/feats.JOB.log", "python", "-m", "x", "JOB", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    words = shlex.split(r.stdout)
    assert words[0] == "sbatch"
    for flag in ["--wait", "--array=1-10%3", "--mem=8G", "--gres=gpu:2", "--time=2:00:00",
                 "--cpus-per-task=4", "--partition=gpu", "--account=abc", "--qos=high", "--job-name=feats",
                 f"--chdir={tmp_path}", "--output=exp/log/q/feats.%a.out"]:
        assert flag in words, flag
    assert words[-1] == "exp/log/q/feats.sh"
    assert (tmp_path / "exp/log/q/feats.sh").is_file()
    assert not (tmp_path / "exp/log/feats.1.log").exists()


def test_dry_run_defaults_add_no_resources(tmp_path):
    r = run("--dry-run", "true", "--gpu", "0", "log/one.log", "true", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    words = shlex.split(r.stdout)
    assert not any(w.startswith(("--array", "--gres", "--mem", "--time", "--cpus")) for w in words)
    assert "--output=log/q/one.%j.out" in words


def test_job_array_writes_one_log_per_job(tmp_path, fake_slurm):
    r = run("--mem", "1G", "JOB=1:3", "log/w.JOB.log", "echo", "task JOB", ">", "outJOB", cwd=tmp_path, env=fake_slurm)
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        assert (tmp_path / f"out{i}").read_text() == f"task {i}\n"
        log = (tmp_path / f"log/w.{i}.log").read_text()
        assert log.startswith(f"# echo task\\ {i} > out{i}\n")
        assert "# Ended (code 0)" in log
    calls = (tmp_path / "fakebin/sbatch.calls").read_text()
    assert "--array=1-3" in calls and "--mem=1G" in calls and "--wait" in calls


def test_job_array_reports_jobs_done_while_it_runs(tmp_path, fake_slurm):
    # The stand-in runs the tasks one after the other: 1.5 s each, polled every second.
    r = run("--poll-secs", "1", "JOB=1:3", "log/p.JOB.log", "sleep 1.5", cwd=tmp_path, env=fake_slurm)
    assert r.returncode == 0, r.stderr
    done = [int(line.split(": ")[1].split("/")[0]) for line in r.stderr.splitlines() if "jobs done" in line]
    assert done and done == sorted(set(done)) and done[-1] <= 3, r.stderr
    assert re.search(r"^run_slurm\.sh: [123]/3 jobs done \(logs: log/p\.JOB\.log\)$", r.stderr, re.M)
    r = run("--poll-secs", "1", "log/single.log", "sleep 1.5", cwd=tmp_path, env=fake_slurm)
    assert r.returncode == 0 and "jobs done" not in r.stderr
    r = run("--poll-secs", "0", "log/x.log", "true", cwd=tmp_path, env=fake_slurm)
    assert r.returncode == 2 and "--poll-secs expects a positive integer" in r.stderr


def test_failed_task_is_reported_with_its_log_tail(tmp_path, fake_slurm):
    cmd = 'if [ JOB = 2 ]; then echo "boom in JOB"; exit 4; fi'
    r = run("JOB=1:3", "log/f.JOB.log", cmd, cwd=tmp_path, env=fake_slurm)
    assert r.returncode == 1
    assert "1 / 3 jobs of Slurm job 4242 failed (JOB=2)" in r.stderr
    assert "boom in 2" in r.stderr
    assert "# Ended (code 4)" in r.stderr


def test_task_killed_without_end_line_is_a_failure(tmp_path, fake_slurm):
    # A task whose log has no end line (as after a Slurm time-limit kill) counts as failed,
    # even if sbatch itself reports success.
    stale = tmp_path / "log"
    stale.mkdir()
    fake = Path(fake_slurm["PATH"].split(":")[0]) / "sbatch"
    fake.write_text("#!/usr/bin/env bash\necho 77\nmkdir -p log\necho '# started' > log/k.1.log\nexit 0\n")
    r = run("JOB=1:1", "log/k.JOB.log", "true", cwd=tmp_path, env=fake_slurm)
    assert r.returncode == 1
    assert "was killed" in r.stderr


def test_sbatch_rejection_is_reported(tmp_path, fake_slurm):
    fake = Path(fake_slurm["PATH"].split(":")[0]) / "sbatch"
    fake.write_text("#!/usr/bin/env bash\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    r = run("--partition", "nope", "log/x.log", "true", cwd=tmp_path, env=fake_slurm)
    assert r.returncode == 1
    assert "invalid partition specified" in r.stderr


def test_missing_sbatch_is_a_clear_error(tmp_path):
    # The system's commands without sbatch, which tools/install.sh --with-slurm installs.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for d in (Path("/usr/bin"), Path("/bin")):
        for tool in d.iterdir():
            if tool.name != "sbatch" and not os.path.lexists(bindir / tool.name):
                (bindir / tool.name).symlink_to(tool)
    env = {**os.environ, "PATH": str(bindir)}
    r = run("log/x.log", "true", cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert "sbatch not found" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--gpus", "1", "log/x.log", "true"], "unknown option --gpus"),
    (["--gpu", "two", "log/x.log", "true"], "--gpu expects"),
    (["--dry-run", "yes", "log/x.log", "true"], "--dry-run expects true or false"),
    (["JOB=1:2", "log/x.JOB.log"], "expected a log file and a command"),
])
def test_usage_errors_exit_2(tmp_path, args, message):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
