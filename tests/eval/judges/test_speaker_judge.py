"""The speaker judge: training learns synthetic speakers, resuming is exact, judge.pt is plain and
checked, batching changes nothing, and a speechbrain model directory loads offline."""

import numpy as np
import pytest
import torch

from _speechbrain import HPARAMS
from cdsvae.data.feats import CMVNStats
from cdsvae.eval.judges.speaker import (
    SpeakerJudge,
    SpeakerJudgeConfig,
    SpeechBrainSpeakerJudge,
    embed_feature_dir,
    load_speaker_judge,
    train_speaker_judge,
)
from cdsvae.eval.metrics.eer import compute_eer
from cdsvae.io import UserError

N_SPK, N_TRAIN, N_TEST = 6, 8, 4
TINY = dict(channels=[32, 32, 32, 32, 96], attention_channels=16, se_channels=16, res2net_scale=4,
            lin_neurons=32, batch_size=8, crop_frames=60, lr=3e-3, lr_decay=0.9)


def synthetic_speakers(seed=0):
    """Log-mel-like matrices: a smooth spectral envelope per speaker, plus a smooth 'content'
    pattern that changes over time and per utterance, plus frame noise."""
    rng = np.random.default_rng(seed)
    bins = np.arange(80)

    def smooth(n, scale):
        knots = rng.normal(0, scale, (n, 9))
        return np.stack([np.interp(bins, np.linspace(0, 79, 9), k) for k in knots])

    envelopes = smooth(N_SPK, 1.0)
    feats, utt2spk = {}, {}
    for s in range(N_SPK):
        for u in range(N_TRAIN + N_TEST):
            t = int(rng.integers(40, 120))
            content = smooth(4, 1.0)[rng.integers(0, 4, t)]
            mat = -2.0 + envelopes[s] + content + rng.normal(0, 0.5, (t, 80))
            utt = f"spk{s}-u{u:02d}"
            feats[utt], utt2spk[utt] = mat.astype(np.float32), f"spk{s}"
    return feats, utt2spk


def split(feats):
    train = {u: m for u, m in feats.items() if int(u[-2:]) < N_TRAIN}
    test = {u: m for u, m in feats.items() if int(u[-2:]) >= N_TRAIN}
    return train, test


def cmvn_of(feats):
    stats = CMVNStats()
    for m in feats.values():
        stats.accumulate(m)
    return stats


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny: thread hand-offs would cost more than the arithmetic."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    feats, utt2spk = synthetic_speakers()
    train, test = split(feats)
    return train, test, utt2spk, cmvn_of(train)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    train, _, utt2spk, cmvn = data
    workdir = tmp_path_factory.mktemp("judge")
    judge = train_speaker_judge(train, utt2spk, cmvn, SpeakerJudgeConfig(**TINY, epochs=4), workdir, progress=False)
    return judge, workdir


def cosine_eer(emb, spk):
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = e @ e.T
    iu = np.triu_indices(len(spk), 1)
    same = (spk[:, None] == spk[None, :])[iu]
    return compute_eer(sim[iu][same], sim[iu][~same])[0]


def test_training_learns_the_speakers(data, trained):
    _, test, utt2spk, _ = data
    judge, _ = trained
    hist = judge.history
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"], hist
    assert hist[-1]["accuracy"] > hist[0]["accuracy"] and hist[-1]["accuracy"] > 0.6, hist
    utts = sorted(test)
    emb = judge.embed([test[u] for u in utts])
    assert emb.shape == (len(utts), 32) and np.isfinite(emb).all()
    spk = np.array([utt2spk[u] for u in utts])
    eer = cosine_eer(emb, spk)
    assert eer < 0.15, eer
    # better than the time-averaged normalised features themselves
    cmvn = data[3]
    assert eer < cosine_eer(np.stack([cmvn.apply(test[u]).mean(0) for u in utts]), spk) - 0.05
    # a random network of the same shape is a poor judge of the same trials
    untrained = SpeakerJudge(SpeakerJudgeConfig(**TINY), *_random_ecapa(), judge.mean.numpy(), judge.std.numpy())
    assert cosine_eer(untrained.embed([test[u] for u in utts]), spk) > eer + 0.05


def _random_ecapa():
    from cdsvae.eval.judges.speaker import _build

    torch.manual_seed(123)
    ecapa, _ = _build(SpeakerJudgeConfig(**TINY), 80, N_SPK)
    return ecapa, [f"spk{s}" for s in range(N_SPK)]


def test_resume_after_an_interruption_gives_the_same_weights(data, trained, tmp_path):
    train, _, utt2spk, cmvn = data
    judge, _ = trained
    train_speaker_judge(train, utt2spk, cmvn, SpeakerJudgeConfig(**TINY, epochs=2), tmp_path, progress=False)
    resumed = train_speaker_judge(train, utt2spk, cmvn, SpeakerJudgeConfig(**TINY, epochs=4), tmp_path, progress=False)
    a, b = judge.ecapa.state_dict(), resumed.ecapa.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.history == judge.history
    # a checkpoint of another config is refused, not silently resumed
    with pytest.raises(UserError, match="checkpoint.pt: made with another config"):
        train_speaker_judge(train, utt2spk, cmvn, SpeakerJudgeConfig(**{**TINY, "margin": 0.3}, epochs=4),
                            tmp_path, progress=False)


def test_judge_file_is_plain_and_checked(data, trained, tmp_path):
    _, test, _, _ = data
    judge, workdir = trained
    state = torch.load(workdir / "judge.pt", weights_only=True)
    assert state["speakers"] == [f"spk{s}" for s in range(N_SPK)] and state["config"]["lin_neurons"] == 32
    loaded = load_speaker_judge(workdir / "judge.pt")
    mats = [test[u] for u in sorted(test)[:5]]
    np.testing.assert_array_equal(loaded.embed(mats), judge.embed(mats))
    assert loaded.history == judge.history and loaded.speakers == judge.speakers
    assert "ECAPA-TDNN" in loaded.name and "6 training speakers" in loaded.name
    bad = tmp_path / "judge.pt"
    bad.write_bytes((workdir / "judge.pt").read_bytes()[:1000])
    with pytest.raises(UserError, match=f"^{bad}: not a readable speaker judge") as e:
        SpeakerJudge.load(bad)
    assert "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty: not a speaker judge"):
        load_speaker_judge(tmp_path / "empty")


def test_batched_embedding_equals_one_at_a_time(data, trained):
    _, test, _, _ = data
    judge, _ = trained
    mats = [test[u] for u in sorted(test)]
    mats.append(mats[0].copy())  # two equal lengths share a batch
    mats.append(mats[1][:30].copy())
    batched = judge.embed(mats, batch_size=4)
    single = np.concatenate([judge.embed([m]) for m in mats])
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="input 0 has 3 frames"):
        judge.embed([mats[0][:3]])


def test_embed_feature_dir_reads_the_scp(data, trained, tmp_path):
    from cdsvae.data.datadir import write_scp
    from cdsvae.data.feats import FeatureWriter

    _, test, utt2spk, _ = data
    judge, _ = trained
    with FeatureWriter(tmp_path / "feats.ark", tmp_path / "feats.scp") as w:
        for u in sorted(test):
            w.write(u, test[u])
    write_scp(tmp_path / "utt2spk", {u: utt2spk[u] for u in test})
    got = embed_feature_dir(judge, tmp_path, utts=sorted(test)[:3])
    assert list(got) == sorted(test)[:3]
    np.testing.assert_allclose(np.stack(list(got.values())), judge.embed([test[u] for u in got]), atol=1e-6)




def test_speechbrain_model_directory_loads_offline_and_embeds_griffin_lim_audio(tmp_path):
    from _signals import harmonic_wave
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    from cdsvae.fbank import compute_fbank, load_fbank_config, logmel_to_waveform

    torch.manual_seed(7)
    ecapa = ECAPA_TDNN(80, channels=[16, 16, 16, 16, 48], attention_channels=8, se_channels=8,
                       res2net_scale=4, lin_neurons=24).eval()
    model_dir = tmp_path / "sb_model"
    model_dir.mkdir()
    (model_dir / "hyperparams.yaml").write_text(HPARAMS)
    torch.save(ecapa.state_dict(), model_dir / "embedding_model.ckpt")
    fbank_yaml = tmp_path / "fbank.yaml"
    fbank_yaml.write_text("sample_rate: 16000\n")
    cfg = load_fbank_config(fbank_yaml)
    mats = [compute_fbank(harmonic_wave(f0, 0.5, seed=i), cfg) for i, f0 in enumerate((120.0, 210.0))]

    judge = load_speaker_judge(model_dir, fbank_yaml, n_iter=4)
    assert isinstance(judge, SpeechBrainSpeakerJudge) and judge.sample_rate == 16000
    assert "Griffin-Lim" in judge.name
    got = judge.embed(mats)
    assert got.shape == (2, 24)
    with torch.no_grad():
        for mat, emb in zip(mats, got):
            wave = torch.from_numpy(logmel_to_waveform(mat, cfg, 4))[None]
            feats = InputNormalization(norm_type="sentence", std_norm=False)(Fbank(n_mels=80)(wave), torch.ones(1))
            np.testing.assert_allclose(emb, ecapa(feats).reshape(-1).numpy(), atol=1e-5, rtol=0)
    assert not np.allclose(got[0], got[1], atol=1e-3)
    # nothing was written into the model directory
    assert sorted(p.name for p in model_dir.iterdir()) == ["embedding_model.ckpt", "hyperparams.yaml"]


def test_speechbrain_model_at_another_rate_hears_resampled_audio_and_a_broken_one_is_refused(tmp_path):
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    torch.manual_seed(7)
    ecapa = ECAPA_TDNN(80, channels=[16, 16, 16, 16, 48], attention_channels=8, se_channels=8,
                       res2net_scale=4, lin_neurons=24)
    model_dir = tmp_path / "sb8k"
    model_dir.mkdir()
    hparams = HPARAMS.replace("n_mels: 80\n", "n_mels: 80\nsample_rate: 8000\n").replace(
        "    n_mels: !ref <n_mels>\nmean", "    n_mels: !ref <n_mels>\n    sample_rate: !ref <sample_rate>\nmean")
    (model_dir / "hyperparams.yaml").write_text(hparams)
    torch.save(ecapa.state_dict(), model_dir / "embedding_model.ckpt")
    judge = load_speaker_judge(model_dir, None, n_iter=2)
    assert judge.sample_rate == 8000
    mat = np.random.default_rng(0).normal(-3, 1, (50, 80)).astype(np.float32)
    from cdsvae.fbank import logmel_to_waveform

    at_16k = logmel_to_waveform(mat, None, 2)
    assert at_16k.size > 0 and judge.waveform(mat).size == at_16k.size // 2
    assert judge.embed([mat]).shape == (1, 24)
    (model_dir / "embedding_model.ckpt").unlink()
    with pytest.raises(UserError, match="hyperparams.yaml: cannot load the speechbrain speaker model") as e:
        load_speaker_judge(model_dir, None)
    assert "\n" not in str(e.value)


def test_resume_needs_no_rng_state_even_with_random_layers(data, tmp_path, monkeypatch):
    """A GPU run's checkpoint holds no device RNG state, so resuming must not depend on one: with
    a dropout layer in the judge (random on every step), 2 + 2 epochs equal 4 epochs at once,
    whatever the global generators hold when the run is resumed."""
    import cdsvae.eval.judges.speaker as sj

    build = sj._build

    def with_dropout(cfg, input_size, n_speakers):
        ecapa, classifier = build(cfg, input_size, n_speakers)
        return _DropoutFirst(ecapa), classifier

    monkeypatch.setattr(sj, "_build", with_dropout)
    train, _, utt2spk, cmvn = data
    whole = train_speaker_judge(train, utt2spk, cmvn, SpeakerJudgeConfig(**TINY, epochs=4), tmp_path / "whole",
                                progress=False)
    train_speaker_judge(train, utt2spk, cmvn, SpeakerJudgeConfig(**TINY, epochs=2), tmp_path / "split",
                        progress=False)
    state = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert not [k for k in state if "rng" in k]
    torch.manual_seed(999)  # another global state than the interrupted run left
    resumed = train_speaker_judge(train, utt2spk, cmvn, SpeakerJudgeConfig(**TINY, epochs=4), tmp_path / "split",
                                  progress=False)
    a, b = whole.ecapa.state_dict(), resumed.ecapa.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history == whole.history


class _DropoutFirst(torch.nn.Module):
    """ECAPA with dropout on its input frames: a layer that draws random numbers every step."""

    def __init__(self, ecapa):
        super().__init__()
        self.ecapa, self.drop = ecapa, torch.nn.Dropout(0.3)

    def forward(self, x, lengths=None):
        return self.ecapa(self.drop(x), lengths)
