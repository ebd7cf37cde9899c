"""Training throughput of cdsvae.train (sequences/second), measured by the trainer itself.

CPU (default): the C-DSVAE step of the speech recipes (spectral frames: T=20 x 80 bins, the default
model sizes, precomputed motion views) on synthetic sequences, at one fixed global batch:

    baseline   1 process  x 1 thread,  batch G
               1 process  x 2 threads, batch G
               2 gloo DDP processes x 1 thread, batch G/2 each (torchrun)

GPU (``--device cuda``): the Sprites-sized step (B=128, T=8, 3x64x64 frames, conv64 model with the
default sizes, motion views made on the GPU) on one GPU: fp32 (baseline) vs bf16 autocast, and
torch.compile with ``--compile``; prints sequences/second and peak GPU memory
(torch.cuda.max_memory_allocated).

Each variant runs the real trainer (python -m cdsvae.bin.train's code path) for ``--steps`` steps in
fresh processes, ``--repeats`` times; the trainer logs sequences/second every 2 steps; the first
interval of each run (warm-up, compilation) is dropped and the median of the rest is printed.

    OMP_NUM_THREADS=1 tools/venv/bin/python bench/throughput.py
    tools/venv/bin/python bench/throughput.py --device cuda [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def speech_config(global_batch: int, steps: int, processes: int, device: str) -> dict:
    return {
        "model": {"frame": "mlp", "feat_dim": 80},
        "data": {"type": "synthetic", "num_train": global_batch * (steps + 1), "seq_len": 20, "frame_shape": [80],
                 "with_motion": True, "valid_split": None},
        "train": {"epochs": 1, "max_steps": steps, "batch_size": global_batch // processes, "log_every": 2,
                  "tensorboard": False, "device": device, "num_workers": 0},
    }


def sprites_config(batch: int, steps: int, amp: str, compile_: bool) -> dict:
    return {
        "model": {"frame": "conv64", "in_channels": 3},
        "data": {"type": "synthetic", "num_train": batch * (steps + 1), "seq_len": 8, "frame_shape": [3, 64, 64],
                 "num_static": 16, "num_dynamic": 9, "valid_split": None},
        "train": {"epochs": 1, "max_steps": steps, "batch_size": batch, "log_every": 2, "tensorboard": False,
                  "device": "cuda", "num_workers": 6, "amp": amp, "compile": compile_},
    }


def worker(cfg_json: str, out_json: str, outdir: str) -> None:
    """Run the trainer (alone or under torchrun); rank 0 writes what it logged and the peak memory."""
    import torch

    from cdsvae.train.distributed import shutdown
    from cdsvae.train.task import build_trainer, check_config
    from cdsvae.train.trainer import setup_process

    cfg = check_config(json.loads(cfg_json))
    ctx = setup_process(cfg["train"], outdir)
    try:
        trainer = build_trainer(cfg, outdir, ctx)
        if ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx.device)
        trainer.fit()
        peak = torch.cuda.max_memory_allocated(ctx.device) if ctx.device.type == "cuda" else None
        if ctx.is_main:
            Path(out_json).write_text(json.dumps({"history": trainer.history, "peak_bytes": peak}))
    finally:
        shutdown(ctx)


def run_once(cfg: dict, processes: int, threads: int) -> tuple[list[float], float | None]:
    """Sequences/second of each logging interval after the first, and the peak GPU bytes, of one fresh run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = [str(Path(__file__).resolve()), "--worker", json.dumps(cfg), str(out), str(Path(tmp) / "exp")]
        if processes > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), *args]
        else:
            cmd = [sys.executable, *args]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"benchmark run failed ({' '.join(cmd[:6])} ...):\n{r.stderr[-3000:]}")
        result = json.loads(out.read_text())
    return [h["seq_per_s"] for h in result["history"][1:]], result["peak_bytes"]


def run_variants(variants: list[tuple[str, dict, int, int]],
                 repeats: int) -> list[tuple[str, float, float | None, int]]:
    """Runs interleaved (variant A, B, C, A, B, C, ...) so a change in machine load hits all alike."""
    rates: dict[str, list[float]] = {name: [] for name, *_ in variants}
    peaks: dict[str, float | None] = {}
    for _ in range(repeats):
        for name, cfg, procs, threads in variants:
            got, peaks[name] = run_once(cfg, procs, threads)
            rates[name] += got
    return [(name, statistics.median(rates[name]), peaks[name], len(rates[name])) for name, *_ in variants]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--global_batch", type=int, default=32, help="CPU mode: global batch of every variant")
    p.add_argument("--batch", type=int, default=128, help="GPU mode: batch (Sprites: 128)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=2, help="fresh runs per variant")
    p.add_argument("--compile", action="store_true", help="GPU mode: add a torch.compile variant")
    args = p.parse_args(argv)

    if args.device == "cpu":
        if args.global_batch % 2:
            sys.exit("--global_batch must be even (it is split over 2 processes)")
        print(f"CPU, C-DSVAE speech step (T=20 x 80 bins, default model), global batch {args.global_batch}, "
              f"{args.steps} steps x {args.repeats} runs per variant", flush=True)
        variants = [(name, speech_config(args.global_batch, args.steps, procs, "cpu"), procs, threads)
                    for name, procs, threads in [("1 process x 1 thread (baseline)", 1, 1),
                                                 ("1 process x 2 threads", 1, 2),
                                                 ("2 gloo processes x 1 thread", 2, 1)]]
    else:
        print(f"GPU, Sprites-sized C-DSVAE step (B={args.batch}, T=8, 3x64x64, conv64 default model), "
              f"{args.steps} steps x {args.repeats} runs per variant", flush=True)
        threads = int(os.environ.get("OMP_NUM_THREADS", "4"))
        variants = [(name, sprites_config(args.batch, args.steps, amp, comp), 1, threads)
                    for name, amp, comp in [("fp32 eager (baseline)", "none", False), ("bf16 autocast", "bf16", False)]
                    + ([("bf16 autocast + torch.compile", "bf16", True)] if args.compile else [])]
    rows = run_variants(variants, args.repeats)
    for name, rate, peak, n in rows:
        mem = f", peak {peak / 2**30:.2f} GiB" if peak is not None else ""
        print(f"  {name:34s} {rate:8.1f} seq/s{mem} (median of {n} intervals)")
    base = rows[0][1]
    for name, rate, _, _ in rows[1:]:
        print(f"ratio {name} / {rows[0][0]}: {rate / base:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:])
    else:
        main()
