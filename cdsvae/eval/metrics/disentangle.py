"""Disentanglement metrics of a speech model, the speech twin of the video judge metrics.

Two kinds of measurement on a frozen model (all factors are posterior means):

* **Probes.** A CTC recogniser (:mod:`cdsvae.eval.judges.ctc`) is trained on the training set to read
  the unit transcript from z_1:T, and the same recogniser from s repeated at every frame, then
  scored on the test set. z should read the content (a low error); s should not (near the
  error of a recogniser that ignores its input).
* **Swaps.** For ``n_pairs`` test pairs (A, B) of different speakers, log-mel is decoded from
  chosen factors and given to the two judges of the recipe (:mod:`cdsvae.eval.judges.speech`):

  ========== ============== ======================================= ===============================
  variant    decoded from   speaker score                           content error
  ========== ============== ======================================= ===============================
  swap       (s_A, z_B)     closer to A's speaker than B's (want 1)  against B's transcript (want low)
  random_s   (s ~ p(s), z_B) closer to B's speaker than A's (want    against B's transcript (want low)
                            about 0.5: z_B does not carry B's voice)
  random_z   (s_A, z ~ p(z)) closer to A's speaker than B's (want 1)  against B's transcript (want high)
  ========== ============== ======================================= ===============================

  next to the references: the content judge on B's own input frames and on B's reconstruction
  (s_B, z_B), the speaker judge on A's own input, and on B's reconstruction (closer to B's
  speaker than to A's: what the decoder keeps of the voice when nothing is swapped). Each of ``n_draws`` draws takes other
  pairs and other prior samples; figures are reported as mean ± std over the draws.

Speakers are represented by the mean judge embedding of their other test utterances
(:func:`cdsvae.eval.metrics.swap.swap_speaker_score`). Without a content judge (a corpus without
transcripts) the swaps are judged for the speaker only: every speaker score is kept and no
content error is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from cdsvae.errors import UserError
from cdsvae.eval.metrics.factors import Denormaliser, UtteranceFactors, decode_frames, kept_frames
from cdsvae.eval.metrics.per import ErrorCounts, align_counts, fold_units
from cdsvae.eval.judges.speech import SwapConfig, fit_recogniser
from cdsvae.eval.metrics.swap import different_speaker_pairs, swap_speaker_score

log = logging.getLogger(__name__)

VARIANTS = ("swap", "random_s", "random_z")


def counts_dict(c: ErrorCounts) -> dict[str, Any]:
    """An :class:`ErrorCounts` as plain JSON values, with its rate."""
    return {**asdict(c), "rate": c.rate}


def content_errors(judge, mats: Mapping[Any, np.ndarray], refs: Mapping[Any, Sequence[str]],
                   unit_map: Mapping[str, str | None] | None) -> ErrorCounts:
    """The content judge's unit errors on ``mats`` (raw log-mel) against ``refs`` (same keys)."""
    keys = [k for k in mats if k in refs]
    if not keys:
        raise UserError("no utterance with a transcript to score the content judge on")
    hyps = judge.transcribe([mats[k] for k in keys])
    total = ErrorCounts()
    for k, hyp in zip(keys, hyps):
        ref = list(refs[k])
        if unit_map is not None:
            ref, hyp = fold_units(ref, unit_map), fold_units(hyp, unit_map)
        total = total + align_counts(ref, hyp)
    return total


def speaker_closer(speaker_judge, mats: Mapping[tuple[str, str], np.ndarray], ref_emb: Mapping[str, np.ndarray],
                   utt2spk: Mapping[str, str]) -> dict[str, float]:
    """Speaker score of decoded ``{(utt of the wanted speaker, utt of the other): log-mel}``."""
    keys = list(mats)
    vecs = speaker_judge.embed([mats[k] for k in keys])
    score = swap_speaker_score(dict(zip(keys, vecs)), ref_emb, utt2spk)
    return {"closer": score.closer_to_a, "cos_wanted": score.cos_a, "cos_other": score.cos_b, "n": score.n}


@torch.no_grad()
def swap_protocols(model: torch.nn.Module, factors: Mapping[str, UtteranceFactors], raw: Mapping[str, np.ndarray],
                   utt2spk: Mapping[str, str], units: Mapping[str, Sequence[str]], speaker_judge, content_judge,
                   ref_emb: Mapping[str, np.ndarray], denorm: Denormaliser, cfg: SwapConfig,
                   unit_map: Mapping[str, str | None] | None = None, device: str | torch.device = "cpu",
                   progress: bool = False) -> dict[str, Any]:
    """Every variant and reference of the swap protocol, one entry per draw (see the module doc).

    ``factors`` and ``raw`` (raw log-mel input) are keyed by test utterance, ``ref_emb`` holds the
    speaker judge's embeddings of the test utterances, ``units`` their transcripts. With
    ``content_judge`` None only the speaker scores are measured (``units`` is not read).
    """
    from tqdm import tqdm

    model.eval()
    utts = {u: utt2spk[u] for u in factors if u in utt2spk}
    inputs = kept_frames(raw, factors)
    draws: list[dict[str, Any]] = []
    for d in tqdm(range(cfg.n_draws), desc="swap draws", disable=not progress):
        pairs = different_speaker_pairs(utts, cfg.n_pairs, seed=cfg.seed + d)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + d)
        decoded: dict[str, dict[tuple[str, str], np.ndarray]] = {v: {} for v in VARIANTS}
        recon_b: dict[str, np.ndarray] = {}
        for a, b in pairs:
            fa, fb = factors[a], factors[b]
            decoded["swap"][(a, b)] = denorm(decode_frames(model, fa.s, fb.z, device=device))
            s_rand = model.sample_s(1, generator=gen)[0].float().cpu().numpy()
            decoded["random_s"][(b, a)] = denorm(decode_frames(model, s_rand, fb.z, device=device))
            n, length = fb.z.shape[:2]
            z_rand = model.sample_z_prior(n, length, generator=gen).float().cpu().numpy()
            decoded["random_z"][(a, b)] = denorm(decode_frames(model, fa.s, z_rand, device=device))
            if b not in recon_b:
                recon_b[b] = denorm(decode_frames(model, fb.s, fb.z, device=device))
        draw: dict[str, Any] = {"pairs": [list(p) for p in pairs]}
        for v in VARIANTS:
            z_source = (lambda k: k[0]) if v == "random_s" else (lambda k: k[1])
            mats = decoded[v]
            entry = speaker_closer(speaker_judge, mats, ref_emb, utt2spk)
            if content_judge is not None:
                entry["content"] = counts_dict(content_errors(
                    content_judge, mats, {k: units[z_source(k)] for k in mats if z_source(k) in units}, unit_map))
            draw[v] = entry
        draw["reconstruction_b"] = speaker_closer(speaker_judge, {(b, a): recon_b[b] for a, b in pairs}, ref_emb,
                                                  utt2spk)
        if content_judge is not None:
            b_utts = sorted({b for _, b in pairs})
            draw["input_b"] = {"content": counts_dict(content_errors(
                content_judge, {b: inputs[b] for b in b_utts}, units, unit_map))}
            draw["reconstruction_b"]["content"] = counts_dict(content_errors(content_judge, recon_b, units, unit_map))
        draw["input_a"] = speaker_closer(speaker_judge, {(a, b): inputs[a] for a, b in pairs}, ref_emb, utt2spk)
        draws.append(draw)
    return {"config": asdict(cfg), "draws": draws, "summary": summarise_draws(draws)}


def summarise_draws(draws: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per variant or reference: the speaker score and content error rate of every draw."""
    out: dict[str, dict[str, list[float]]] = {}
    for name in (*VARIANTS, "input_a", "input_b", "reconstruction_b"):
        entry: dict[str, list[float]] = {}
        for draw in draws:
            if name not in draw:
                continue
            if "closer" in draw[name]:
                entry.setdefault("speaker", []).append(float(draw[name]["closer"]))
            if "content" in draw[name]:
                entry.setdefault("content_error", []).append(float(draw[name]["content"]["rate"]))
        out[name] = entry
    return out


def probe_inputs(factors: Mapping[str, UtteranceFactors], factor: str) -> dict[str, np.ndarray]:
    """Per-frame probe inputs: z_1:T, or s repeated at every frame."""
    if factor == "z":
        return {u: f.z_frames for u, f in factors.items()}
    if factor == "s":
        return {u: f.s_broadcast() for u, f in factors.items()}
    raise ValueError(f"factor must be 's' or 'z', got {factor!r}")


def run_probes(train: Mapping[str, UtteranceFactors], test: Mapping[str, UtteranceFactors],
               train_units: Mapping[str, Sequence[str]], test_units: Mapping[str, Sequence[str]],
               probe_cfg: Mapping[str, Any], workdir: Path, unit_map: Mapping[str, str | None] | None = None,
               device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Train a CTC probe on each factor of the training utterances; unit errors on the test ones."""
    out: dict[str, Any] = {}
    for factor in ("z", "s"):
        x_train = probe_inputs(train, factor)
        judge = fit_recogniser(x_train, train_units, probe_cfg, workdir / f"probe_{factor}", device=device,
                               progress=progress, what=f"probe from {factor}")
        out[factor] = counts_dict(content_errors(judge, probe_inputs(test, factor), test_units, unit_map))
        log.info("probe from %s: unit error rate %.2f%%", factor, 100 * out[factor]["rate"])
    return out
