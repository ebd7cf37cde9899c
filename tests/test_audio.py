"""Reading audio: formats told by their headers, SPHERE headers, errors naming the file, segments, resampling."""

import numpy as np
import pytest
import soundfile as sf

from cdsvae.audio import (AudioInfo, audio_file_info, cut_segment, read_audio, read_sphere_header,
                          read_utterances)
from cdsvae.fbank import FBANK_DEFAULTS, compute_fbank, fbank_from_audio, load_fbank_config, num_frames
from cdsvae.io import UserError


@pytest.fixture
def noise():
    rng = np.random.default_rng(0)
    t = np.arange(4000) / 16000
    return (0.05 * rng.standard_normal(4000) + 0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


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
        "junk.wav": "unknown audio format", "badriff.wav": "cannot decode", "stereo.wav": "has 2 channels",
    }
    for name, why in cases.items():
        with pytest.raises(UserError, match=why) as e:
            read_audio(str(tmp_path / name), "spk1-utt1", channel=2)
        assert name in str(e.value) and "spk1-utt1" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="exit status 3.*spk1-utt1"):
        read_audio("sh -c 'exit 3' |", "spk1-utt1")
    with pytest.raises(UserError, match="empty audio from command"):
        read_audio("true |", "spk1-utt1")


def test_several_channels_are_mixed_down_or_one_is_taken(tmp_path, noise):
    """Stereo audio (a file, a pipe, the segments of one recording) is the mean of its channels by
    default, or the channel asked for; a channel it lacks, or a bad channel name, is one line."""
    left, right = noise, np.roll(noise, 100) * 0.5
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    sf.write(tmp_path / "st.flac", np.stack([left, right], 1), 16000)
    mean = ((left.astype(np.float64) + right) / 2).astype(np.float32)
    for spec in (str(tmp_path / "st.wav"), f"cat {tmp_path / 'st.wav'} |"):
        np.testing.assert_allclose(read_audio(spec)[0], mean, atol=1e-7)
        np.testing.assert_array_equal(read_audio(spec, channel=0)[0], left)
        np.testing.assert_array_equal(read_audio(spec, channel="1")[0], right)
    np.testing.assert_allclose(read_audio(str(tmp_path / "st.flac"))[0], mean, atol=2 / 32768)
    got = list(read_utterances([("u1", str(tmp_path / "st.wav"), 0.0, 0.1), ("u2", str(tmp_path / "st.wav"), 0.1, 0.2)],
                               channel=1))
    np.testing.assert_array_equal(np.concatenate([w for _, _, w in got]), right[:3200])
    for bad in (-1, "left", 1.5, True):
        with pytest.raises(UserError, match="channel must be 'mix'"):
            read_audio(str(tmp_path / "st.wav"), channel=bad)
    sf.write(tmp_path / "mono.wav", noise, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(read_audio(str(tmp_path / "mono.wav"), channel=0)[0], noise)
    with pytest.raises(UserError, match=r"channel 1 asked for, the audio has 1 channel .*mono.wav \(utterance u\)"):
        read_audio(str(tmp_path / "mono.wav"), "u", channel=1)


def test_fbank_config_channel_reads_stereo_44k_as_the_mono_mix_at_16k(tmp_path, noise):
    """The feature stage's audio rules: fbank.yaml's channel (default mix) and resample."""
    rate = 44100
    t = np.arange(rate // 2) / rate
    left = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    right = (0.3 * np.sin(2 * np.pi * 700 * t)).astype(np.float32)
    sf.write(tmp_path / "st44.wav", np.stack([left, right], 1), rate, subtype="FLOAT")
    sf.write(tmp_path / "mix44.wav", (left + right) / 2, rate, subtype="FLOAT")
    sf.write(tmp_path / "right44.wav", right, rate, subtype="FLOAT")
    cfg = load_fbank_config({"resample": True})
    assert cfg["channel"] == "mix" and load_fbank_config({"channel": "1"})["channel"] == 1
    np.testing.assert_allclose(fbank_from_audio(str(tmp_path / "st44.wav"), cfg),
                               fbank_from_audio(str(tmp_path / "mix44.wav"), cfg), atol=1e-3)
    right_cfg = load_fbank_config({"resample": True, "channel": 1})
    np.testing.assert_array_equal(fbank_from_audio(str(tmp_path / "st44.wav"), right_cfg),
                                  fbank_from_audio(str(tmp_path / "right44.wav"), cfg))
    with pytest.raises(UserError, match="sample rate 44100 Hz, expected 16000 Hz"):
        fbank_from_audio(str(tmp_path / "st44.wav"), load_fbank_config({}))
    with pytest.raises(UserError, match="fbank config: channel must be 'mix'"):
        load_fbank_config({"channel": "both"})


def test_format_comes_from_the_header_not_the_name(tmp_path, noise):
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


def test_sphere_header_known_answer(tmp_path):
    """A hand-written LDC-style header, and one written by libsndfile."""
    body = np.arange(100, dtype="<i2").tobytes()
    fields = ("database_id -s5 TIMIT\nsample_count -i 100\nsample_rate -i 16000\nchannel_count -i 1\n"
              "sample_byte_format -s2 01\nsample_n_bytes -i 2\nsample_sig_bits -i 16\nend_head\n")
    header = f"NIST_1A\n   1024\n{fields}".encode().ljust(1024, b" ")
    (tmp_path / "a.wav").write_bytes(header + body)
    h = read_sphere_header(tmp_path / "a.wav")
    assert (h["sample_count"], h["sample_rate"], h["database_id"], h["header_size"]) == (100, 16000, "TIMIT", 1024)
    audio, rate = sf.read(tmp_path / "a.wav", dtype="int16")
    assert rate == 16000 and audio.tolist() == list(range(100))
    assert audio_file_info(tmp_path / "a.wav") == AudioInfo("sphere", 16000, 100, 1)

    signal = np.round(np.random.default_rng(0).normal(0, 0.1, 777).clip(-1, 1) * 32767).astype(np.int16)
    sf.write(tmp_path / "b.wav", signal, 16000, format="NIST", subtype="PCM_16")
    h = read_sphere_header(tmp_path / "b.wav")
    assert (h["sample_count"], h["sample_rate"]) == (777, 16000)

    (tmp_path / "d.wav").write_bytes(b"")
    with pytest.raises(UserError, match="d.wav: empty file"):
        read_sphere_header(tmp_path / "d.wav")
    (tmp_path / "e.wav").write_bytes(b"RIFF" + bytes(2000))
    with pytest.raises(UserError, match="not a NIST SPHERE file"):
        read_sphere_header(tmp_path / "e.wav")
    (tmp_path / "f.wav").write_bytes(header[:-1000] + body)
    with pytest.raises(UserError, match="f.wav: SPHERE header has no end_head"):
        read_sphere_header(tmp_path / "f.wav")
    (tmp_path / "g.wav").write_bytes(header + body[:-10])
    with pytest.raises(UserError, match="g.wav: truncated: 1214 bytes, header announces 1224"):
        read_sphere_header(tmp_path / "g.wav")
    (tmp_path / "h.wav").write_bytes(header.replace(b"sample_count -i 100", b"sample_count -i 1x0") + body)
    with pytest.raises(UserError, match="h.wav: bad SPHERE header field 'sample_count -i 1x0'"):
        read_sphere_header(tmp_path / "h.wav")


def test_segments_resampling_and_the_reader_of_many_utterances(tmp_path, noise):
    """read_audio cuts and resamples; read_utterances gives the same samples and yields errors instead of raising."""
    sf.write(tmp_path / "rec.wav", noise, 16000, subtype="PCM_16")
    sf.write(tmp_path / "low.wav", noise[:2000], 8000, subtype="PCM_16")
    whole, rate = read_audio(str(tmp_path / "rec.wav"))
    part, rate2 = read_audio(str(tmp_path / "rec.wav"), "u1", 0.05, 0.2)
    assert rate == rate2 == 16000
    np.testing.assert_array_equal(part, whole[800:3200])
    up, rate = read_audio(str(tmp_path / "low.wav"), "u3", sample_rate=16000, resample=True)
    assert rate == 16000 and up.size == 4000
    with pytest.raises(UserError, match="sample rate 8000 Hz, expected 16000 Hz.*low.wav \\(utterance u3\\)"):
        read_audio(str(tmp_path / "low.wav"), "u3", sample_rate=16000)

    items = [("u1", str(tmp_path / "rec.wav"), 0.05, 0.2), ("u2", str(tmp_path / "rec.wav"), 0.2, -1),
             ("u3", str(tmp_path / "low.wav"), None, None), ("u4", str(tmp_path / "gone.wav"), None, None),
             ("u5", str(tmp_path / "rec.wav"), 0.2, 9.0)]
    got = list(read_utterances(items, 16000))
    assert [(utt, what) for utt, what, _ in got] == [(u, f"{spec} (utterance {u})") for u, spec, _, _ in items]
    np.testing.assert_array_equal(got[0][2], part)
    np.testing.assert_array_equal(got[1][2], whole[3200:])
    assert "sample rate 8000 Hz" in str(got[2][2]) and "not found" in str(got[3][2])
    assert "lies outside" in str(got[4][2]) and all(isinstance(got[k][2], UserError) for k in (2, 3, 4))
    np.testing.assert_array_equal(next(read_utterances(items[2:3], 16000, resample=True))[2], up)
