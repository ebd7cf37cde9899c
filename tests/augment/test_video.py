"""Motion views: one transform per sequence, frame order kept, deterministic, equal to plain loops."""

import colorsys
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve1d

from cdsvae.augment.video import (
    MotionParams,
    MotionViewConfig,
    apply_motion_params,
    gaussian_kernels,
    hsv_to_rgb,
    motion_view,
    rgb_to_hsv,
    sample_motion_params,
)
from cdsvae.io import UserError

NO_NOISE = {"noise_std": (0.0, 0.0)}


def shifted_sequences(b=3, t=5, c=3, hw=16, seed=0):
    """Frame t is frame 0 rolled right by 2t pixels: a known motion."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, 1, c, hw, hw, generator=g)
    return torch.cat([torch.roll(base, shifts=2 * k, dims=-1) for k in range(t)], dim=1)


def strong_params(b, seed=0):
    """Every operation switched on with clearly non-identity values."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(b, 8, generator=g)
    return MotionParams(
        crop_scale=0.6 + 0.3 * u[:, 0], crop_x=0.2 * (u[:, 1] - 0.5), crop_y=0.2 * (u[:, 2] - 0.5),
        brightness=0.7 + 0.6 * u[:, 3], contrast=0.7 + 0.6 * u[:, 4], saturation=0.6 + 0.8 * u[:, 5],
        hue=0.2 * (u[:, 6] - 0.5), gray=torch.tensor([i % 3 == 2 for i in range(b)]),
        blur_sigma=0.5 + u[:, 7], noise_std=torch.full((b,), 0.03),
    )


def test_shape_range_dtype():
    x = shifted_sequences()
    y = motion_view(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.allclose(x, y)


def test_frame_order_kept_each_frame_transformed_alone():
    x = shifted_sequences()
    p = strong_params(3)
    y = apply_motion_params(x, p)
    for t in range(x.shape[1]):
        alone = apply_motion_params(x[:, t:t + 1], p)
        assert torch.allclose(y[:, t:t + 1], alone, atol=1e-5)


def test_reversing_frames_reverses_the_view():
    x = shifted_sequences()
    a = motion_view(x, torch.Generator().manual_seed(3), **NO_NOISE)
    b = motion_view(x.flip(1), torch.Generator().manual_seed(3), **NO_NOISE)
    assert torch.allclose(a.flip(1), b, atol=1e-6)


def test_parameters_shared_within_a_sequence_and_differ_across():
    frame = torch.rand(1, 1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x = frame.expand(4, 6, 3, 16, 16).contiguous()  # 4 copies of a still sequence
    y = motion_view(x, torch.Generator().manual_seed(5), p_jitter=1.0, **NO_NOISE)
    for b in range(4):
        for t in range(1, 6):
            assert torch.equal(y[b, t], y[b, 0])  # one transform for all frames
    for b in range(1, 4):
        assert (y[b] - y[0]).abs().max() > 1e-3  # another sequence, another transform
    p = sample_motion_params(64, torch.Generator().manual_seed(0))
    assert p.brightness.unique().numel() > 10 and p.crop_scale.unique().numel() > 10


def test_noise_level_shared_but_noise_differs_per_frame():
    x = torch.full((2, 3, 3, 16, 16), 0.5)
    y = motion_view(x, torch.Generator().manual_seed(0), crop_scale=(1.0, 1.0), p_jitter=0.0, p_gray=0.0,
                    p_blur=0.0, noise_std=(0.05, 0.05))
    assert not torch.equal(y[:, 0], y[:, 1])
    std = (y - 0.5).std(dim=(2, 3, 4))
    assert torch.allclose(std, torch.full_like(std, 0.05), rtol=0.2)


def test_deterministic_under_the_generator():
    x = shifted_sequences(b=4)
    a = motion_view(x, torch.Generator().manual_seed(7))
    b = motion_view(x, torch.Generator().manual_seed(7))
    c = motion_view(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_vectorised_equals_per_sequence_loop():
    x = shifted_sequences(b=5)
    p = strong_params(5)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    batch = apply_motion_params(x, p, noise)
    for b in range(5):
        one = apply_motion_params(x[b:b + 1], p.select(b), noise[b:b + 1])
        assert torch.allclose(batch[b:b + 1], one, atol=1e-6)


def test_identity_parameters_change_nothing():
    x = shifted_sequences()
    y = apply_motion_params(x, MotionParams.identity(3))
    assert torch.allclose(x, y, atol=1e-6)


def test_grayscale_sequences():
    x = shifted_sequences(c=1)
    y = motion_view(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1


# Plain per-pixel references of each operation.


def only(b, **kw):
    p = MotionParams.identity(b)
    for k, v in kw.items():
        setattr(p, k, torch.as_tensor(v, dtype=getattr(p, k).dtype).expand(b).clone())
    return p


def test_colour_jitter_against_colorsys():
    x = torch.rand(1, 2, 3, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b, c, s, h = 1.2, 0.8, 1.3, 0.07
    y = apply_motion_params(x, only(1, brightness=b, contrast=c, saturation=s, hue=h), blur_kernel=1)
    w = (0.299, 0.587, 0.114)
    for t in range(2):
        img = np.clip(x[0, t].numpy() * b, 0, 1)
        mean = sum(w[k] * img[k] for k in range(3)).mean()
        img = np.clip(c * img + (1 - c) * mean, 0, 1)
        gray = sum(w[k] * img[k] for k in range(3))
        img = np.clip(s * img + (1 - s) * gray, 0, 1)
        for i in range(5):
            for j in range(5):
                hh, ss, vv = colorsys.rgb_to_hsv(*img[:, i, j])
                want = colorsys.hsv_to_rgb((hh + h) % 1.0, ss, vv)
                assert np.allclose(y[0, t, :, i, j].numpy(), want, atol=1e-6)


def test_hsv_roundtrip_and_colorsys():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x[0, :, 0, 0] = torch.tensor([0.3, 0.3, 0.3])  # gray: hue 0
    x[0, :, 0, 1] = torch.tensor([0.8, 0.8, 0.1])  # a tie for the maximum
    hsv = rgb_to_hsv(x)
    for n in range(2):
        for i in range(4):
            for j in range(4):
                assert np.allclose(hsv[n, :, i, j].numpy(), colorsys.rgb_to_hsv(*x[n, :, i, j].tolist()), atol=1e-12)
    assert torch.allclose(hsv_to_rgb(hsv), x, atol=1e-12)


def test_grayscale_against_luma():
    x = torch.rand(1, 1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = apply_motion_params(x, only(1, gray=True), blur_kernel=1)
    want = 0.299 * x[0, 0, 0] + 0.587 * x[0, 0, 1] + 0.114 * x[0, 0, 2]
    for k in range(3):
        assert torch.allclose(y[0, 0, k], want, atol=1e-12)


def test_blur_against_scipy():
    x = torch.rand(2, 2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sig = torch.tensor([0.7, 1.6], dtype=torch.float64)
    y = apply_motion_params(x, only(2, blur_sigma=sig), blur_kernel=7)
    for b in range(2):
        k = np.exp(-0.5 * (np.arange(-3, 4) / sig[b].item()) ** 2)
        k /= k.sum()
        for t in range(2):
            # torch's "reflect" padding is scipy's "mirror" (the edge pixel is not repeated).
            want = convolve1d(convolve1d(x[b, t].numpy(), k, axis=2, mode="mirror"), k, axis=1, mode="mirror")
            assert np.allclose(y[b, t].numpy(), want, atol=1e-10)
    assert torch.allclose(gaussian_kernels(torch.tensor([0.0]), 5), torch.tensor([[0.0, 0, 1, 0, 0]]))


def test_crop_resize_against_bilinear_loop():
    hw = 8
    x = torch.rand(1, 1, 1, hw, hw, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    scale, cx, cy = 0.6, 0.2, -0.1
    y = apply_motion_params(x, only(1, crop_scale=scale, crop_x=cx, crop_y=cy), blur_kernel=1)
    img = x[0, 0, 0].numpy()
    for i in range(hw):
        for j in range(hw):
            # Output pixel centre in [-1, 1], mapped into the crop, then to input pixel coordinates.
            u = (2 * j + 1) / hw - 1
            v = (2 * i + 1) / hw - 1
            sx = ((scale * u + cx) + 1) * hw / 2 - 0.5
            sy = ((scale * v + cy) + 1) * hw / 2 - 0.5
            x0, y0 = math.floor(sx), math.floor(sy)
            fx, fy = sx - x0, sy - y0

            def px(r, c):
                return img[min(max(r, 0), hw - 1), min(max(c, 0), hw - 1)]

            want = ((1 - fy) * ((1 - fx) * px(y0, x0) + fx * px(y0, x0 + 1))
                    + fy * ((1 - fx) * px(y0 + 1, x0) + fx * px(y0 + 1, x0 + 1)))
            assert y[0, 0, 0, i, j].item() == pytest.approx(want, abs=1e-6)  # float32 parameters


def test_bad_input_and_options():
    with pytest.raises(UserError, match="B, T, C, H, W"):
        motion_view(torch.rand(3, 3, 8, 8), torch.Generator())
    with pytest.raises(UserError, match="motion view: unknown key 'motion_view.colour'; valid keys in 'motion_view': "):
        motion_view(torch.rand(1, 2, 3, 8, 8), torch.Generator(), colour=1)
    with pytest.raises(UserError, match="crop_scale"):
        MotionViewConfig(crop_scale=(0.0, 1.0))
