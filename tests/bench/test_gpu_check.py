"""bench/gpu_check.sh: its dry run on the CPU passes every row of its table (this is how CI keeps the
GPU check from rotting where there is no GPU; the device parts and the recipe part run as two
builds), a failing part fails the check without stopping the parts after it, and without CUDA only
--dry-run runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

import _shared_runs

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"


def run(tmp_path: Path, *args: str, timeout: int, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("CDSVAE_GPU_DRY_RUN", "CDSVAE_GPU_CHECK_FAIL")}
    environ.update(OUT=str(tmp_path / "out"), **env)
    return _shared_runs.run([str(SCRIPT), *args], timeout, env=environ, cwd=tmp_path)


# The dry run (a few minutes of CPU) is made in the background while the rest of the suite runs
# (tests/_shared_runs.py), in two builds that either lane can take: the device parts, and the recipe
# part (about half of the CPU). Each is (its directory, its result).
DEVICE_PARTS = "versions gpu_tests ddp throughput_sprites throughput_timit"
_shared_runs.register("gpu_check_dry_run", lambda root: (root, run(root, "--dry-run", "--parts", DEVICE_PARTS,
                                                                     timeout=1200)))
_shared_runs.register("gpu_check_dry_run_recipe", lambda root: (root, run(root, "--dry-run", "--parts", "recipe",
                                                                            timeout=1200)))


@pytest.fixture(scope="session")
def gpu_check_dry_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    return _shared_runs.result("gpu_check_dry_run", tmp_path_factory.mktemp)


@pytest.fixture(scope="session")
def gpu_check_dry_run_recipe(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    return _shared_runs.result("gpu_check_dry_run_recipe", tmp_path_factory.mktemp)


def table(stdout: str) -> list[tuple[str, str, str]]:
    """(check, result, figure) rows of the summary table at the end of the output."""
    lines = stdout.splitlines()
    head = max(i for i, line in enumerate(lines) if re.match(r"check +result +figure$", line))
    rows = []
    for line in lines[head + 1:]:
        if line == "logs:":
            break
        check, result, figure = (re.split(r" {2,}", line, maxsplit=2) + [""])[:3]
        rows.append((check, result, figure))
    return rows


def _passed(result: subprocess.CompletedProcess) -> list[tuple[str, str, str]]:
    """The rows of a dry run, all of which must pass."""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    rows = table(result.stdout)
    assert rows and all(r == "pass" for _, r, _ in rows), [row for row in rows if row[1] != "pass"]
    assert "RESULT: pass" in result.stdout
    return rows


def _logs(out: Path, stdout: str, names: tuple[str, ...]) -> None:
    """OUTDIR holds exactly these logs (and summary.txt), each named at the end of the output."""
    for name in names + ("summary.txt",):
        assert (out / name).is_file(), name
        assert str(out / name) in stdout or name == "summary.txt"
    assert len(list(out.iterdir())) == len(names) + 1, sorted(p.name for p in out.iterdir())


def test_the_two_dry_run_builds_cover_every_part():
    parts = re.search(r'^all_parts="([^"]+)"$', SCRIPT.read_text(), re.M).group(1).split()
    assert sorted(DEVICE_PARTS.split() + ["recipe"]) == sorted(parts)


def test_dry_run_passes_every_device_part(gpu_check_dry_run):
    tmp_path, r = gpu_check_dry_run
    rows = _passed(r)
    checks = [check for check, _, _ in rows]
    assert checks[0] == "versions" and "gpu tests (pytest -m gpu)" in checks
    tests = [c for c in checks if c.startswith("gpu test ")]
    for name in ("one_process_ddp_step_equals_the_plain_step", "autocast_losses_match_fp32",
                 "compiled_steps_match_eager", "eval_mode_reconstructs_as_well_as_train_mode_on_the_device",
                 "the_trainers_eval_train_check_passes_on_the_device",
                 "a_run_checkpointed_contiguous_resumes_channels_last_with_the_fused_kernel",
                 "swap_draws_with_a_cpu_generator_on_the_device"):
        assert any(name in c for c in tests), name
    assert {"throughput sprites", "throughput timit", "ddp: 2 processes vs 1"} <= set(checks)
    figures = dict((c, f) for c, _, f in rows)
    assert all("(aot_eager)" in f for c, f in figures.items() if "compiled_steps" in c)  # the dry run's backend
    assert re.search(r"fp32 eager \d+ seq/s; bf16 \d+ seq/s \(\d+\.\d\dx\); fp16 \d+ seq/s \(\d+\.\d\dx\); "
                     r"bf16 \+ torch.compile \d+ seq/s",
                     figures["throughput sprites"])
    assert re.match(r"max \|param diff\| \d\.\d\de[-+]\d+ \(limit 1e-4\), gloo, world size 2$",
                    figures["ddp: 2 processes vs 1"])
    _logs(tmp_path / "out", r.stdout, ("versions.log", "gpu_tests.log", "gpu_tests.xml", "ddp.log",
                                       "throughput_sprites.log", "throughput_timit.log"))


def test_dry_run_passes_the_recipe_part(gpu_check_dry_run_recipe):
    tmp_path, r = gpu_check_dry_run_recipe
    rows = _passed(r)
    checks = [check for check, _, _ in rows]
    assert [c.split(":")[0] for c in checks if c.startswith("recipe stage")] == [f"recipe stage {n}"
                                                                                   for n in range(1, 8)]
    figures = dict((c, f) for c, _, f in rows)
    assert re.match(r"s \d+\.\d\d %, z \d+\.\d\d %", figures["recipe EER (C-DSVAE, test)"])
    assert "| C-DSVAE | cdsvae |" in r.stdout  # the recipe's EER table
    # the recipe ran with its judges: stage 5 trained both, stage 6 ran the probes and judged swaps
    out = tmp_path / "out"
    assert "## Disentanglement (test set)" in (out / "recipe_RESULTS.md").read_text()
    _logs(out, r.stdout, ("recipe.log", "recipe_RESULTS.md"))
    # The recipe ran in a temporary copy, not in the checkout.
    copy = re.search(r"recipe copy: (\S+);", (out / "recipe.log").read_text()).group(1)
    assert not Path(copy).is_relative_to(REPO) and not Path(copy).exists()


def test_a_failing_part_fails_the_check_and_the_next_parts_still_run(tmp_path):
    r = run(tmp_path, "--dry-run", "--parts", "versions recipe", timeout=300,
            CDSVAE_GPU_CHECK_FAIL="versions recipe")
    assert r.returncode == 1, r.stdout + r.stderr
    rows = table(r.stdout)
    assert rows[0][:2] == ("versions", "fail") and "failure injected" in rows[0][2]
    assert rows[1][:2] == ("recipe stage 1: data preparation", "fail")
    assert [result for _, result, _ in rows[2:]] == ["skip"] * 6
    assert "RESULT: FAIL (8 of 8 rows not pass)" in r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_without_cuda_only_the_dry_run_runs(tmp_path):
    r = run(tmp_path, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "no CUDA device" in r.stderr and "--dry-run" in r.stderr
    assert not (tmp_path / "out").exists()
    r = run(tmp_path, "--dry-run", "--parts", "nonsense", timeout=60)
    assert r.returncode == 2 and "unknown part 'nonsense'" in r.stderr


def test_the_preflight_names_a_missing_torch_as_such(tmp_path):
    """A Python without torch is told so, not that no CUDA device is visible (a package that fails to
    import as a missing torch does stands in for a bare GPU machine's Python)."""
    import shutil
    import sys

    bench = tmp_path / "repo" / "bench"
    bench.mkdir(parents=True)
    shutil.copy(SCRIPT, bench / "gpu_check.sh")  # a tree without tools/venv: $PYTHON is used
    shadow = tmp_path / "shadow" / "torch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\")\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CDSVAE_GPU_DRY_RUN", "CDSVAE_GPU_CHECK_FAIL")}
    env.update(PYTHON=sys.executable, PYTHONPATH=str(shadow.parent), OUT=str(tmp_path / "out"))
    r = subprocess.run([str(bench / "gpu_check.sh")], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("gpu_check.sh: ") and "cannot import torch (ModuleNotFoundError" in r.stderr, r.stderr
    assert "no CUDA device" not in r.stderr and len(r.stderr.splitlines()) == 1
