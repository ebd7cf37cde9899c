"""WORLD voice conversion: F0 really scaled, envelope warped the stated way, draws deterministic."""

import subprocess
import sys

import numpy as np
import pytest

from cdsvae.augment.world_vc import (VCConfig, allpass_warp, draw_conversion, load_vc_config, warp_envelope,
                                     world_analyze, world_convert, world_voice_conversion)
from cdsvae.io import UserError

SR = 16000


def harmonic(f0=140.0, seconds=1.0, n_harmonics=12):
    t = np.arange(int(SR * seconds)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, n_harmonics + 1))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def autocorr_f0(x, fmin=60.0, fmax=400.0):
    """F0 by autocorrelation of the middle of the signal, with parabolic peak interpolation."""
    x = np.asarray(x, dtype=np.float64)
    x = x[len(x) // 5: 4 * len(x) // 5]
    x = x - x.mean()
    r = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * len(x))) ** 2)[: len(x)]
    lo, hi = int(SR / fmax), int(SR / fmin)
    k = lo + int(np.argmax(r[lo:hi]))
    a, b, c = r[k - 1], r[k], r[k + 1]
    lag = k + 0.5 * (a - c) / (a - 2 * b + c)
    return SR / lag


def test_autocorr_estimator_itself():
    assert autocorr_f0(harmonic(140.0)) == pytest.approx(140.0, rel=0.005)


@pytest.mark.parametrize("scale", [0.8, 1.25])
def test_converted_audio_has_scaled_f0(scale):
    x = harmonic(140.0)
    y = world_voice_conversion(x, SR, f0_scale=scale, warp_alpha=0.05)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    before, after = autocorr_f0(x), autocorr_f0(y)
    assert after / before == pytest.approx(scale, rel=0.02)


def test_warp_alone_keeps_f0_and_conversion_is_deterministic():
    x = harmonic(180.0, seconds=0.5)
    a = world_voice_conversion(x, SR, f0_scale=1.0, warp_alpha=-0.06)
    b = world_voice_conversion(x, SR, f0_scale=1.0, warp_alpha=-0.06)
    np.testing.assert_array_equal(a, b)
    assert autocorr_f0(a) == pytest.approx(180.0, rel=0.02)


def test_analysis_reused_for_several_copies_matches_one_shot():
    x = harmonic(150.0, seconds=0.4)
    analysis = world_analyze(x, SR)
    np.testing.assert_array_equal(world_convert(analysis, 1.2, 0.03), world_voice_conversion(x, SR, 1.2, 0.03))


def test_allpass_map():
    w = np.linspace(0, np.pi, 101)
    for a in (-0.3, 0.07):
        phi = allpass_warp(w, a)
        assert phi[0] == 0 and phi[-1] == pytest.approx(np.pi)
        assert np.all(np.diff(phi) > 0)
        np.testing.assert_allclose(allpass_warp(phi, -a), w, atol=1e-12)  # phi_-a inverts phi_a


def warp_twin(sp, alpha):
    """Frame by frame with np.interp on the log envelope."""
    n = sp.shape[1]
    w = np.linspace(0, np.pi, n)
    src = allpass_warp(w, -alpha)
    out = np.empty_like(sp)
    for t in range(sp.shape[0]):
        out[t] = np.exp(np.interp(src, w, np.log(sp[t])))
    return out


@pytest.mark.parametrize("alpha", [-0.1, 0.0, 0.07])
def test_warp_envelope_matches_twin_and_moves_formants(alpha):
    n = 513
    bins = np.arange(n)
    rng = np.random.default_rng(0)
    peaks = rng.integers(60, 200, size=4)
    sp = np.stack([np.exp(-0.5 * ((bins - p) / 8.0) ** 2) + 1e-4 for p in peaks])
    warped = warp_envelope(sp, alpha)
    assert warped.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(warped, warp_twin(sp, alpha), rtol=1e-10)
    # the peak at source bin p lands where phi_alpha sends it: up for alpha > 0
    expected = allpass_warp(peaks / (n - 1) * np.pi, alpha) / np.pi * (n - 1)
    np.testing.assert_allclose(np.argmax(warped, axis=1), expected, atol=1.0)
    if alpha > 0:
        assert np.all(np.argmax(warped, axis=1) > peaks)


def test_draws_are_deterministic_and_in_range():
    a = draw_conversion("spk1-utt1", 1, seed=3)
    assert a == draw_conversion("spk1-utt1", 1, seed=3)
    assert a != draw_conversion("spk1-utt1", 2, seed=3)
    assert a != draw_conversion("spk1-utt1", 1, seed=4)
    assert a != draw_conversion("spk1-utt2", 1, seed=3)
    draws = np.array([draw_conversion(f"u{i}", 1, 0, (0.5, 2.0), (-0.1, 0.2)) for i in range(300)])
    assert draws[:, 0].min() >= 0.5 and draws[:, 0].max() <= 2.0
    assert draws[:, 1].min() >= -0.1 and draws[:, 1].max() <= 0.2
    # log-uniform F0 scale: half the draws below the geometric centre 1.0
    assert 0.4 < np.mean(draws[:, 0] < 1.0) < 0.6
    # independent of the process (Python's hash() would differ with the hash seed)
    code = "from cdsvae.augment.world_vc import draw_conversion; print(repr(draw_conversion('spk1-utt1', 1, 3)))"
    for hashseed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={"PYTHONHASHSEED": hashseed, "PATH": "/usr/bin:/bin"}, check=True).stdout
        assert out.strip() == repr(a)


def test_bad_parameters():
    x = harmonic(seconds=0.2)
    with pytest.raises(UserError, match="f0_scale"):
        world_voice_conversion(x, SR, 0.0, 0.0)
    with pytest.raises(UserError, match="warp_alpha"):
        world_voice_conversion(x, SR, 1.0, 1.5)
    with pytest.raises(UserError, match="f0_method"):
        world_voice_conversion(x, SR, 1.0, 0.0, f0_method="yin")
    with pytest.raises(UserError, match="f0_scale_range"):
        draw_conversion("u", 1, 0, (0.0, 1.0))


def test_vc_config_defaults_and_overrides(tmp_path):
    assert load_vc_config() == VCConfig() == load_vc_config({})
    assert VCConfig().as_dict() == {"num_copies": 2, "seed": 1, "f0_scale_range": [0.7, 1.45],
                                    "warp_range": [-0.07, 0.07], "f0_method": "dio", "frame_period": 5.0,
                                    "f0_floor": 71.0, "f0_ceil": 800.0}
    path = tmp_path / "vc.yaml"
    path.write_text("frame_period: 10\nf0_scale_range: [0.8, 1.2]\nf0_method: harvest\n")
    cfg = load_vc_config(path)
    assert cfg == VCConfig(frame_period=10.0, f0_scale_range=(0.8, 1.2), f0_method="harvest")
    assert isinstance(cfg.frame_period, float)
    path.write_text("")
    assert load_vc_config(path) == VCConfig()


@pytest.mark.parametrize("cfg, message", [
    ({"framePeriod": 5}, "unknown key 'vc.framePeriod'"),
    ({"num_copies": 1.5}, "'vc.num_copies' must be an integer"),
    ({"seed": True}, "'vc.seed' must be an integer"),
    ({"f0_scale_range": [0.7]}, "'vc.f0_scale_range' must be a list of 2 numbers"),
    ({"f0_scale_range": [1.4, 0.7]}, "f0_scale_range must satisfy"),
    ({"warp_range": [-0.1, 1.0]}, "warp_range must satisfy"),
    ({"f0_method": "yin"}, r"'vc.f0_method' must be one of dio\|harvest"),
    ({"frame_period": 0}, "frame_period must be positive"),
    ({"f0_floor": 500.0, "f0_ceil": 400.0}, "need 0 < f0_floor < f0_ceil"),
])
def test_vc_config_rejects_bad_keys_and_values(cfg, message):
    with pytest.raises(UserError, match=message):
        load_vc_config(cfg)


def test_vc_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "vc.yaml"
    path.write_text("num_copies: [1\n")
    with pytest.raises(UserError, match=f"^{path}:( line \\d+)?: invalid YAML: ") as e:
        load_vc_config(path)
    assert "\n" not in str(e.value)
    path.write_text("f0_ceil: 800\nf0_cieling: 900\n")
    with pytest.raises(UserError, match=f"^{path}: unknown key 'vc.f0_cieling'; valid keys in 'vc': f0_ceil, f0_floor, "):
        load_vc_config(path)
