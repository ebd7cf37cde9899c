"""EER on one million trials: cdsvae.eval.metrics.eer.compute_eer vs speechbrain.utils.metric_stats.EER.

    OMP_NUM_THREADS=1 tools/venv/bin/python bench/eer.py [--trials 1000000] [--repeats 5]

SpeechBrain's EER loops over every distinct score (and every midpoint between
neighbours), comparing all trials at each one: its cost is N x (2 x distinct scores).
On a million trials with continuous scores that is about 2e12 comparisons (hours), so
the scores here are cosine scores in [-1, 1] rounded to three decimals, as a scores file
printed with "%.3f" would hold them: at most 2001 distinct values, which keeps the
baseline measurable.  The ratio grows with the number of distinct scores (the baseline
is linear in it, compute_eer does not depend on it): fewer decimals favour the baseline
(--decimals 2 gives it about 200 distinct values), more decimals make it unmeasurable.
Both implementations get exactly the same scores.  The printed values
must agree to 1e-4: SpeechBrain reports (FAR + FRR) / 2 at the candidate threshold
closest to the crossing, compute_eer the exact crossing of the interpolated ROC.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def median_time(fn, repeats):
    """Median CPU seconds of ``repeats`` calls (both sides run on one thread; CPU time is not
    inflated by other jobs on a shared machine) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.process_time()
        result = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=1_000_000)
    p.add_argument("--target_fraction", type=float, default=0.1)
    p.add_argument("--decimals", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5, help="repeats of ours; the baseline runs --baseline_repeats")
    p.add_argument("--baseline_repeats", type=int, default=3)
    args = p.parse_args()

    from cdsvae.eval.metrics.eer import compute_eer

    try:
        import torch
        from speechbrain.utils.metric_stats import EER as speechbrain_eer
    except Exception as e:  # report exactly why the baseline is unavailable
        print(f"baseline unavailable: importing speechbrain.utils.metric_stats failed: {type(e).__name__}: {e}")
        sys.exit(1)
    torch.set_num_threads(1)

    rng = np.random.default_rng(0)
    n_tgt = int(args.trials * args.target_fraction)
    n_non = args.trials - n_tgt
    tgt = np.round(np.clip(rng.normal(0.5, 0.2, n_tgt), -1, 1), args.decimals)
    non = np.round(np.clip(rng.normal(0.1, 0.2, n_non), -1, 1), args.decimals)
    n_distinct = np.unique(np.r_[tgt, non]).size
    tgt_t = torch.from_numpy(tgt.astype(np.float32))
    non_t = torch.from_numpy(non.astype(np.float32))

    ours_s, (ours_eer, ours_th) = median_time(lambda: compute_eer(tgt, non), args.repeats)
    base_s, (base_eer, base_th) = median_time(lambda: speechbrain_eer(tgt_t, non_t), args.baseline_repeats)

    diff = abs(ours_eer - base_eer)
    print(f"trials: {args.trials} ({n_tgt} target, {n_non} nontarget), scores at {args.decimals} decimals "
          f"({n_distinct} distinct), torch threads 1")
    print(f"cdsvae compute_eer          : EER {100 * ours_eer:.4f}% threshold {ours_th:.4f}  "
          f"median {ours_s * 1e3:.1f} ms CPU over {args.repeats}")
    print(f"speechbrain metric_stats.EER: EER {100 * base_eer:.4f}% threshold {base_th:.4f}  "
          f"median {base_s * 1e3:.1f} ms CPU over {args.baseline_repeats}")
    print(f"|difference| {diff:.2e} (limit 1e-4): {'ok' if diff <= 1e-4 else 'MISMATCH'}")
    print(f"speed ratio (speechbrain / ours): {base_s / ours_s:.1f}x (target >= 50x)")


if __name__ == "__main__":
    main()
