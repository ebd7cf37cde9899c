"""One C-DSVAE training step (forward + backward) on 64x64x3 frames: ours vs straightforward.

Baseline ("straightforward", the authors' structure): three full forward passes of the
model (original, content view, motion view) each in train mode, the views decoded too and
their outputs held through backward as in the authors' training loop, then the loss with
the broadcast (T, B, B, D) MWS estimate of I(s; z_t).
Ours: cdsvae.objectives.cdsvae_loss; the motion view shares the frame-encoder batch with
x, the content view is x's frame embeddings reordered (content_index, so the frame
encoder never runs on it), only x is decoded, MWS by matmuls. "ours-tensor" is the same
with the content view passed as frames (x_content), i.e. one encoder batch of 3 views.

Every variant runs in a fresh subprocess on the same seeded model and batch. Peak memory
is measured as in bench/objective.py (fixed glibc mmap threshold, peak-RSS mark reset
through /proc/self/clear_refs before each repeat, VmHWM - VmRSS afterwards). In train
mode the losses differ by design (the baseline lets the views' batch statistics into
BatchNorm); in eval mode (running statistics, posterior means) they must agree. Times are
wall and process CPU time (the fairer one on a shared machine with one thread).

The authors' size (B=128, T=8) takes about a minute per baseline step on a 2-core CPU;
the default batch is smaller so the whole run takes a couple of minutes.

    tools/venv/bin/python bench/train_step.py                  # B=16
    tools/venv/bin/python bench/train_step.py --batch 128 --repeats 2
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

VARIANTS = ("straightforward", "ours", "ours-tensor")


def straightforward_loss(model, x, x_content, x_motion, weights, dataset_size):
    """The objective written plainly: a full pass per view, all decoded, broadcast MWS.

    Returns (loss, outputs): like the authors' training loop, the caller holds the three
    outputs (with the views' reconstructions and their graphs) until after backward.
    """
    from objective import mws_broadcast

    from cdsvae.objectives import kl_normal, nt_xent

    out, out_c, out_m = model(x), model(x_content), model(x_motion)
    b = x.shape[0]
    terms = {
        "recon": (out.recon - x).pow(2).sum() / b,
        "kl_s": kl_normal(out.s_mean, out.s_logvar) / b,
        "kl_z": kl_normal(out.z_mean, out.z_logvar, out.z_prior_mean, out.z_prior_logvar) / b,
        "con_s": nt_xent(out.s_mean, out_c.s_mean, weights.tau),
        "con_z": nt_xent(out.z_mean.flatten(1), out_m.z_mean.flatten(1), weights.tau),
        "mi_sz": mws_broadcast(out.s, out.s_mean, out.s_logvar, out.z, out.z_mean, out.z_logvar, dataset_size),
    }
    return sum(getattr(weights, k) * v for k, v in terms.items()), (out, out_c, out_m)


def _setup(args):
    import torch

    from cdsvae.experiment.loss import apply_order, content_order
    from cdsvae.models import build_model

    torch.manual_seed(0)
    model = build_model({"frame": "conv64", "in_channels": 3})
    g = torch.Generator().manual_seed(1)
    b, t = args.batch, args.length
    x = torch.rand(b, t, 3, 64, 64, generator=g)
    order = content_order(b, t, g)
    scale = 0.5 + torch.rand(b, 1, 3, 1, 1, generator=g)
    shift = 0.2 * torch.rand(b, 1, 3, 1, 1, generator=g) - 0.1
    x_motion = (x * scale + shift).clamp(0, 1)  # a cheap stand-in for the colour distortions
    return model, x, apply_order(x, order), x_motion, order


def child(args):
    import torch

    from objective import peak_extra_mb, reset_peak, rss_mb
    from cdsvae.objectives import LossWeights, cdsvae_loss

    model, x, x_content, x_motion, order = _setup(args)
    weights = LossWeights()

    def loss_fn():
        if args.child == "straightforward":
            return straightforward_loss(model, x, x_content, x_motion, weights, args.dataset_size)
        if args.child == "ours":
            return cdsvae_loss(model, x, None, x_motion, weights, args.dataset_size, content_index=order)
        return cdsvae_loss(model, x, x_content, x_motion, weights, args.dataset_size)

    state = {k: v.clone() for k, v in model.state_dict().items()}

    def step():
        model.zero_grad(set_to_none=True)
        loss, held = loss_fn()  # held: what the training loop keeps alive through backward
        loss.backward()
        del held
        return loss.item()

    step()  # warm-up
    times, cpu_times, peaks = [], [], []
    for _ in range(args.repeats):
        model.zero_grad(set_to_none=True)
        before = rss_mb()
        reset_peak()
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        peaks.append(peak_extra_mb(before))
    model.load_state_dict(state)  # the BN running statistics moved during the timed steps
    model.eval()
    with torch.no_grad():
        eval_loss = loss_fn()[0].item()
    print(json.dumps({"times": times, "cpu_times": cpu_times, "peaks_mb": peaks, "eval_loss": eval_loss}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16, help="sequences per step (authors: 128)")
    p.add_argument("--length", type=int, default=8)
    p.add_argument("--dataset-size", type=int, default=9000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the measured processes")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    import torch

    print(f"config: B={args.batch} T={args.length} frames 3x64x64, model defaults (s=256, z=32, hidden=256, "
          f"g=128, conv64), weights = authors' (con 10, KL 1, MI 1), repeats={args.repeats} "
          f"threads={args.threads} torch={torch.__version__}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "MALLOC_MMAP_THRESHOLD_": "65536"}
    results = {}
    for variant in VARIANTS:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--batch", str(args.batch),
               "--length", str(args.length), "--dataset-size", str(args.dataset_size),
               "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{variant} failed:\n{proc.stderr}")
        stats = json.loads(proc.stdout.strip().splitlines()[-1])
        results[variant] = (statistics.median(stats["times"]), statistics.median(stats["cpu_times"]),
                            statistics.median(stats["peaks_mb"]), stats["eval_loss"])
        t, cpu, mb, ev = results[variant]
        print(f"{variant:16s} median wall {t:6.2f} s  cpu {cpu:6.2f} s  peak memory {mb:8.1f} MB  "
              f"eval-mode loss {ev:.6f}")
    base = results["straightforward"]
    for variant in VARIANTS[1:]:
        t, cpu, mb, ev = results[variant]
        rel = abs(ev - base[3]) / abs(base[3])
        print(f"ratio straightforward/{variant}: wall {base[0] / t:.2f}x  cpu {base[1] / cpu:.2f}x  "
              f"peak memory {base[2] / mb:.2f}x  eval loss relative difference {rel:.1e}")
    print("targets: >= 1.5x faster, >= 2x less peak memory, equal eval-mode loss")


if __name__ == "__main__":
    main()
