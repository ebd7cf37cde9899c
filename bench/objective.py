"""MWS estimate of I(s; z_t): quadratic-form matmuls vs the straightforward broadcast.

Baseline ("broadcast"): the authors' structure with the Gaussian density fixed
(sigma = exp(logvar / 2)): log N(v_i; mu_j, sigma_j) materialised as (T, B, B, D)
tensors for s (repeated over t), z_t and their concatenation, then summed over D.
Ours ("matmul"): cdsvae.objectives.mws_mutual_info, O(T B^2) memory.

Each variant runs forward + backward in a fresh subprocess on identical seeded inputs.
Peak memory: torch's CPU allocations are invisible to tracemalloc, so the child fixes
glibc's mmap threshold (MALLOC_MMAP_THRESHOLD_=65536: large blocks are mapped and
unmapped, RSS follows live memory), resets the kernel's peak-RSS mark before each repeat
(echo 5 > /proc/self/clear_refs) and reads VmHWM - VmRSS afterwards: the peak extra
resident memory of that repeat. Times are wall and process CPU time (the latter is the
fairer one on a shared machine with one thread). Values and gradients are compared.

    tools/venv/bin/python bench/objective.py            # authors' Sprites size
    tools/venv/bin/python bench/objective.py --batch 64 --repeats 3
"""

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

LOG_2PI = math.log(2.0 * math.pi)


def _log_density_broadcast(v, mean, logvar):
    """(T, B, B, D) per-dimension log-densities of v[t, i] under N(mean[t, j], exp(logvar[t, j]))."""
    import torch

    diff = v.unsqueeze(2) - mean.unsqueeze(1)
    return -0.5 * (LOG_2PI + logvar.unsqueeze(1) + diff.pow(2) * torch.exp(-logvar.unsqueeze(1)))


def mws_broadcast(s, s_mean, s_logvar, z, z_mean, z_logvar, dataset_size):
    """The straightforward estimate: everything broadcast to (T, B, B, D) before summing."""
    import torch

    b, t = z.shape[:2]
    rep = lambda a: a.unsqueeze(0).expand(t, *a.shape)  # noqa: E731
    tr = lambda a: a.transpose(0, 1)  # noqa: E731
    log_s = _log_density_broadcast(rep(s), rep(s_mean), rep(s_logvar))
    log_z = _log_density_broadcast(tr(z), tr(z_mean), tr(z_logvar))
    log_sz = torch.cat([log_s, log_z], dim=3)
    norm = math.log(b * dataset_size)
    log_qs = torch.logsumexp(log_s.sum(3), dim=2) - norm
    log_qz = torch.logsumexp(log_z.sum(3), dim=2) - norm
    log_qsz = torch.logsumexp(log_sz.sum(3), dim=2) - norm
    return torch.relu(log_qsz - log_qs - log_qz).mean()


def _memory_kb():
    status = open("/proc/self/status").read()
    return {key: int(re.search(key + r":\s+(\d+)", status).group(1)) for key in ("VmRSS", "VmHWM")}


def rss_mb():
    """Resident memory now."""
    return _memory_kb()["VmRSS"] / 1024.0


def reset_peak():
    """Set the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_extra_mb(before_mb):
    """Peak resident memory since reset_peak(), above ``before_mb``."""
    return _memory_kb()["VmHWM"] / 1024.0 - before_mb


def _inputs(args):
    import torch

    g = torch.Generator().manual_seed(0)
    b, t, ds, dz = args.batch, args.length, args.s_dim, args.z_dim
    # posteriors that overlap across the batch, so the estimate is not saturated at log(B N)
    s_mean = 0.05 * torch.randn(b, ds, generator=g)
    s_logvar = torch.randn(b, ds, generator=g) * 0.3 - 1.0
    z_mean = 0.2 * torch.randn(b, t, dz, generator=g)
    z_logvar = torch.randn(b, t, dz, generator=g) * 0.3 - 1.0
    s = s_mean + torch.exp(0.5 * s_logvar) * torch.randn(b, ds, generator=g)
    z = z_mean + torch.exp(0.5 * z_logvar) * torch.randn(b, t, dz, generator=g)
    return [a.requires_grad_() for a in (s, s_mean, s_logvar, z, z_mean, z_logvar)]


def child(args):
    import torch

    from cdsvae.objectives import mws_mutual_info

    fn = mws_mutual_info if args.child == "matmul" else mws_broadcast
    inputs = _inputs(args)

    def step():
        for a in inputs:
            a.grad = None
        value = fn(*inputs, dataset_size=args.dataset_size)
        value.backward()
        return value

    step()  # warm-up: kernels and code pages become resident before measuring
    times, cpu_times, peaks = [], [], []
    for _ in range(args.repeats):
        before = rss_mb()
        reset_peak()
        start, cpu_start = time.perf_counter(), time.process_time()
        value = step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        peaks.append(peak_extra_mb(before))
    torch.save([value.detach()] + [a.grad for a in inputs], args.out)
    print(json.dumps({"times": times, "cpu_times": cpu_times, "peaks_mb": peaks}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--length", type=int, default=8)
    p.add_argument("--s-dim", type=int, default=256)
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--dataset-size", type=int, default=9000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the measured processes")
    p.add_argument("--child", choices=["matmul", "broadcast"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    import torch

    print(f"config: B={args.batch} T={args.length} s_dim={args.s_dim} z_dim={args.z_dim} "
          f"dataset_size={args.dataset_size} repeats={args.repeats} threads={args.threads} "
          f"torch={torch.__version__}, forward+backward, float32 inputs")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "MALLOC_MMAP_THRESHOLD_": "65536"}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("broadcast", "matmul"):
            out = os.path.join(tmp, variant + ".pt")
            cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--out", out,
                   "--batch", str(args.batch), "--length", str(args.length), "--s-dim", str(args.s_dim),
                   "--z-dim", str(args.z_dim), "--dataset-size", str(args.dataset_size),
                   "--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{variant} failed:\n{proc.stderr}")
            stats = json.loads(proc.stdout.strip().splitlines()[-1])
            results[variant] = (statistics.median(stats["times"]), statistics.median(stats["cpu_times"]),
                                statistics.median(stats["peaks_mb"]), torch.load(out, weights_only=True))
    names = ["value", "d/ds", "d/ds_mean", "d/ds_logvar", "d/dz", "d/dz_mean", "d/dz_logvar"]
    base, ours = results["broadcast"], results["matmul"]
    for variant, (t, cpu, mb, _) in results.items():
        print(f"{variant:10s} median wall {t * 1e3:9.1f} ms   cpu {cpu * 1e3:9.1f} ms   "
              f"peak memory {mb:8.1f} MB")
    value_b, value_m = base[3][0].item(), ours[3][0].item()
    rel = abs(value_m - value_b) / max(abs(value_b), 1e-30)
    print(f"value: broadcast {value_b:.8f}  matmul {value_m:.8f}  relative difference {rel:.2e} "
          f"({'within' if rel <= 1e-5 else 'OUTSIDE'} 1e-5)")
    for name, gb, gm in zip(names[1:], base[3][1:], ours[3][1:]):
        err = ((gm - gb).abs().max() / gb.abs().max().clamp_min(1e-30)).item()
        print(f"  gradient {name:12s} max |diff| / max |grad| = {err:.2e}")
    print(f"ratio broadcast/matmul: wall time {base[0] / ours[0]:.1f}x  cpu time {base[1] / ours[1]:.1f}x  "
          f"peak memory {base[2] / max(ours[2], 1e-3):.1f}x (target >= 10x less memory)")

if __name__ == "__main__":
    main()
