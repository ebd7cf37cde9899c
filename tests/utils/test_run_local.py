"""utils/run_local.sh: JOB arrays as parallel local processes with one log per job."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_LOCAL = REPO / "utils" / "run_local.sh"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUN_LOCAL), *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def intervals(tmp_path: Path, n: int) -> list[tuple[float, float]]:
    out = []
    for i in range(1, n + 1):
        start, end = (tmp_path / f"t{i}").read_text().split()
        out.append((float(start), float(end)))
    return out


TIMED_JOB = "s=$(date +%s.%N); sleep 0.6; echo $s $(date +%s.%N) > tJOB"


def test_jobs_run_in_parallel(tmp_path):
    t0 = time.monotonic()
    r = run("JOB=1:3", "log/timed.JOB.log", TIMED_JOB, cwd=tmp_path)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    spans = intervals(tmp_path, 3)
    # All three were running at one moment: the latest start precedes the earliest end.
    assert max(s for s, _ in spans) < min(e for _, e in spans)
    assert wall < 3 * 0.6


def test_max_jobs_run_limits_concurrency(tmp_path):
    r = run("--max-jobs-run", "1", "JOB=1:3", "log/timed.JOB.log", TIMED_JOB, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spans = sorted(intervals(tmp_path, 3))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start


def test_max_jobs_run_two_of_four(tmp_path):
    r = run("--max-jobs-run", "2", "JOB=1:4", "log/timed.JOB.log", TIMED_JOB, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spans = intervals(tmp_path, 4)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2


def test_job_substitution_and_one_log_per_job(tmp_path):
    r = run("JOB=2:4", "exp/log/make.JOB.log", "echo", "job", "JOB", "of", "data/split3/JOB", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    logs = sorted(p.name for p in (tmp_path / "exp" / "log").iterdir())
    assert logs == ["make.2.log", "make.3.log", "make.4.log"]
    for i in (2, 3, 4):
        lines = (tmp_path / "exp" / "log" / f"make.{i}.log").read_text().splitlines()
        assert lines[0] == f"# echo job {i} of data/split3/{i}"
        assert lines[1].startswith("# Started at ")
        assert lines[2] == f"job {i} of data/split3/{i}"
        assert lines[-1].startswith("# Ended (code 0) at ")
        assert "elapsed time" in lines[-1]


def test_any_job_variable_name(tmp_path):
    r = run("SPK=1:2", "log/x.SPK.log", "echo SPK > outSPK", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out1").read_text() == "1\n"
    assert (tmp_path / "out2").read_text() == "2\n"


def test_failing_job_is_reported_with_its_log_tail(tmp_path):
    cmd = ('if [ JOB = 2 ]; then for i in $(seq 1 50); do echo "line $i of job JOB"; done; '
           'echo "fatal: job JOB broke" >&2; exit 3; fi; echo fine JOB')
    r = run("JOB=1:3", "log/work.JOB.log", cmd, cwd=tmp_path)
    assert r.returncode == 1
    assert "1 / 3 jobs failed" in r.stderr
    assert "JOB=2" in r.stderr
    assert "log/work.2.log" in r.stderr
    assert "fatal: job 2 broke" in r.stderr
    assert "line 50 of job 2" in r.stderr
    assert "# Ended (code 3)" in r.stderr
    # Only the tail: the early lines of the failed log are not repeated.
    assert "line 10 of job 2" not in r.stderr
    assert "fine" not in r.stderr
    # The other jobs completed and their logs say so.
    assert "# Ended (code 0)" in (tmp_path / "log/work.1.log").read_text()
    assert "# Ended (code 0)" in (tmp_path / "log/work.3.log").read_text()


def test_several_failures_list_every_failed_job(tmp_path):
    r = run("JOB=1:4", "log/f.JOB.log", "[ $((JOB % 2)) = 1 ] && exit 1; true", cwd=tmp_path)
    assert r.returncode == 1
    assert "2 / 4 jobs failed (JOB=1 3)" in r.stderr
    assert "log/f.1.log" in r.stderr


def test_single_job_form(tmp_path):
    r = run("log/one.log", "echo", "a  b", "|", "tr", "a-z", "A-Z", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "log/one.log").read_text()
    assert "\nA  B\n" in text
    r = run("log/bad.log", "echo oops; exit 7", cwd=tmp_path)
    assert r.returncode == 1
    assert "command failed" in r.stderr and "oops" in r.stderr
    assert "# Ended (code 7)" in (tmp_path / "log/bad.log").read_text()


def test_pipeline_failure_is_a_failure(tmp_path):
    r = run("log/p.log", "false | cat", cwd=tmp_path)
    assert r.returncode == 1


def test_cluster_options_are_accepted_and_ignored(tmp_path):
    r = run("--mem", "4G", "--gpu", "1", "--time", "1:00:00", "--num-threads", "2",
            "JOB=1:2", "log/o.JOB.log", "true", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args, message", [
    (["--bogus", "1", "log/x.log", "true"], "unknown option --bogus"),
    (["JOB=3:1", "log/x.log", "true"], "empty job range"),
    (["log/x.log"], "expected a log file and a command"),
    (["--max-jobs-run", "two", "log/x.log", "true"], "non-negative integer"),
])
def test_usage_errors_exit_2(tmp_path, args, message):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr


def test_job_array_reports_jobs_done_on_stderr(tmp_path):
    # staggered ends, so that every job is counted on its own
    r = run("JOB=1:3", "log/d.JOB.log", "sleep 0.$(( JOB * 3 ))", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    done = [line for line in r.stderr.splitlines() if "jobs done" in line]
    assert done == [f"run_local.sh: {k}/3 jobs done (logs: log/d.JOB.log)" for k in (1, 2, 3)], r.stderr


def test_jobs_done_count_increases_to_the_total_with_max_jobs_run(tmp_path):
    r = run("--max-jobs-run", "2", "JOB=1:4", "log/d.JOB.log", "true", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counts = [int(line.split("/4 jobs done")[0].split()[-1]) for line in r.stderr.splitlines() if "jobs done" in line]
    assert counts and counts[-1] == 4 and counts == sorted(set(counts))


def test_single_job_prints_no_jobs_done(tmp_path):
    for args in (("log/one.log", "true"), ("JOB=1:1", "log/one.JOB.log", "true")):
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "jobs done" not in r.stderr


GPU_JOB = "echo $CUDA_VISIBLE_DEVICES > gpuJOB; sleep 1"


def _gpu_env(tmp_path, visible):
    import os
    return {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "RUN_LOCAL_GPU_DIR": str(tmp_path / "gpus")}


def test_gpu_jobs_running_together_spread_over_the_visible_gpus(tmp_path):
    """Three jobs of one array on GPUs 3,5,6: one each, each named on stderr and in its log."""
    r = subprocess.run([str(RUN_LOCAL), "--gpu", "1", "JOB=1:3", "log/g.JOB.log", GPU_JOB], capture_output=True,
                       text=True, cwd=tmp_path, timeout=60, env=_gpu_env(tmp_path, "3,5,6"))
    assert r.returncode == 0, r.stderr
    got = {j: (tmp_path / f"gpu{j}").read_text().strip() for j in (1, 2, 3)}
    assert sorted(got.values()) == ["3", "5", "6"]
    for j, gpu in got.items():
        assert f"run_local.sh: log/g.{j}.log on GPU {gpu}\n" in r.stderr
        assert f"# GPU(s): CUDA_VISIBLE_DEVICES={gpu}\n" in (tmp_path / f"log/g.{j}.log").read_text()
    assert not [p for p in (tmp_path / "gpus").iterdir() if p.name != "lock"]  # released


def test_separate_calls_running_together_take_different_gpus_and_n_gpus_per_job(tmp_path):
    """Stage 5 starts its judges and its extraction as separate calls: they must not all land on GPU 0."""
    env = _gpu_env(tmp_path, "0,1,2,3")
    procs = [subprocess.Popen([str(RUN_LOCAL), "--gpu", "1", f"log/c{k}.log", GPU_JOB.replace("JOB", str(k))],
                              cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    two = subprocess.run([str(RUN_LOCAL), "--gpu", "2", "log/t.log", GPU_JOB.replace("JOB", "t")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60)
    assert two.returncode == 0, two.stderr
    assert (tmp_path / "gpu1").read_text() != (tmp_path / "gpu2").read_text()
    assert (tmp_path / "gpu2").read_text().strip() in ("0", "1") and (tmp_path / "gput").read_text().strip() == "0,1"


def test_gpu_jobs_without_listed_gpus_keep_their_environment(tmp_path):
    import os
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = "/usr/bin:/bin"  # no nvidia-smi
    r = subprocess.run([str(RUN_LOCAL), "--gpu", "1", "log/n.log", 'echo "${CUDA_VISIBLE_DEVICES-unset}" > gpun'],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and (tmp_path / "gpun").read_text() == "unset\n" and "GPU" not in r.stderr
    r = subprocess.run([str(RUN_LOCAL), "--gpu", "2", "log/o.log", "echo $CUDA_VISIBLE_DEVICES > gpuo"], cwd=tmp_path,
                       env=_gpu_env(tmp_path, "7"), capture_output=True, text=True, timeout=60)
    assert (tmp_path / "gpuo").read_text() == "7\n"
    assert "log/o.log asks for 2 GPU(s), but only 1 are visible" in r.stderr
    r = run("--gpu", "x", "log/p.log", "true", cwd=tmp_path)
    assert r.returncode == 2 and "--gpu expects a non-negative integer" in r.stderr
