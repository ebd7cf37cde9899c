"""Log-mel features: a plain numpy twin of Kaldi's fbank, audio reading errors, writing, CMVN."""

import math

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from cdsvae.errors import UserError
from cdsvae.features import (FBANK_DEFAULTS, CMVNStats, FeatureWriter, compute_fbank, cut_segment, fbank_from_audio,
                             load_fbank_config, match_num_frames, num_frames, read_audio)


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


def test_read_audio_wav_sphere_and_pipe(tmp_path, noise):
    wav = tmp_path / "a.wav"
    sph = tmp_path / "a.sph"
    sf.write(wav, noise, 16000, subtype="PCM_16")
    sf.write(sph, noise, 16000, format="NIST", subtype="PCM_16")
    assert open(sph, "rb").read(7) == b"NIST_1A"
    for spec in (str(wav), str(sph), f"cat {wav} |"):
        x, sr = read_audio(spec)
        assert sr == 16000 and x.dtype == np.float32
        np.testing.assert_allclose(x, noise, atol=1 / 32768)


def test_read_audio_errors_name_the_file(tmp_path, noise):
    wav = tmp_path / "good.wav"
    sf.write(wav, noise, 16000, subtype="PCM_16")
    data = wav.read_bytes()
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "trunc.wav").write_bytes(data[:-1000])
    (tmp_path / "junk.wav").write_bytes(b"\x01\x02garbage" * 50)
    (tmp_path / "badriff.wav").write_bytes(b"RIFF\x00\x10\x00\x00WAVE" + b"\x01\x02garbage" * 50)
    sf.write(tmp_path / "full.sph", noise, 16000, format="NIST", subtype="PCM_16")
    (tmp_path / "trunc.sph").write_bytes((tmp_path / "full.sph").read_bytes()[:-1000])
    sf.write(tmp_path / "stereo.wav", np.stack([noise, noise], 1), 16000)
    cases = {
        "missing.wav": "not found", "empty.wav": "empty", "trunc.wav": "truncated", "trunc.sph": "truncated",
        "junk.wav": "unknown audio format", "badriff.wav": "cannot decode", "stereo.wav": "mono",
    }
    for name, why in cases.items():
        with pytest.raises(UserError, match=why) as e:
            read_audio(str(tmp_path / name), "spk1-utt1")
        assert name in str(e.value) and "spk1-utt1" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="exit status 3.*spk1-utt1"):
        read_audio("sh -c 'exit 3' |", "spk1-utt1")
    with pytest.raises(UserError, match="empty audio from command"):
        read_audio("true |", "spk1-utt1")


def test_format_comes_from_the_header_not_the_name(tmp_path, noise):
    from cdsvae.features import AudioInfo, audio_file_info

    files = {"riff.WAV": "WAV", "riff.sph": "WAV", "sphere.wav": "NIST", "sphere.WAV.wav": "NIST", "flac.wav": "FLAC"}
    pcm = np.round(noise * 32767).astype(np.int16)  # integer samples: every format stores them exactly
    for name, fmt in files.items():
        sf.write(tmp_path / name, pcm, 16000, format=fmt, subtype="PCM_16")
    want, _ = read_audio(str(tmp_path / "sphere.WAV.wav"))
    for name, fmt in files.items():
        info = audio_file_info(tmp_path / name)
        assert info == AudioInfo({"WAV": "wav", "NIST": "sphere", "FLAC": "flac"}[fmt], 16000, noise.size, 1)
        np.testing.assert_array_equal(read_audio(str(tmp_path / name))[0], want)


def test_unknown_header_is_one_line_naming_the_file(tmp_path, noise):
    from cdsvae.features import audio_file_info

    sf.write(tmp_path / "a.wav", noise, 16000, subtype="PCM_16")
    sf.write(tmp_path / "a.aiff", noise, 16000, subtype="PCM_16")  # libsndfile reads AIFF, this reader does not
    (tmp_path / "SX1.WAV").write_bytes(b"0 1234 Text in the place of audio.\n" * 20)
    for name in ("a.aiff", "SX1.WAV"):
        for read in (audio_file_info, lambda p: read_audio(str(p))):
            with pytest.raises(UserError, match="unknown audio format .*expected NIST SPHERE") as e:
                read(tmp_path / name)
            assert str(e.value).endswith(str(tmp_path / name)) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="truncated audio file: header declares 4000 samples, found 3500"):
        (tmp_path / "t.wav").write_bytes((tmp_path / "a.wav").read_bytes()[:-1000])
        audio_file_info(tmp_path / "t.wav")


def test_sample_rate_mismatch_and_resampling(tmp_path):
    t = np.arange(8000) / 8000
    sf.write(tmp_path / "low.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 8000)
    with pytest.raises(UserError, match="sample rate 8000 Hz, expected 16000 Hz.*low.wav"):
        fbank_from_audio(str(tmp_path / "low.wav"), load_fbank_config({}), "u1")
    feats = fbank_from_audio(str(tmp_path / "low.wav"), load_fbank_config({"resample": True}), "u1")
    assert feats.shape == (num_frames(16000, FBANK_DEFAULTS), 80)
    # a 300 Hz tone stays at 300 Hz: the strongest mel bin is the same as for a tone made at 16 kHz
    t16 = np.arange(16000) / 16000
    direct = compute_fbank((0.3 * np.sin(2 * np.pi * 300 * t16)).astype(np.float32), load_fbank_config({}))
    assert np.argmax(feats[50]) == np.argmax(direct[50])


def test_cut_segment():
    wave = np.arange(16000, dtype=np.float32)
    assert cut_segment(wave, 16000, 0.25, 0.5, "x").tolist() == list(range(4000, 8000))
    assert cut_segment(wave, 16000, 0.5, -1, "x").size == 8000
    with pytest.raises(UserError, match="outside"):
        cut_segment(wave, 16000, 0.5, 2.0, "rec1")


def test_feature_writer_roundtrip_and_atomicity(tmp_path):
    rng = np.random.default_rng(1)
    mats = {f"u{i}": rng.standard_normal((5 + i, 4)).astype(np.float32) for i in range(3)}
    with FeatureWriter(tmp_path / "f.ark", tmp_path / "f.scp", tmp_path / "u2n") as w:
        for k, v in mats.items():
            w.write(k, v)
    loaded = kaldiio.load_scp(str(tmp_path / "f.scp"))
    for k, v in mats.items():
        np.testing.assert_array_equal(loaded[k], v)
    assert (tmp_path / "u2n").read_text() == "u0 5\nu1 6\nu2 7\n"

    bad = np.ones((3, 4), dtype=np.float32)
    bad[1, 2] = np.inf
    with pytest.raises(UserError, match="non-finite.*frame 1.*u9"):
        with FeatureWriter(tmp_path / "g.ark", tmp_path / "g.scp") as w:
            w.write("u0", mats["u0"])
            w.write("u9", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.ark", "f.scp", "u2n"]


def test_cmvn_stats_against_a_loop(tmp_path):
    rng = np.random.default_rng(2)
    mats = [rng.normal(3.0, 2.0, (n, 6)).astype(np.float32) for n in (7, 1, 12)]
    stats = CMVNStats()
    for m in mats:
        stats.accumulate(m)
    # brute force: one frame at a time
    count, total, total_sq = 0, np.zeros(6), np.zeros(6)
    for m in mats:
        for frame in m.astype(np.float64):
            count += 1
            total += frame
            total_sq += frame * frame
    mean = total / count
    std = np.sqrt(total_sq / count - mean ** 2)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, std, rtol=1e-9)
    np.testing.assert_allclose(stats.std, np.concatenate(mats).std(0), rtol=1e-5)
    for name in ("cmvn.npz", "cmvn.ark"):
        stats.save(tmp_path / name)
        back = CMVNStats.load(tmp_path / name)
        assert back.count == 20
        np.testing.assert_allclose(back.mean, mean, rtol=1e-12)
        normed = back.apply(mats[0])
        np.testing.assert_allclose(normed, (mats[0] - mean) / std, rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError, match="not found"):
        CMVNStats.load(tmp_path / "nope.npz")


def test_match_num_frames():
    feats = np.arange(12, dtype=np.float32).reshape(6, 2)
    assert match_num_frames(feats, 6, "u").shape == (6, 2)
    np.testing.assert_array_equal(match_num_frames(feats, 5, "u"), feats[:5])
    np.testing.assert_array_equal(match_num_frames(feats, 7, "u")[-1], feats[-1])
    with pytest.raises(UserError, match="8 were expected.*u"):
        match_num_frames(feats, 8, "u")
