"""Scores of speech swaps, the speech twin of the video judge's A/B protocol.

A swap decodes (s_A, z_B): A's speaker with B's content. A speaker judge embeds the result; the
swap keeps A's voice when that embedding is closer (cosine) to A's speaker than to B's, each
speaker represented by the mean judge embedding of its other test utterances (the centroid
never contains the utterance the swap was made from).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cdsvae.io import UserError


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def leave_one_out_centroids(emb: Mapping[str, np.ndarray], utt2spk: Mapping[str, str],
                            ) -> dict[tuple[str, str], np.ndarray]:
    """{(speaker, left-out utterance): mean of the speaker's other length-normalised embeddings}.

    A speaker with a single utterance has no centroid without it, so that pair is absent.
    """
    by_spk: dict[str, list[str]] = {}
    for utt in emb:
        if utt not in utt2spk:
            raise UserError(f"utterance {utt} has an embedding but no speaker")
        by_spk.setdefault(utt2spk[utt], []).append(utt)
    out = {}
    for spk, utts in by_spk.items():
        vecs = _unit(np.stack([emb[u] for u in utts]))
        total = vecs.sum(axis=0)
        for k, utt in enumerate(utts):
            if len(utts) > 1:
                out[(spk, utt)] = (total - vecs[k]) / (len(utts) - 1)
    return out


@dataclass(frozen=True)
class SwapSpeakerScore:
    """Over the swaps: the fraction whose voice is A's, and the mean cosine to A's and to B's speaker."""

    closer_to_a: float
    cos_a: float
    cos_b: float
    n: int


def swap_speaker_score(swapped: Mapping[tuple[str, str], np.ndarray], emb: Mapping[str, np.ndarray],
                       utt2spk: Mapping[str, str]) -> SwapSpeakerScore:
    """Score swaps ``{(utt_a, utt_b): judge embedding of decode(s_A, z_B)}`` against the judge
    embeddings ``emb`` of the test utterances (A's and B's speakers must differ)."""
    if not swapped:
        raise UserError("no swaps to score")
    centroids = leave_one_out_centroids(emb, utt2spk)
    closer, cos_a, cos_b = [], [], []
    for (utt_a, utt_b), vec in swapped.items():
        spk_a, spk_b = utt2spk[utt_a], utt2spk[utt_b]
        if spk_a == spk_b:
            raise UserError(f"swap ({utt_a}, {utt_b}): both utterances are of speaker {spk_a}")
        try:
            ca, cb = centroids[(spk_a, utt_a)], centroids[(spk_b, utt_b)]
        except KeyError as e:
            raise UserError(f"speaker {e.args[0][0]} has no other test utterance to represent it") from None
        v = _unit(vec)
        a, b = float(v @ _unit(ca)), float(v @ _unit(cb))
        closer.append(a > b)
        cos_a.append(a)
        cos_b.append(b)
    return SwapSpeakerScore(float(np.mean(closer)), float(np.mean(cos_a)), float(np.mean(cos_b)), len(closer))


def different_speaker_pairs(utt2spk: Mapping[str, str], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct (A, B) pairs of utterances of different speakers, drawn with ``seed``
    (all such pairs when there are fewer)."""
    utts: Sequence[str] = sorted(utt2spk, key=lambda u: u.encode("utf-8"))
    pairs = [(a, b) for a in utts for b in utts if utt2spk[a] != utt2spk[b]]
    if not pairs:
        raise UserError("swaps need utterances of at least two speakers")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)
    return [pairs[i] for i in sorted(pick)]
