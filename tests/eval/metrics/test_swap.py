"""Swap speaker scores on constructed embeddings: known answers, a loop twin of the centroids,
a perfectly disentangled toy scoring 1 and a random one scoring about chance."""

import numpy as np
import pytest

from cdsvae.eval.metrics.swap import different_speaker_pairs, leave_one_out_centroids, swap_speaker_score
from cdsvae.io import UserError

UTT2SPK = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "c1": "C", "c2": "C"}


def test_centroids_leave_the_utterance_out_like_a_loop():
    rng = np.random.default_rng(0)
    emb = {u: rng.normal(size=4) for u in UTT2SPK}
    got = leave_one_out_centroids(emb, UTT2SPK)
    for (spk, utt), centroid in got.items():
        others = [emb[u] / np.linalg.norm(emb[u]) for u in UTT2SPK if UTT2SPK[u] == spk and u != utt]
        np.testing.assert_allclose(centroid, np.mean(others, axis=0))
    assert len(got) == len(UTT2SPK)
    assert ("D", "d1") not in leave_one_out_centroids({"d1": np.ones(2)}, {"d1": "D"})


def test_known_answer_on_axis_embeddings():
    # speaker A points along x, B along y; one swap lands on A, one halfway, one on B
    emb = {"a1": np.array([1.0, 0.0]), "a2": np.array([2.0, 0.0]), "b1": np.array([0.0, 1.0]),
           "b2": np.array([0.0, 3.0])}
    u2s = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    swapped = {("a1", "b1"): np.array([1.0, 0.0]), ("a2", "b2"): np.array([1.0, 1.0]),
               ("a1", "b2"): np.array([0.0, 5.0])}
    score = swap_speaker_score(swapped, emb, u2s)
    assert score.n == 3
    assert score.closer_to_a == pytest.approx(1 / 3)  # the tie (halfway) does not count as A's voice
    assert score.cos_a == pytest.approx((1 + np.sqrt(0.5) + 0) / 3)
    assert score.cos_b == pytest.approx((0 + np.sqrt(0.5) + 1) / 3)


def test_perfect_model_scores_one_and_random_scores_chance():
    rng = np.random.default_rng(1)
    speakers = [f"s{k}" for k in range(20)]
    u2s = {f"{s}_{i}": s for s in speakers for i in range(4)}
    centre = {s: rng.normal(size=32) for s in speakers}
    emb = {u: centre[s] + 0.1 * rng.normal(size=32) for u, s in u2s.items()}
    pairs = different_speaker_pairs(u2s, 400, seed=3)
    perfect = {(a, b): centre[u2s[a]] + 0.1 * rng.normal(size=32) for a, b in pairs}  # A's voice kept
    assert swap_speaker_score(perfect, emb, u2s).closer_to_a == 1.0
    random = {(a, b): rng.normal(size=32) for a, b in pairs}
    assert abs(swap_speaker_score(random, emb, u2s).closer_to_a - 0.5) < 0.1
    content_only = {(a, b): centre[u2s[b]] for a, b in pairs}  # the swap kept B's voice: fails
    assert swap_speaker_score(content_only, emb, u2s).closer_to_a == 0.0


def test_pairs_and_errors():
    pairs = different_speaker_pairs(UTT2SPK, 5, seed=0)
    assert len(set(pairs)) == 5 and all(UTT2SPK[a] != UTT2SPK[b] for a, b in pairs)
    assert pairs == different_speaker_pairs(UTT2SPK, 5, seed=0)
    assert len(different_speaker_pairs(UTT2SPK, 10_000)) == 7 * 7 - (9 + 4 + 4)
    with pytest.raises(UserError, match="at least two speakers"):
        different_speaker_pairs({"a1": "A", "a2": "A"}, 3)
    emb = {u: np.ones(2) for u in UTT2SPK}
    with pytest.raises(UserError, match="both utterances are of speaker A"):
        swap_speaker_score({("a1", "a2"): np.ones(2)}, emb, UTT2SPK)
    with pytest.raises(UserError, match="speaker D has no other test utterance"):
        swap_speaker_score({("d1", "a1"): np.ones(2)}, {**emb, "d1": np.ones(2)}, {**UTT2SPK, "d1": "D"})
