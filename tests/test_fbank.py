"""Log-mel filterbanks: a plain numpy twin of Kaldi's fbank, options, frame counts, and the inverse."""

import math
import re

import numpy as np
import pytest

from _signals import harmonic_wave
from cdsvae.fbank import FBANK_DEFAULTS, compute_fbank, fft_size, load_fbank_config, logmel_to_waveform, num_frames
from cdsvae.io import UserError


def kaldi_fbank_twin(wave, sr=16000, n_mels=80, win_ms=25.0, hop_ms=10.0, n_fft=None, fmin=20.0, fmax=None,
                     floor=1.1920929e-07):
    """Kaldi's compute-fbank-feats written out frame by frame (povey window, DC removal, pre-emphasis)."""
    x = np.asarray(wave, dtype=np.float64) * 32768.0
    win, hop = int(sr * win_ms / 1000), int(sr * hop_ms / 1000)
    n_fft = n_fft or 1 << (win - 1).bit_length()
    fmax = fmax or sr / 2
    n = 1 + (len(x) - win) // hop

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(fmin), mel(fmax)
    delta = (hi - lo) / (n_mels + 1)
    bank = np.zeros((n_mels, n_fft // 2 + 1))
    for b in range(n_mels):
        left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        for i in range(n_fft // 2):  # Kaldi leaves the Nyquist bin out
            m = mel(i * sr / n_fft)
            if left < m < right:
                bank[b, i] = (m - left) / (centre - left) if m <= centre else (right - m) / (right - centre)
    window = np.array([(0.5 - 0.5 * math.cos(2 * math.pi * j / (win - 1))) ** 0.85 for j in range(win)])
    out = np.zeros((n, n_mels))
    for t in range(n):
        frame = x[t * hop:t * hop + win].copy()
        frame -= frame.mean()
        pre = frame.copy()
        pre[1:] = frame[1:] - 0.97 * frame[:-1]
        pre[0] = frame[0] - 0.97 * frame[0]
        spec = np.abs(np.fft.rfft(pre * window, n_fft)) ** 2
        out[t] = np.log(np.maximum(bank @ spec, floor))
    return out


@pytest.fixture
def noise():
    rng = np.random.default_rng(0)
    t = np.arange(4000) / 16000
    return (0.05 * rng.standard_normal(4000) + 0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("overrides, twin", [
    ({}, {}),
    ({"n_fft": 400, "fmax": 7000.0, "n_mels": 40}, {"n_fft": 400, "fmax": 7000.0, "n_mels": 40}),
    ({"frame_length_ms": 20.0, "frame_shift_ms": 5.0, "fmin": 0.0, "log_floor": 1.0},
     {"win_ms": 20.0, "hop_ms": 5.0, "fmin": 0.0, "floor": 1.0}),
])
def test_fbank_matches_plain_kaldi_twin(noise, overrides, twin):
    cfg = load_fbank_config(overrides)
    got = compute_fbank(noise, cfg)
    ref = kaldi_fbank_twin(noise, **twin)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-4)


def test_log_floor_on_silence():
    cfg = load_fbank_config({"log_floor": 1e-3})
    feats = compute_fbank(np.zeros(1600, dtype=np.float32), cfg)
    assert feats.shape == (8, 80) and np.all(feats == np.float32(math.log(1e-3)))


@pytest.mark.parametrize("n", [400, 401, 559, 560, 16000])
def test_frame_count_formula(n):
    cfg = load_fbank_config({})
    assert num_frames(n, cfg) == 1 + (n - 400) // 160
    assert compute_fbank(np.ones(n, dtype=np.float32) * 0.1, cfg).shape[0] == num_frames(n, cfg)


def test_too_short_and_nan_audio():
    cfg = load_fbank_config({})
    with pytest.raises(UserError, match="too short.*utt9"):
        compute_fbank(np.zeros(399, dtype=np.float32), cfg, "utt9")
    wave = np.zeros(800, dtype=np.float32)
    wave[5] = np.nan
    with pytest.raises(UserError, match="NaN"):
        compute_fbank(wave, cfg, "utt9")


def test_config_validation(tmp_path):
    with pytest.raises(UserError, match="unknown key.*n_mel\\b.*valid keys"):
        load_fbank_config({"n_mel": 40})
    with pytest.raises(UserError, match="n_fft must be 512"):
        load_fbank_config({"n_fft": 1024})
    with pytest.raises(UserError, match="fmax"):
        load_fbank_config({"fmax": 9000})
    path = tmp_path / "fbank.yaml"
    path.write_text("n_mels: 40\nresample: true\n")
    cfg = load_fbank_config(path)
    assert cfg["n_mels"] == 40 and cfg["resample"] and set(cfg) == set(FBANK_DEFAULTS)
    path.write_text("n_mels: [\n")
    with pytest.raises(UserError, match=str(path)):
        load_fbank_config(path)
    # a value of the wrong type is one line naming the file and key, not a traceback
    for text, message in (("n_mels: eighty\n", "'fbank.n_mels' must be a number, got 'eighty'"),
                          ("frame_shift_ms: [10]\n", "'fbank.frame_shift_ms' must be a number"),
                          ("resample: 3\n", "'fbank.resample' must be true or false, got 3"),
                          ("- 40\n", "expected a mapping of fbank options, got list")):
        path.write_text(text)
        with pytest.raises(UserError, match=f"^{path}: {re.escape(message)}") as e:
            load_fbank_config(path)
        assert "\n" not in str(e.value)


def test_fft_size_rule():
    """The window rounded up to a power of two, unless n_fft is the window itself; both directions use it."""
    assert fft_size(load_fbank_config({})) == 512
    assert fft_size(load_fbank_config({"n_fft": 512})) == 512
    assert fft_size(load_fbank_config({"n_fft": 400})) == 400
    assert fft_size(load_fbank_config({"frame_length_ms": 32.0})) == 512  # a window of 512 stays 512
    assert fft_size(load_fbank_config({"sample_rate": 8000, "frame_length_ms": 20.0})) == 256
    with pytest.raises(UserError, match="n_fft must be 256 .* or 160"):
        load_fbank_config({"sample_rate": 8000, "frame_length_ms": 20.0, "n_fft": 512})


def test_iter_fbank_gives_features_or_the_error(tmp_path, noise):
    import soundfile as sf

    from cdsvae.fbank import fbank_from_audio, iter_fbank

    sf.write(tmp_path / "rec.wav", noise, 16000, subtype="PCM_16")
    cfg = load_fbank_config({"n_mels": 40})
    rec = str(tmp_path / "rec.wav")
    items = [("a", rec, 0.0, 0.15), ("b", rec, 0.15, -1), ("c", rec, 0.24, -1), ("d", rec, None, None)]
    got = dict(iter_fbank(items, cfg))
    assert list(got) == ["a", "b", "c", "d"]
    for utt, spec, start, end in (items[0], items[1], items[3]):
        np.testing.assert_array_equal(got[utt], fbank_from_audio(spec, cfg, utt, start, end))
    assert isinstance(got["c"], UserError) and "too short" in str(got["c"]) and "(utterance c)" in str(got["c"])


def frame_shape_correlation(a, b):
    """Mean over frames of the correlation of the spectral shapes (level removed)."""
    n = min(len(a), len(b))
    a = a[:n] - a[:n].mean(axis=1, keepdims=True)
    b = b[:n] - b[:n].mean(axis=1, keepdims=True)
    return float(np.mean((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))))


@pytest.mark.parametrize("n_fft", [None, 400])
def test_logmel_inversion_gives_back_the_features(n_fft):
    cfg = load_fbank_config({"n_mels": 40, "n_fft": n_fft})
    feats = compute_fbank(harmonic_wave(130.0), cfg)
    wave = logmel_to_waveform(feats, cfg, n_iter=16)
    assert wave.dtype == np.float32 and np.isfinite(wave).all() and 0.5 < np.abs(wave).max() <= 0.9 + 1e-6
    again = compute_fbank(wave, cfg)
    assert abs(len(again) - len(feats)) <= 3
    noise = compute_fbank(np.random.default_rng(0).normal(size=16000).astype(np.float32) * 0.1, cfg)
    # measured: about 0.98 for the inversion, below 0 for white noise
    assert frame_shape_correlation(feats, again) > 0.9
    assert frame_shape_correlation(feats, noise) < 0.3
    with pytest.raises(UserError, match="expected log-mel frames \\(T, 40\\)"):
        logmel_to_waveform(feats[:, :20], cfg)
