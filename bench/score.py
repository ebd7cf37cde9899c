"""All-pairs speaker-verification scoring at VoxCeleb1 test size: the library path vs a plain Python loop.

    tools/venv/bin/python bench/score.py            # 5,000 utterances: 12.5 million trials
    tools/venv/bin/python bench/score.py --n_utts 50

Both sides start from the same seeded embeddings (``--n_utts`` utterances of ``--n_spk``
speakers, ``--dim`` dimensions: speaker centre plus noise, in a dict keyed by utterance id)
and compute the cosine score of every unordered pair, then EER and minDCF(0.01).

Ours: ``cdsvae.eval.metrics.trials.all_pairs_trials`` (index arrays), ``cdsvae.eval.metrics.scoring.cosine_scores``
(blocked matmuls), ``cdsvae.eval.metrics.eer.compute_eer`` and ``compute_min_dcf``.
Baseline ("python loop"): the trial list built in Python as a list of ``(utt1, utt2, is_target)``
tuples, each trial's cosine computed from the dict of vectors
(``a @ b / (norm(a) * norm(b))``), and the same ``compute_eer`` / ``compute_min_dcf`` on the
resulting score lists, so the two differ in how trials are built and scored, not in the metric;
their EER and minDCF must agree.

Each side runs in a fresh subprocess. Time: wall clock (the target) and process CPU time of
the scoring, data generation excluded. Memory: the child's peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), interpreter, numpy and data included, i.e.
what the machine must have. The target for ours at 5,000 utterances on 2 cores: under 30 s
and 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from cdsvae.eval.metrics.eer import compute_eer, compute_min_dcf


def make_embeddings(n_utts: int, n_spk: int, dim: int, seed: int) -> tuple[dict, dict]:
    """(utt2spk, {utt: vector}) with utterances spread evenly over the speakers."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_spk, dim))
    utt2spk, vectors = {}, {}
    for k in range(n_utts):
        spk = f"spk{k % n_spk:04d}"
        utt = f"{spk}-utt{k:05d}"
        utt2spk[utt] = spk
        vectors[utt] = centres[k % n_spk] + 1.5 * rng.normal(size=dim)
    return utt2spk, vectors


def score_library(utt2spk: dict, vectors: dict) -> tuple[int, float, float]:
    from cdsvae.eval.metrics.scoring import cosine_scores
    from cdsvae.eval.metrics.trials import all_pairs_trials

    trials = all_pairs_trials(utt2spk)
    matrix = np.stack([vectors[u] for u in trials.utts])
    scores = cosine_scores(matrix, trials.enroll_idx, trials.test_idx)
    tgt, non = scores[trials.target], scores[~trials.target]
    return len(trials), compute_eer(tgt, non)[0], compute_min_dcf(tgt, non, p_target=0.01)


def score_python_loop(utt2spk: dict, vectors: dict) -> tuple[int, float, float]:
    utts = sorted(utt2spk)
    trials = []
    for i in range(len(utts)):
        for j in range(i + 1, len(utts)):
            trials.append((utts[i], utts[j], utt2spk[utts[i]] == utt2spk[utts[j]]))
    tgt, non = [], []
    for a, b, is_target in trials:
        va, vb = vectors[a], vectors[b]
        score = float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))
        (tgt if is_target else non).append(score)
    return len(trials), compute_eer(tgt, non)[0], compute_min_dcf(tgt, non, p_target=0.01)


SIDES = {"ours": score_library, "baseline": score_python_loop}


def run_side(args: argparse.Namespace) -> None:
    """In the child: score once and print one JSON line."""
    import cdsvae.eval.metrics.scoring  # noqa: F401 (imported before the clock starts, as the baseline's modules are)
    import cdsvae.eval.metrics.trials  # noqa: F401

    utt2spk, vectors = make_embeddings(args.n_utts, args.n_spk, args.dim, args.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    n_trials, eer, min_dcf = SIDES[args.side](utt2spk, vectors)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"trials": n_trials, "eer": eer, "min_dcf": min_dcf, "wall_s": wall, "cpu_s": cpu,
                      "peak_mb": peak_kb / 1024}))


def measure(side: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--n_utts", str(args.n_utts), "--n_spk", str(args.n_spk),
           "--dim", str(args.dim), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{side} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n_utts", type=int, default=5000, help="utterances; all pairs are scored (default: 5000)")
    p.add_argument("--n_spk", type=int, default=250, help="speakers (default: 250)")
    p.add_argument("--dim", type=int, default=192, help="embedding dimension (default: 192)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip_baseline", action="store_true", help="measure ours only")
    p.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.n_utts < 2 or not 1 <= args.n_spk < args.n_utts:
        p.error("need --n_utts >= 2 and 1 <= --n_spk < --n_utts (target and nontarget trials)")
    if args.side:
        run_side(args)
        return

    results = {"ours": measure("ours", args)}
    if not args.skip_baseline:
        results["baseline"] = measure("baseline", args)
    ours = results["ours"]
    print(f"{args.n_utts} utterances of {args.n_spk} speakers, dim {args.dim}: {ours['trials']} trials "
          f"(cosine, EER, minDCF(0.01)), each side in a fresh process")
    for side, name in (("ours", "cdsvae library path"), ("baseline", "python loop (baseline)")):
        if side in results:
            r = results[side]
            print(f"{name:24s}: {r['wall_s']:8.3f} s wall {r['cpu_s']:8.3f} s CPU  peak RSS {r['peak_mb']:8.1f} MB  "
                  f"EER {100 * r['eer']:.4f}%  minDCF {r['min_dcf']:.4f}")
    if args.n_utts == 5000:
        ok = ours["wall_s"] < 30 and ours["peak_mb"] < 2048
        print(f"target for ours (< 30 s wall, < 2 GB peak RSS): {'met' if ok else 'NOT MET'}")
    if "baseline" in results:
        base = results["baseline"]
        same = abs(base["eer"] - ours["eer"]) <= 1e-9 and abs(base["min_dcf"] - ours["min_dcf"]) <= 1e-9
        print(f"EER and minDCF of the two agree (1e-9): {'ok' if same else 'MISMATCH'}")
        print(f"ratio (baseline / ours): time {base['wall_s'] / ours['wall_s']:.1f}x wall, "
              f"{base['cpu_s'] / ours['cpu_s']:.1f}x CPU; peak memory {base['peak_mb'] / ours['peak_mb']:.2f}x")


if __name__ == "__main__":
    main()
