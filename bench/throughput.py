"""Training throughput of cdsvae.train (sequences/second), measured by the trainer itself.

CPU (default): the C-DSVAE step of the speech recipes (spectral frames: T=20 x 80 bins, the default
model sizes, precomputed motion views) on synthetic sequences, at one fixed global batch:

    baseline   1 process  x 1 thread,  batch G
               1 process  x 2 threads, batch G
               2 gloo DDP processes x 1 thread, batch G/2 each (torchrun)

GPU (``--device cuda``): one GPU, fp32 (baseline) vs bf16 and fp16 autocast, and torch.compile with
``--compile``; prints sequences/second and peak GPU memory (torch.cuda.max_memory_allocated), at one
of two sizes (``--size``):

    sprites  B=128, T=8, 3x64x64 frames, the conv64 model with the default sizes, motion views made
             on the GPU
    timit    the model, loss weights, batch and segment length (T) of
             egs/timit/cdsvae1/conf/train.yaml on 80-bin frames, with precomputed motion views; the
             content view is the frame shuffle (synthetic data has no second segment of an
             utterance, so the conf's segment view, one more encoder pass, is not timed)

``--dry_run`` runs the same GPU variants on the CPU with tiny models, batches and steps: a rehearsal
that keeps this mode working where there is no GPU (bench/gpu_check.sh --dry-run), not a measurement.
``--compile_backend`` picks torch.compile's backend (default inductor; the rehearsal uses aot_eager,
since inductor takes over a minute per process to compile on a 2-core CPU).

Each variant runs the real trainer (python -m cdsvae.bin.train's code path) for ``--steps`` steps in
fresh processes, ``--repeats`` times; the trainer logs sequences/second every 2 steps; the first
interval of each run (warm-up, compilation) is dropped and the median of the rest is printed.

    OMP_NUM_THREADS=1 tools/venv/bin/python bench/throughput.py
    tools/venv/bin/python bench/throughput.py --device cuda [--size sprites|timit] [--compile] [--json FILE]
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
TIMIT_CONF = REPO / "egs" / "timit" / "cdsvae1" / "conf" / "train.yaml"
# --dry_run: every size shrinks to this model (conv64 keeps its 64x64 frames), batch and length.
TINY_MODEL = {"s_dim": 8, "z_dim": 4, "hidden_dim": 16, "g_dim": 8, "frame_hidden": 16, "conv_width": 8}
TINY_BATCH, TINY_STEPS = 4, 4


def speech_config(global_batch: int, steps: int, processes: int, device: str) -> dict:
    return {
        "model": {"frame": "mlp", "feat_dim": 80},
        "data": {"type": "synthetic", "num_train": global_batch * (steps + 1), "seq_len": 20, "frame_shape": [80],
                 "with_motion": True, "valid_split": None},
        "train": {"epochs": 1, "max_steps": steps, "batch_size": global_batch // processes, "log_every": 2,
                  "tensorboard": False, "device": device, "num_workers": 0},
    }


def sprites_config(batch: int, steps: int, amp: str, compile_: bool, tiny: bool = False) -> dict:
    """The Sprites-sized step (``tiny``: the --dry_run rehearsal on the CPU)."""
    return {
        "model": {"frame": "conv64", "in_channels": 3, **(TINY_MODEL if tiny else {})},
        "data": {"type": "synthetic", "num_train": batch * (steps + 1), "seq_len": 4 if tiny else 8,
                 "frame_shape": [3, 64, 64], "num_static": 16, "num_dynamic": 9, "valid_split": None},
        "train": {"epochs": 1, "max_steps": steps, "batch_size": batch, "log_every": 2, "tensorboard": False,
                  "device": "cpu" if tiny else "cuda", "num_workers": 0 if tiny else 6, "amp": amp,
                  "compile": compile_},
    }


def timit_config(batch: int | None, steps: int, amp: str, compile_: bool, tiny: bool = False) -> dict:
    """The step of the TIMIT training conf: its model, loss weights, batch (unless ``batch``) and
    segment length, on synthetic 80-bin frames with motion views and the frame-shuffle content view."""
    import yaml

    conf = yaml.safe_load(TIMIT_CONF.read_text())
    model = dict(conf["model"], **(TINY_MODEL if tiny else {}))
    batch = batch or int(conf["train"]["batch_size"])
    return {
        "model": model,
        "loss": dict(conf.get("loss") or {}),
        "optim": dict(conf.get("optim") or {}),
        "augment": {"content_view": "shuffle"},
        "data": {"type": "synthetic", "num_train": batch * (steps + 1),
                 "seq_len": 6 if tiny else int(conf["data"]["segment_frames"]), "frame_shape": [model["feat_dim"]],
                 "num_static": 16, "num_dynamic": 9, "with_motion": True, "valid_split": None},
        "train": {"epochs": 1, "max_steps": steps, "batch_size": batch, "log_every": 2, "tensorboard": False,
                  "device": "cpu" if tiny else "cuda", "num_workers": 0 if tiny else 6, "amp": amp,
                  "compile": compile_},
    }


def worker(cfg_json: str, out_json: str, outdir: str, compile_backend: str = "inductor") -> None:
    """Run the trainer (alone or under torchrun); rank 0 writes what it logged and the peak memory."""
    import functools

    import torch

    if compile_backend != "inductor":  # the trainer calls torch.compile(model) with the default backend
        torch.compile = functools.partial(torch.compile, backend=compile_backend)

    from cdsvae.train.distributed import shutdown
    from cdsvae.experiment.run import build_trainer
    from cdsvae.experiment.schema import check_config
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


def run_once(cfg: dict, processes: int, threads: int,
             compile_backend: str = "inductor") -> tuple[list[float], float | None]:
    """Sequences/second of each logging interval after the first, and the peak GPU bytes, of one fresh run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = [str(Path(__file__).resolve()), "--worker", json.dumps(cfg), str(out), str(Path(tmp) / "exp"),
                compile_backend]
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


def run_variants(variants: list[tuple[str, dict, int, int]], repeats: int, compile_backend: str = "inductor",
                 progress=None) -> list[tuple[str, float, float | None, int]]:
    """Runs interleaved (variant A, B, C, A, B, C, ...) so a change in machine load hits all alike.
    ``progress(rows)`` is called after every run with the rows of the variants measured so far."""
    rates: dict[str, list[float]] = {name: [] for name, *_ in variants}
    peaks: dict[str, float | None] = {}

    def rows():
        return [(name, statistics.median(rates[name]), peaks[name], len(rates[name]))
                for name, *_ in variants if rates[name]]

    for _ in range(repeats):
        for name, cfg, procs, threads in variants:
            got, peaks[name] = run_once(cfg, procs, threads, compile_backend)
            rates[name] += got
            if progress is not None:
                progress(rows())
    return rows()


def gpu_variants(size: str, batch: int | None, steps: int, compile_: bool,
                 tiny: bool) -> list[tuple[str, dict, int, int]]:
    """(name, config, processes, threads) of the GPU mode's variants: fp32, bf16, fp16 (GradScaler), and
    bf16 + compile."""
    threads = 1 if tiny else int(os.environ.get("OMP_NUM_THREADS", "4"))
    variants = [("fp32 eager (baseline)", "none", False), ("bf16 autocast", "bf16", False),
                ("fp16 autocast", "fp16", False)]
    if compile_:
        variants.append(("bf16 autocast + torch.compile", "bf16", True))
    if size == "sprites":
        build, batch = sprites_config, batch or 128
    else:
        build = timit_config  # batch None: the conf's
    return [(name, build(batch, steps, amp, comp, tiny), 1, threads) for name, amp, comp in variants]


def describe(size: str, cfg: dict) -> str:
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    shape = "x".join(str(n) for n in d["frame_shape"])
    dims = f"s {m.get('s_dim', 256)}, z {m.get('z_dim', 32)}, hidden {m.get('hidden_dim', 256)}"
    if size == "sprites":
        return (f"Sprites-sized C-DSVAE step (B={t['batch_size']}, T={d['seq_len']}, {shape} frames, "
                f"conv64 model: {dims})")
    return (f"TIMIT-conf C-DSVAE step (B={t['batch_size']}, T={d['seq_len']}, {shape}-bin frames, "
            f"{m['frame']} model: {dims}; {TIMIT_CONF.relative_to(REPO)})")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--global_batch", type=int, default=32, help="CPU mode: global batch of every variant")
    p.add_argument("--size", choices=("sprites", "timit"), default="sprites", help="GPU mode: the step timed")
    p.add_argument("--batch", type=int, default=None,
                   help="GPU mode: batch (default: Sprites 128; timit: the conf's train.batch_size)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=2, help="fresh runs per variant")
    p.add_argument("--compile", action="store_true", help="GPU mode: add a torch.compile variant")
    p.add_argument("--compile_backend", default="inductor", help="torch.compile backend (default: inductor)")
    p.add_argument("--dry_run", action="store_true",
                   help=f"GPU mode rehearsed on the CPU: tiny model, batch {TINY_BATCH}, {TINY_STEPS} steps, 1 run")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file (after every run)")
    args = p.parse_args(argv)

    if args.device == "cpu" and not args.dry_run:
        if args.global_batch % 2:
            sys.exit("--global_batch must be even (it is split over 2 processes)")
        print(f"CPU, C-DSVAE speech step (T=20 x 80 bins, default model), global batch {args.global_batch}, "
              f"{args.steps} steps x {args.repeats} runs per variant", flush=True)
        variants = [(name, speech_config(args.global_batch, args.steps, procs, "cpu"), procs, threads)
                    for name, procs, threads in [("1 process x 1 thread (baseline)", 1, 1),
                                                 ("1 process x 2 threads", 1, 2),
                                                 ("2 gloo processes x 1 thread", 2, 1)]]
    else:
        if args.dry_run:
            args.batch, args.steps, args.repeats = TINY_BATCH, TINY_STEPS, 1
        variants = gpu_variants(args.size, args.batch, args.steps, args.compile, args.dry_run)
        where = "dry run on the CPU (tiny sizes; not a measurement)" if args.dry_run else "GPU"
        backend = f", torch.compile backend {args.compile_backend}" if args.compile else ""
        print(f"{where}, {describe(args.size, variants[0][1])}, {args.steps} steps x {args.repeats} runs per "
              f"variant{backend}", flush=True)

    def write_json(rows):
        # Rewritten after every run, so a run stopped by a time limit keeps the variants it measured.
        base = rows[0][1]
        Path(args.json).write_text(json.dumps(
            [{"variant": name, "seq_per_s": rate, "peak_bytes": peak, "intervals": n, "ratio": rate / base}
             for name, rate, peak, n in rows], indent=1) + "\n")

    rows = run_variants(variants, args.repeats, args.compile_backend, write_json if args.json else None)
    for name, rate, peak, n in rows:
        mem = f", peak {peak / 2**30:.2f} GiB" if peak is not None else ""
        print(f"  {name:34s} {rate:8.1f} seq/s{mem} (median of {n} intervals)")
    base = rows[0][1]
    for name, rate, _, _ in rows[1:]:
        print(f"ratio {name} / {rows[0][0]}: {rate / base:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) in (5, 6) and sys.argv[1] == "--worker":
        worker(*sys.argv[2:])
    else:
        main()
