"""Real-time factor of WORLD voice conversion on one core: dio + stonemask vs harvest (the baseline).

    OMP_NUM_THREADS=1 tools/venv/bin/python bench/vc.py [--seconds 10] [--repeats 5]

The audio is espeak-ng speech at 16 kHz (several sentences, concatenated to about
--seconds).  One conversion = WORLD analysis (F0, cheaptrick, d4c) + F0 scaling +
envelope warping + synthesis, the work of one converted copy; the analysis share is
printed too, since K copies of one utterance share a single analysis.  RTF = processing
CPU time of this process / audio duration (target: at most 0.1 per core for dio +
stonemask).  CPU time, not wall time, is what "per core" means and it stays meaningful
when other jobs share the cores; the wall-clock RTF is printed beside it.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import time

import numpy as np

SENTENCES = [
    "She had your dark suit in greasy wash water all year.",
    "Don't ask me to carry an oily rag like that.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
]


def speech(seconds: float, sr: int = 16000) -> np.ndarray:
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    parts, total = [], 0
    voices = ["en+m3", "en+f2", "en+m7", "en+f4"]
    k = 0
    while total < seconds * sr:
        raw = subprocess.run(["espeak-ng", "-v", voices[k % len(voices)], "--stdout", SENTENCES[k % len(SENTENCES)]],
                             capture_output=True, check=True).stdout
        x, rate = sf.read(io.BytesIO(raw), dtype="float32")
        y = AF.resample(torch.from_numpy(x), rate, sr).numpy()
        parts.append(y)
        total += y.size
        k += 1
    return np.concatenate(parts)[: int(seconds * sr)]


def median_time(fn, repeats):
    """Median (CPU seconds, wall seconds) of ``repeats`` calls."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    import torch

    from cdsvae.augment.world_vc import world_analyze, world_convert

    torch.set_num_threads(1)
    sr = 16000
    x = speech(args.seconds, sr)
    duration = x.size / sr
    results = {}
    for method in ("dio", "harvest"):
        analysis_s, _ = median_time(lambda: world_analyze(x, sr, f0_method=method), args.repeats)
        analysis = world_analyze(x, sr, f0_method=method)
        total_s, total_wall = median_time(lambda: world_convert(world_analyze(x, sr, f0_method=method), 1.2, 0.05),
                                          args.repeats)
        synth_s, _ = median_time(lambda: world_convert(analysis, 1.2, 0.05), args.repeats)
        results[method] = (total_s, analysis_s, synth_s, total_wall)
    print(f"audio: {duration:.2f} s espeak-ng speech at {sr} Hz, one thread, medians of {args.repeats} repeats")
    for method, label in (("dio", "dio + stonemask"), ("harvest", "harvest (baseline)")):
        total_s, analysis_s, synth_s, total_wall = results[method]
        print(f"{label:20s}: RTF {total_s / duration:.3f} per conversion, CPU time "
              f"(analysis {analysis_s / duration:.3f}, warp + synthesis {synth_s / duration:.3f} per extra copy; "
              f"wall-clock RTF {total_wall / duration:.3f})")
    ratio = results["harvest"][0] / results["dio"][0]
    verdict = "ok" if results["dio"][0] / duration <= 0.1 else "ABOVE TARGET"
    print(f"speed ratio (harvest / dio): {ratio:.2f}x; dio RTF target <= 0.1: {verdict}")


if __name__ == "__main__":
    main()
