"""The disentanglement protocol (cdsvae.eval.metrics.disentangle) on toy models whose answers are known:
a perfectly disentangled model scores perfectly, a model that ignores its inputs scores at chance."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cdsvae.eval.metrics.disentangle import SwapConfig, probe_inputs, run_probes, summarise_draws, swap_protocols
from cdsvae.eval.metrics.factors import Denormaliser, encode_factors

DS, V, L, HOLD = 8, 6, 6, 3
UNITS = [f"p{k}" for k in range(V)]


class PerfectModel(torch.nn.Module):
    """Frames are [speaker vector | one-hot unit]: s reads the first part, z the second, decode joins them."""

    s_dim, z_dim = DS, V

    def encode(self, x):
        return SimpleNamespace(s_mean=x[..., :DS].mean(dim=1), z_mean=x[..., DS:])

    def decode(self, s, z):
        return torch.cat([s[:, None, :].expand(-1, z.shape[1], -1), z], dim=-1)

    def sample_s(self, n, generator=None):
        return torch.randn(n, DS, generator=generator)

    def sample_z_prior(self, n, length, generator=None):
        ids = torch.randint(0, V, (n, length // HOLD + 1), generator=generator).repeat_interleave(HOLD, dim=1)
        return torch.nn.functional.one_hot(ids[:, :length], V).float()


class IgnorantModel(PerfectModel):
    """Decodes noise whatever s and z are."""

    def decode(self, s, z):
        return torch.randn(z.shape[0], z.shape[1], DS + V)


class SpeakerJudge:
    def embed(self, mats):
        return np.stack([m[:, :DS].mean(axis=0) for m in mats])


class ContentJudge:
    def transcribe(self, mats):
        out = []
        for m in mats:
            ids = m[:, DS:].argmax(axis=1)
            out.append([UNITS[i] for k, i in enumerate(ids) if k == 0 or i != ids[k - 1]])
        return out


def corpus(n_spk=6, n_utt=4, seed=0):
    """Utterances of n_spk speakers, each a run of units held HOLD frames (no unit twice in a row)."""
    rng = np.random.default_rng(seed)
    mats, units, utt2spk = {}, {}, {}
    for s in range(n_spk):
        voice = rng.normal(size=DS)
        for k in range(n_utt):
            seq = [int(rng.integers(V))]
            while len(seq) < 8:
                nxt = int(rng.integers(V))
                if nxt != seq[-1]:
                    seq.append(nxt)
            ids = np.repeat(seq, HOLD)[: (len(seq) * HOLD // L) * L]
            onehot = np.eye(V, dtype=np.float32)[ids]
            spk = np.repeat((voice + 0.05 * rng.normal(size=DS))[None], len(ids), axis=0).astype(np.float32)
            utt = f"s{s}_u{k}"
            mats[utt] = np.concatenate([spk, onehot], axis=1)
            units[utt] = [UNITS[i] for n, i in enumerate(ids) if n == 0 or i != ids[n - 1]]
            utt2spk[utt] = f"s{s}"
    return mats, units, utt2spk


def run(model, cfg=SwapConfig(n_pairs=40, n_draws=3, seed=1)):
    mats, units, utt2spk = corpus()
    factors = encode_factors(model, mats.items(), L)
    ref = dict(zip(mats, SpeakerJudge().embed(list(mats.values()))))
    return swap_protocols(model, factors, mats, utt2spk, units, SpeakerJudge(), ContentJudge(), ref,
                          Denormaliser(None), cfg)


def test_perfect_model_scores_perfectly():
    res = run(PerfectModel())
    s = res["summary"]
    assert len(res["draws"]) == 3 and all(len(d["pairs"]) == 40 for d in res["draws"])
    assert s["swap"]["speaker"] == [1.0] * 3 and s["swap"]["content_error"] == [0.0] * 3
    assert s["random_z"]["speaker"] == [1.0] * 3 and min(s["random_z"]["content_error"]) > 0.5
    assert s["random_s"]["content_error"] == [0.0] * 3
    assert abs(np.mean(s["random_s"]["speaker"]) - 0.5) < 0.2  # a random voice: B's as often as A's
    assert s["reconstruction_b"]["content_error"] == [0.0] * 3 and s["input_b"]["content_error"] == [0.0] * 3
    assert s["input_a"]["speaker"] == [1.0] * 3 and s["reconstruction_b"]["speaker"] == [1.0] * 3
    assert res["draws"][0]["pairs"] != res["draws"][1]["pairs"]  # each draw takes other pairs
    assert run(PerfectModel())["summary"] == s  # a function of the seed


def test_without_a_content_judge_the_speaker_scores_are_the_same_and_no_content_is_recorded():
    """A corpus without transcripts: no content judge, no units; every speaker score is measured
    exactly as with the content judge."""
    mats, _, utt2spk = corpus()
    model, cfg = PerfectModel(), SwapConfig(n_pairs=40, n_draws=3, seed=1)
    factors = encode_factors(model, mats.items(), L)
    ref = dict(zip(mats, SpeakerJudge().embed(list(mats.values()))))
    res = swap_protocols(model, factors, mats, utt2spk, {}, SpeakerJudge(), None, ref, Denormaliser(None), cfg)
    full = run(model)["summary"]
    s = res["summary"]
    for name in ("swap", "random_s", "random_z", "input_a"):
        assert s[name] == {"speaker": full[name]["speaker"]}
    assert s["input_b"] == {} and s["reconstruction_b"] == {"speaker": full["reconstruction_b"]["speaker"]}
    assert all("content" not in d[v] for d in res["draws"] for v in ("swap", "random_s", "random_z"))


def test_model_that_ignores_its_inputs_scores_at_chance():
    s = run(IgnorantModel(), SwapConfig(n_pairs=200, n_draws=2, seed=0))["summary"]
    assert abs(np.mean(s["swap"]["speaker"]) - 0.5) < 0.1
    assert min(s["swap"]["content_error"]) > 0.5 and min(s["reconstruction_b"]["content_error"]) > 0.5
    # each B is reconstructed once per draw and judged against several A: correlated, so a wider band
    assert 0.25 < np.mean(s["reconstruction_b"]["speaker"]) < 0.75
    assert s["input_b"]["content_error"] == [0.0, 0.0]  # the judge itself still reads real audio


def test_summary_and_probe_inputs():
    draws = [{"swap": {"closer": 0.5, "content": {"rate": 0.25}}}, {"swap": {"closer": 1.0, "content": {"rate": 0.5}}}]
    assert summarise_draws(draws)["swap"] == {"speaker": [0.5, 1.0], "content_error": [0.25, 0.5]}
    mats, _, _ = corpus(2, 1)
    factors = encode_factors(PerfectModel(), mats.items(), L)
    z = probe_inputs(factors, "z")
    s = probe_inputs(factors, "s")
    for u, m in mats.items():
        np.testing.assert_array_equal(z[u], m[: z[u].shape[0], DS:])
        assert s[u].shape == (z[u].shape[0], DS) and np.allclose(s[u], m[0, :DS], atol=1e-6)
    with pytest.raises(ValueError):
        probe_inputs(factors, "x")


def test_probes_read_content_from_z_and_not_from_s(tmp_path):
    model = PerfectModel()
    train_mats, train_units, _ = corpus(n_spk=6, n_utt=4, seed=1)
    test_mats, test_units, _ = corpus(n_spk=4, n_utt=4, seed=2)
    train = encode_factors(model, train_mats.items(), L)
    test = encode_factors(model, test_mats.items(), L)
    cfg = {"hidden": 16, "layers": 1, "proj": 16, "frontend": "linear", "dropout": 0.0, "epochs": 12,
           "batch_size": 4, "lr": 2e-2, "seed": 0}
    res = run_probes(train, test, train_units, test_units, cfg, tmp_path)
    assert res["z"]["rate"] < 0.2, res["z"]
    assert res["s"]["rate"] > 0.6, res["s"]
    assert res["z"]["ref_units"] == res["s"]["ref_units"] == sum(len(u) for u in test_units.values())
    assert (tmp_path / "probe_z" / "model.pt").is_file() and (tmp_path / "probe_s" / "model.pt").is_file()
