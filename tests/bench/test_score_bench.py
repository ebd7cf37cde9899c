"""bench/score.py at a tiny size: both sides run, agree, and the ratio line is printed."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "score.py"


def test_score_bench_runs_and_prints_the_ratio():
    out = subprocess.run([sys.executable, str(BENCH), "--n_utts", "50", "--n_spk", "5"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "1225 trials" in out.stdout
    assert "EER and minDCF of the two agree (1e-9): ok" in out.stdout
    assert "ratio (baseline / ours): time" in out.stdout and "peak memory" in out.stdout
