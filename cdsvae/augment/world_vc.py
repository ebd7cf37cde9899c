"""Motion views for speech: WORLD voice conversion that changes the speaker, keeps the words.

The analysis is WORLD's dio + stonemask (F0), cheaptrick (spectral envelope) and d4c
(aperiodicity), through pyworld.  Conversion scales F0 and warps the spectral envelope
along frequency with the first-order all-pass (bilinear) map used for vocal-tract-length
normalisation:

    phi_a(w) = w + 2 * atan(a * sin(w) / (1 - a * cos(w))),   w in [0, pi]

The converted envelope at frequency ``w`` is the original one at ``phi_{-a}(w)``, so a
positive ``warp_alpha`` moves formants up (a shorter vocal tract) and a negative one
moves them down; 0 leaves the envelope unchanged.  The envelope is interpolated
linearly in the log domain; aperiodicity is left unwarped.  The output has exactly as
many samples as the input, so features computed from it have the same frame count.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

from cdsvae.config import Field, Section, validate
from cdsvae.io import UserError, read_yaml


F0_METHODS = ("dio", "harvest")

# Every option of the WORLD voice conversion (the keys of a recipe's ``conf/vc.yaml``), declared once, here.
VC = Section({
    "num_copies": Field(2, "int", minimum=1),  # converted copies per utterance (K)
    "seed": Field(1, "int"),  # with (utt, copy), fixes each copy's draw
    "f0_scale_range": Field([0.7, 1.45], "floats", length=2),  # log-uniform: about -6 to +6.5 semitones
    "warp_range": Field([-0.07, 0.07], "floats", length=2),  # uniform all-pass warp: low formants x (1.07/0.93)^+-1
    "f0_method": Field("dio", "str", choices=F0_METHODS),  # dio (+ stonemask) or harvest
    "frame_period": Field(5.0, "float"),  # ms, WORLD analysis hop
    "f0_floor": Field(71.0, "float"),  # Hz, lowest F0 searched
    "f0_ceil": Field(800.0, "float"),  # Hz, highest F0 searched
})
_VC_DEFAULT = VC.defaults()


@dataclass(frozen=True)
class VCConfig:
    """The options of :data:`VC` as the conversion reads them (ranges as tuples)."""

    num_copies: int = _VC_DEFAULT["num_copies"]
    seed: int = _VC_DEFAULT["seed"]
    f0_scale_range: tuple[float, float] = tuple(_VC_DEFAULT["f0_scale_range"])
    warp_range: tuple[float, float] = tuple(_VC_DEFAULT["warp_range"])
    f0_method: str = _VC_DEFAULT["f0_method"]
    frame_period: float = _VC_DEFAULT["frame_period"]
    f0_floor: float = _VC_DEFAULT["f0_floor"]
    f0_ceil: float = _VC_DEFAULT["f0_ceil"]

    def as_dict(self) -> dict:
        """Plain YAML-able values (ranges as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def load_vc_config(cfg: Mapping | str | os.PathLike | None = None) -> VCConfig:
    """Resolve a mapping or YAML file of conversion options against :data:`VC`.

    An unknown key or a bad value is a UserError naming the file and the key."""
    source = "voice-conversion config"
    if cfg is None:
        cfg = {}
    elif isinstance(cfg, (str, os.PathLike)):
        source = str(cfg)
        cfg = read_yaml(cfg, "voice-conversion options")
    out = validate({"vc": cfg}, {"vc": VC}, source)["vc"]
    lo, hi = out["f0_scale_range"]
    if not 0 < lo <= hi:
        raise UserError(f"{source}: f0_scale_range must satisfy 0 < low <= high, got {[lo, hi]}")
    a, b = out["warp_range"]
    if not -1 < a <= b < 1:
        raise UserError(f"{source}: warp_range must satisfy -1 < low <= high < 1, got {[a, b]}")
    if not out["frame_period"] > 0:
        raise UserError(f"{source}: frame_period must be positive (ms), got {out['frame_period']}")
    if not 0 < out["f0_floor"] < out["f0_ceil"]:
        raise UserError(f"{source}: need 0 < f0_floor < f0_ceil, got f0_floor={out['f0_floor']} "
                        f"f0_ceil={out['f0_ceil']}")
    return VCConfig(**{**out, "f0_scale_range": (lo, hi), "warp_range": (a, b)})


@dataclass
class WorldAnalysis:
    """WORLD parameters of one waveform (frames at ``frame_period`` ms)."""

    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray
    sample_rate: int
    frame_period: float
    num_samples: int


def world_analyze(wave, sample_rate: int, frame_period: float = 5.0, f0_floor: float = 71.0,
                  f0_ceil: float = 800.0, f0_method: str = "dio") -> WorldAnalysis:
    """F0 (dio + stonemask, or harvest), spectral envelope and aperiodicity of a mono waveform."""
    import pyworld as pw

    x = np.ascontiguousarray(np.asarray(wave, dtype=np.float64).ravel())
    if x.size == 0 or not np.isfinite(x).all():
        raise UserError("WORLD analysis needs a non-empty, finite waveform")
    if f0_method == "dio":
        f0, t = pw.dio(x, sample_rate, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period)
        f0 = pw.stonemask(x, f0, t, sample_rate)
    elif f0_method == "harvest":
        f0, t = pw.harvest(x, sample_rate, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period)
    else:
        raise UserError(f"f0_method must be 'dio' or 'harvest', got {f0_method!r}")
    sp = pw.cheaptrick(x, f0, t, sample_rate, f0_floor=f0_floor)
    ap = pw.d4c(x, f0, t, sample_rate)
    return WorldAnalysis(f0, sp, ap, int(sample_rate), float(frame_period), x.size)


def allpass_warp(omega: np.ndarray, alpha: float) -> np.ndarray:
    """The bilinear frequency map phi_alpha on [0, pi] (monotone for |alpha| < 1, fixes 0 and pi)."""
    return omega + 2.0 * np.arctan2(alpha * np.sin(omega), 1.0 - alpha * np.cos(omega))


def warp_envelope(sp: np.ndarray, warp_alpha: float) -> np.ndarray:
    """Warp a (frames, bins) power envelope along frequency; positive alpha moves formants up."""
    if not -1.0 < warp_alpha < 1.0:
        raise UserError(f"warp_alpha must be in (-1, 1), got {warp_alpha}")
    if warp_alpha == 0.0:
        return np.ascontiguousarray(sp)
    n_bins = sp.shape[1]
    omega = np.linspace(0.0, np.pi, n_bins)
    pos = allpass_warp(omega, -warp_alpha) / np.pi * (n_bins - 1)  # source bin for each output bin
    pos = np.clip(pos, 0.0, n_bins - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), n_bins - 2)
    w = pos - lo
    log_sp = np.log(np.maximum(sp, 1e-300))
    warped = log_sp[:, lo] * (1.0 - w) + log_sp[:, lo + 1] * w
    return np.ascontiguousarray(np.exp(warped))


def world_convert(analysis: WorldAnalysis, f0_scale: float, warp_alpha: float) -> np.ndarray:
    """Resynthesise with F0 x ``f0_scale`` and the envelope warped by ``warp_alpha``; float32, same length."""
    import pyworld as pw

    if not f0_scale > 0:
        raise UserError(f"f0_scale must be positive, got {f0_scale}")
    f0 = np.ascontiguousarray(analysis.f0 * float(f0_scale))
    sp = warp_envelope(analysis.sp, float(warp_alpha))
    ap = np.ascontiguousarray(analysis.ap)
    y = pw.synthesize(f0, sp, ap, analysis.sample_rate, analysis.frame_period)
    n = analysis.num_samples
    # WORLD's output length follows its frame grid; pad with silence or trim at the end
    y = y[:n] if y.size >= n else np.concatenate([y, np.zeros(n - y.size)])
    return y.astype(np.float32)


def world_voice_conversion(wave, sr: int, f0_scale: float, warp_alpha: float, frame_period: float = 5.0,
                           f0_floor: float = 71.0, f0_ceil: float = 800.0, f0_method: str = "dio") -> np.ndarray:
    """Convert one waveform: WORLD analysis, F0 scaling, envelope warping, resynthesis (same length)."""
    analysis = world_analyze(wave, sr, frame_period, f0_floor, f0_ceil, f0_method)
    return world_convert(analysis, f0_scale, warp_alpha)


def draw_conversion(utt: str, copy: int, seed: int,
                    f0_scale_range=VCConfig.f0_scale_range,
                    warp_range=VCConfig.warp_range) -> tuple[float, float]:
    """(f0_scale, warp_alpha) for copy ``copy`` of ``utt``, a pure function of (utt, copy, seed).

    The generator is seeded from a BLAKE2 hash of the three values (Python's ``hash`` is
    salted per process), so the draw does not depend on job splits or processing order.
    F0 scale is log-uniform in ``f0_scale_range``, the warp uniform in ``warp_range``.
    """
    digest = hashlib.blake2b(f"{int(seed)}\x00{utt}\x00{int(copy)}".encode("utf-8"), digest_size=8).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    lo, hi = (float(v) for v in f0_scale_range)
    if not 0 < lo <= hi:
        raise UserError(f"f0_scale_range must satisfy 0 < low <= high, got {f0_scale_range}")
    a, b = (float(v) for v in warp_range)
    if not -1 < a <= b < 1:
        raise UserError(f"warp_range must satisfy -1 < low <= high < 1, got {warp_range}")
    f0_scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    warp_alpha = float(rng.uniform(a, b))
    return f0_scale, warp_alpha
