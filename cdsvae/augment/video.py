"""Motion views of video batches: appearance changes that leave the motion untouched.

The dynamic contrastive term compares z(x) with z(x_m), where x_m has the same motion as x but a
different look. Every sequence draws one set of parameters (colour jitter, grayscale, blur,
crop-and-resize, noise level) and all its frames get exactly that transform, so the frame order and
the motion between frames are kept while the appearance changes. Everything runs on the whole batch
(B, T, C, H, W) with torch ops; all randomness comes from the torch.Generator passed in.

Per-pixel statistics (the contrast reference) are taken per frame, so the transform of frame t
depends on frame t only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F

from cdsvae.config import Field, Section, check_section
from cdsvae.io import UserError

# ITU-R 601 luma weights, the usual RGB -> gray conversion.
_LUMA = (0.299, 0.587, 0.114)


# The options of a motion view (``augment.motion_view`` of a video experiment), declared once, here.
MOTION_VIEW = Section({
    "crop_scale": Field([0.7, 1.0], "floats", length=2),  # side of the crop, fraction of the frame side
    "p_jitter": Field(0.8, "float"),
    "brightness": Field(0.4, "float"),  # factor drawn in [1 - b, 1 + b]
    "contrast": Field(0.4, "float"),
    "saturation": Field(0.4, "float"),
    "hue": Field(0.1, "float"),  # shift drawn in [-h, h] turns of the colour wheel
    "p_gray": Field(0.2, "float"),
    "p_blur": Field(0.5, "float"),
    "blur_sigma": Field([0.1, 2.0], "floats", length=2),  # pixels
    "blur_kernel": Field(7, "int"),
    "noise_std": Field([0.0, 0.05], "floats", length=2),
})
_MOTION_DEFAULT = {k: tuple(v) if isinstance(v, list) else v for k, v in MOTION_VIEW.defaults().items()}


@dataclass(frozen=True)
class MotionViewConfig:
    """Ranges of the per-sequence random parameters (SimCLR-style colour distortion, milder crop):
    the options of :data:`MOTION_VIEW`."""

    crop_scale: tuple[float, float] = _MOTION_DEFAULT["crop_scale"]
    p_jitter: float = _MOTION_DEFAULT["p_jitter"]
    brightness: float = _MOTION_DEFAULT["brightness"]
    contrast: float = _MOTION_DEFAULT["contrast"]
    saturation: float = _MOTION_DEFAULT["saturation"]
    hue: float = _MOTION_DEFAULT["hue"]
    p_gray: float = _MOTION_DEFAULT["p_gray"]
    p_blur: float = _MOTION_DEFAULT["p_blur"]
    blur_sigma: tuple[float, float] = _MOTION_DEFAULT["blur_sigma"]
    blur_kernel: int = _MOTION_DEFAULT["blur_kernel"]
    noise_std: tuple[float, float] = _MOTION_DEFAULT["noise_std"]

    def __post_init__(self):
        check_section("motion_view", asdict(self), MOTION_VIEW, "motion view")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise UserError(f"motion view: crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        for name in ("p_jitter", "p_gray", "p_blur"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"motion view: {name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"motion view: {name} must lie in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise UserError(f"motion view: hue must lie in [0, 0.5], got {self.hue}")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise UserError(f"motion view: blur_kernel must be a positive odd integer, got {self.blur_kernel}")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise UserError(f"motion view: blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma}")
        if not 0.0 <= self.noise_std[0] <= self.noise_std[1]:
            raise UserError(f"motion view: noise_std must satisfy 0 <= lo <= hi, got {self.noise_std}")


@dataclass
class MotionParams:
    """One transform per sequence; every field has shape (B,). Identity: scale 1, offsets 0,
    factors 1, hue 0, gray False, sigma 0, noise 0."""

    crop_scale: torch.Tensor
    crop_x: torch.Tensor  # crop centre in normalised coordinates [-1, 1]
    crop_y: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    gray: torch.Tensor  # bool
    blur_sigma: torch.Tensor  # 0 means no blur
    noise_std: torch.Tensor

    def __len__(self) -> int:
        return self.crop_scale.shape[0]

    def select(self, index) -> "MotionParams":
        """The parameters of some sequences (an int keeps a batch dimension of 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return MotionParams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device) -> "MotionParams":
        return MotionParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @staticmethod
    def identity(batch_size: int, device=None) -> "MotionParams":
        one = torch.ones(batch_size, device=device)
        zero = torch.zeros(batch_size, device=device)
        return MotionParams(one, zero, zero, one, one, one, zero, zero.bool(), zero, zero)


def _uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


def sample_motion_params(batch_size: int, generator: torch.Generator | None,
                         config: MotionViewConfig | None = None) -> MotionParams:
    """Draw one transform per sequence from ``generator`` (one rand call: fixed draw order)."""
    cfg = config or MotionViewConfig()
    gdev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch_size, 12, generator=generator, device=gdev)
    scale = _uniform(u[:, 0], *cfg.crop_scale)
    # The crop stays inside the frame: its centre moves at most (1 - scale) in normalised units.
    cx = (2 * u[:, 1] - 1) * (1 - scale)
    cy = (2 * u[:, 2] - 1) * (1 - scale)
    jitter = u[:, 3] < cfg.p_jitter
    one = torch.ones_like(scale)
    brightness = torch.where(jitter, _uniform(u[:, 4], 1 - cfg.brightness, 1 + cfg.brightness), one)
    contrast = torch.where(jitter, _uniform(u[:, 5], 1 - cfg.contrast, 1 + cfg.contrast), one)
    saturation = torch.where(jitter, _uniform(u[:, 6], 1 - cfg.saturation, 1 + cfg.saturation), one)
    hue = torch.where(jitter, _uniform(u[:, 7], -cfg.hue, cfg.hue), torch.zeros_like(scale))
    gray = u[:, 8] < cfg.p_gray
    blur = u[:, 9] < cfg.p_blur
    sigma = torch.where(blur, _uniform(u[:, 10], *cfg.blur_sigma), torch.zeros_like(scale))
    noise = _uniform(u[:, 11], *cfg.noise_std)
    return MotionParams(scale, cx, cy, brightness, contrast, saturation, hue, gray, sigma, noise)


def _per_seq(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1, 1), broadcastable against (B, T, C, H, W)."""
    return v.to(dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 1, H, W)."""
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * w).sum(dim=-3, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [0, 1] -> hue (turns), saturation, value; ties broken r, g, b like colorsys."""
    r, g, b = x.unbind(dim=-3)
    maxc, argmax = x.max(dim=-3)
    minc = x.min(dim=-3).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hr = torch.remainder((g - b) / safe, 6.0)
    hg = (b - r) / safe + 2.0
    hb = (r - g) / safe + 4.0
    h = torch.where(argmax == 0, hr, torch.where(argmax == 1, hg, hb)) / 6.0
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(dim=-3)
    h6 = torch.remainder(h, 1.0) * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.long() % 6
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    # Sextant i of the colour wheel: which of (v, t, p, q) each of r, g, b takes.
    table = torch.stack([
        torch.stack([v, q, p, p, t, v], dim=-1),
        torch.stack([t, v, v, q, p, p], dim=-1),
        torch.stack([p, p, t, v, v, q], dim=-1),
    ], dim=-4)
    idx = i.unsqueeze(-1).unsqueeze(-4).expand(*table.shape[:-1], 1)
    return torch.gather(table, -1, idx).squeeze(-1)


def _crop_resize(x: torch.Tensor, p: MotionParams) -> torch.Tensor:
    B, T, C, H, W = x.shape
    theta = torch.zeros(B, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = p.crop_scale
    theta[:, 1, 1] = p.crop_scale
    theta[:, 0, 2] = p.crop_x
    theta[:, 1, 2] = p.crop_y
    # One sampling grid per sequence; the frames ride along as channels so they share it.
    grid = F.affine_grid(theta, [B, T * C, H, W], align_corners=False)
    out = F.grid_sample(x.reshape(B, T * C, H, W), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.view(B, T, C, H, W)


def gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) sigmas -> (B, size) normalised 1-D kernels; sigma 0 gives the identity (a delta)."""
    c = size // 2
    offs = torch.arange(size, dtype=sigma.dtype, device=sigma.device) - c
    s = sigma.clamp_min(1e-6).unsqueeze(1)
    k = torch.exp(-0.5 * (offs / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)
    delta = (offs == 0).to(sigma.dtype).expand_as(k)
    return torch.where((sigma > 0).unsqueeze(1), k, delta)


def _blur(x: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    B, T, C, H, W = x.shape
    pad = size // 2
    if pad >= min(H, W):
        raise UserError(f"motion view: blur_kernel {size} too large for {H}x{W} frames")
    k = gaussian_kernels(sigma.to(x.dtype), size)  # (B, size)
    k = k.repeat_interleave(C, dim=0)  # one filter per (sequence, channel)
    # Frames become the conv batch and (sequence, channel) the groups: one kernel per sequence.
    y = x.permute(1, 0, 2, 3, 4).reshape(T, B * C, H, W)
    y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), k.view(B * C, 1, 1, size), groups=B * C)
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), k.view(B * C, 1, size, 1), groups=B * C)
    return y.view(T, B, C, H, W).permute(1, 0, 2, 3, 4)


def apply_motion_params(x: torch.Tensor, params: MotionParams, noise: torch.Tensor | None = None,
                        blur_kernel: int = MotionViewConfig.blur_kernel) -> torch.Tensor:
    """Apply one transform per sequence to ``x`` (B, T, C, H, W) in [0, 1].

    Order: crop-and-resize, brightness, contrast, saturation, hue, grayscale, blur, then
    ``noise * noise_std`` (``noise`` a standard-normal tensor shaped like x, or None), clamped to [0, 1].
    """
    if x.dim() != 5:
        raise UserError(f"motion view: expected a batch (B, T, C, H, W), got shape {tuple(x.shape)}")
    B, T, C, H, W = x.shape
    if len(params) != B:
        raise UserError(f"motion view: {len(params)} parameter sets for a batch of {B}")
    if C not in (1, 3):
        raise UserError(f"motion view: expected 1 or 3 channels, got {C}")
    p = params.to(x.device)
    y = _crop_resize(x, p)
    y = (y * _per_seq(p.brightness, y)).clamp(0, 1)
    gray = rgb_to_gray(y) if C == 3 else y
    mean = gray.mean(dim=(-3, -2, -1), keepdim=True)  # per frame
    c = _per_seq(p.contrast, y)
    y = (c * y + (1 - c) * mean).clamp(0, 1)
    if C == 3:
        s = _per_seq(p.saturation, y)
        y = (s * y + (1 - s) * rgb_to_gray(y)).clamp(0, 1)
        hsv = rgb_to_hsv(y)
        shift = _per_seq(p.hue, y).squeeze(-3)
        hsv = torch.stack([torch.remainder(hsv[..., 0, :, :] + shift, 1.0), hsv[..., 1, :, :], hsv[..., 2, :, :]], dim=-3)
        y = hsv_to_rgb(hsv).clamp(0, 1)
        y = torch.where(_per_seq(p.gray, y).bool(), rgb_to_gray(y).expand_as(y), y)
    y = _blur(y, p.blur_sigma, blur_kernel)
    if noise is not None:
        y = y + _per_seq(p.noise_std, y) * noise.to(device=y.device, dtype=y.dtype)
    return y.clamp(0, 1)


def motion_view(x: torch.Tensor, generator: torch.Generator | None = None,
                config: MotionViewConfig | None = None, **overrides) -> torch.Tensor:
    """Appearance-changed copy of a batch (B, T, C, H, W) in [0, 1] with the motion kept.

    ``overrides`` replace fields of ``config`` (e.g. ``hue=0.0``). Deterministic given the state of
    ``generator``; the generator may live on another device than ``x``.
    """
    cfg = config or MotionViewConfig()
    if overrides:
        check_section("motion_view", overrides, MOTION_VIEW, "motion view")
        cfg = replace(cfg, **overrides)
    if x.dim() != 5:
        raise UserError(f"motion view: expected a batch (B, T, C, H, W), got shape {tuple(x.shape)}")
    params = sample_motion_params(x.shape[0], generator, cfg)
    gdev = generator.device if generator is not None else torch.device("cpu")
    noise = None
    if cfg.noise_std[1] > 0:
        noise = torch.randn(x.shape, generator=generator, device=gdev, dtype=torch.float32)
    return apply_motion_params(x, params, noise, blur_kernel=cfg.blur_kernel)
