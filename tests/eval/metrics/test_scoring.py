import math

import kaldiio
import numpy as np
import pytest

from cdsvae.eval.metrics.scoring import cosine_scores, load_embedding_matrix, read_scores, score_trials, write_scores
from cdsvae.eval.metrics.trials import all_pairs_trials, read_trials
from cdsvae.io import UserError


def brute_force_cosine(emb, enroll, test):
    out = []
    for i, j in zip(enroll, test):
        a, b = emb[i], emb[j]
        na = math.sqrt(sum(v * v for v in a))
        nb = math.sqrt(sum(v * v for v in b))
        out.append(sum(x * y for x, y in zip(a, b)) / (na * nb))
    return np.array(out)


def test_known_answers():
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])
    scores = cosine_scores(emb, [0, 0, 0, 1], [1, 2, 3, 3])
    np.testing.assert_allclose(scores, [0.0, -1.0, 1 / math.sqrt(2), 1 / math.sqrt(2)], atol=1e-12)


@pytest.mark.parametrize("block_rows", [1, 3, 2048])
def test_vectorised_matches_brute_force_in_any_order(block_rows):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(13, 7))
    enroll = rng.integers(0, 13, size=200)
    test = rng.integers(0, 13, size=200)
    got = cosine_scores(emb, enroll, test, block_rows=block_rows)
    np.testing.assert_allclose(got, brute_force_cosine(emb.tolist(), enroll, test), rtol=1e-10, atol=1e-12)


def test_zero_vector_scores_zero_not_nan():
    emb = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert cosine_scores(emb, [0], [1])[0] == 0.0


def _write_emb(tmp_path, emb_by_utt):
    kaldiio.save_ark(str(tmp_path / "s.ark"), {u: v.astype(np.float32) for u, v in emb_by_utt.items()}, scp=str(tmp_path / "s.scp"))
    return tmp_path / "s.scp"


def test_score_and_write_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    utt2spk = {f"spk{k % 3}_u{k}": f"spk{k % 3}" for k in range(7)}
    emb = {u: rng.normal(size=5) for u in utt2spk}
    scp = _write_emb(tmp_path, emb)
    trials = all_pairs_trials(utt2spk)
    scores = score_trials(scp, trials)
    expected = [
        float(np.dot(emb[e], emb[t]) / np.linalg.norm(emb[e]) / np.linalg.norm(emb[t])) for e, t, _ in trials.pairs()
    ]
    np.testing.assert_allclose(scores, expected, atol=1e-6)  # stored as float32
    write_scores(tmp_path / "scores", trials, scores)
    lines = (tmp_path / "scores").read_text().splitlines()
    assert len(lines) == len(trials)
    e, t, sc = lines[0].split()
    assert (e, t) == trials.pairs()[0][:2] and abs(float(sc) - scores[0]) < 1e-6
    np.testing.assert_allclose(read_scores(tmp_path / "scores", trials), scores, atol=1e-6)


def test_missing_embedding_is_named(tmp_path):
    scp = _write_emb(tmp_path, {"a_1": np.ones(3), "a_2": np.ones(3)})
    (tmp_path / "trials").write_text("a_1 b_9 nontarget\n")
    with pytest.raises(UserError, match="s.scp: no embedding for utterance b_9"):
        score_trials(scp, read_trials(tmp_path / "trials"))


def test_non_finite_embedding_is_named(tmp_path):
    scp = _write_emb(tmp_path, {"a_1": np.ones(3), "a_2": np.array([1.0, np.nan, 0.0])})
    with pytest.raises(UserError, match="non-finite embedding for utterance a_2"):
        load_embedding_matrix(scp, ["a_1", "a_2"])


def test_missing_score_is_named(tmp_path):
    (tmp_path / "trials").write_text("a_1 a_2 target\na_1 b_1 nontarget\n")
    (tmp_path / "scores").write_text("a_1 a_2 0.5\n")
    with pytest.raises(UserError, match="no score for trial a_1 b_1"):
        read_scores(tmp_path / "scores", read_trials(tmp_path / "trials"))


def test_mean_normalised_scores_match_a_plain_loop_and_a_known_answer(tmp_path):
    from cdsvae.eval.metrics.embeddings import write_vectors
    from cdsvae.eval.metrics.scoring import mean_embedding

    rng = np.random.default_rng(0)
    offset = np.full(8, 40.0)
    direction = {f"s{k}": rng.normal(size=8) for k in range(5)}
    utt2spk = {f"s{k}_u{u}": f"s{k}" for k in range(5) for u in range(4)}
    test = {u: offset + direction[s] + 0.6 * rng.normal(size=8) for u, s in utt2spk.items()}
    train = {f"t{k}": offset + rng.normal(size=8) for k in range(50)}
    write_vectors(tmp_path / "test", "s", test)
    write_vectors(tmp_path / "train", "s", train)

    mean, n = mean_embedding(tmp_path / "train" / "s.scp")
    assert n == 50 and np.allclose(mean, np.mean(list(train.values()), axis=0), atol=1e-5)
    trials = all_pairs_trials(utt2spk)
    raw = score_trials(tmp_path / "test" / "s.scp", trials)
    normed = score_trials(tmp_path / "test" / "s.scp", trials, mean)
    assert raw.min() > 0.99 and normed.min() < 0.0  # the shared offset no longer dominates every cosine
    stored = {u: np.asarray(v, dtype=np.float64) for u, v in kaldiio.load_scp(str(tmp_path / "test" / "s.scp")).items()}
    for k, (e, t, _) in enumerate(trials.pairs()):
        a, b = stored[e] - mean, stored[t] - mean
        assert normed[k] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-12)
    with pytest.raises(UserError, match="dimension 8, the mean to subtract has 3"):
        score_trials(tmp_path / "test" / "s.scp", trials, np.zeros(3))

    # known answer: around the mean (1, 1), (2, 1) and (1, 2) are orthogonal; raw, their cosine is 0.8
    write_vectors(tmp_path / "two", "s", {"a_1": np.array([2.0, 1.0]), "b_1": np.array([1.0, 2.0])})
    pair = all_pairs_trials({"a_1": "a", "b_1": "b"})
    assert score_trials(tmp_path / "two" / "s.scp", pair)[0] == pytest.approx(0.8)
    assert score_trials(tmp_path / "two" / "s.scp", pair, np.ones(2))[0] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("block_rows", [1, 4, 2048])
def test_trials_sorted_by_enrolment_match_brute_force(block_rows):
    """All-pairs lists come sorted by enrolment row and take the path without argsort."""
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(11, 5))
    enroll, test = np.triu_indices(11, k=1)
    got = cosine_scores(emb, enroll, test, block_rows=block_rows)
    np.testing.assert_allclose(got, brute_force_cosine(emb.tolist(), enroll, test), rtol=1e-10, atol=1e-12)
    repeated = np.repeat(np.arange(11), 3)  # ties in the enrolment rows, test rows in any order
    test = rng.integers(0, 11, size=repeated.size)
    got = cosine_scores(emb, repeated, test, block_rows=block_rows)
    np.testing.assert_allclose(got, brute_force_cosine(emb.tolist(), repeated, test), rtol=1e-10, atol=1e-12)
