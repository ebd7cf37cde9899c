"""Log-mel filterbanks: their options, the forward transform and its approximate inverse.

Features come from ``torchaudio.compliance.kaldi.fbank``: it reproduces Kaldi's
``compute-fbank-feats`` (povey window, DC removal, pre-emphasis, Kaldi mel scale,
``snip_edges``), so the features match what a Kaldi or ESPnet recipe would compute
from the same audio, and the frame count has Kaldi's closed form
``1 + (num_samples - window) // shift``, which ``utt2num_frames`` and the
voice-conversion stage rely on.  Waveforms are scaled to the 16-bit integer range
first, as Kaldi reads them, so the log floor means the same thing as in Kaldi.
``logmel_to_waveform`` goes back to audio (Griffin-Lim), for listening.

The configuration is a small dict (or YAML file) with the keys of :data:`FBANK`;
``fft_size`` is the one place that decides the FFT length of both directions.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from cdsvae.audio import MIX, audio_label, check_channel, read_audio, read_utterances
from cdsvae.config import Field, Section, check_section
from cdsvae.data.feats import check_finite
from cdsvae.io import UserError, read_yaml

# torch, torchaudio and scipy are imported inside the functions that compute: reading or
# checking a configuration does not load them.

# The options of log-mel features (``fbank.yaml``): keys, defaults and types, declared once, here.
FBANK = Section({
    "sample_rate": Field(16000, "float"),  # Hz the features are computed at
    "n_mels": Field(80, "float"),  # mel bins
    "frame_length_ms": Field(25.0, "float"),  # analysis window
    "frame_shift_ms": Field(10.0, "float"),  # hop
    "n_fft": Field(None, "float", optional=True),  # None: window rounded up to a power of two (Kaldi); or the window
    "fmin": Field(20.0, "float"),  # lowest mel edge, Hz (Kaldi's default)
    "fmax": Field(None, "float", optional=True),  # highest mel edge, Hz; None: Nyquist
    "dither": Field(0.0, "float"),  # 0 keeps features deterministic
    "log_floor": Field(1.1920929e-07, "float"),  # mel energies are floored here before the log (Kaldi: float epsilon)
    "preemphasis": Field(0.97, "float"),
    "window": Field("povey", "str"),
    "resample": Field(False, "bool"),  # resample audio at another rate instead of failing
    "channel": Field(MIX, "any"),  # several channels: "mix" (their mean) or the index of one, from 0
})
FBANK_DEFAULTS: dict = FBANK.defaults()

PCM_SCALE = 32768.0  # Kaldi reads 16-bit samples as integers


def load_fbank_config(cfg: Mapping | str | os.PathLike | None = None) -> dict:
    """Resolve a config dict or YAML path against :data:`FBANK`; unknown keys are an error."""
    source = "fbank config"
    if cfg is None:
        cfg = {}
    elif isinstance(cfg, (str, os.PathLike)):
        source = str(cfg)
        cfg = read_yaml(cfg, "fbank options")
    check_section("fbank", cfg, FBANK, source)  # the values are kept as given (an int stays an int)
    out = dict(FBANK_DEFAULTS)
    out.update(cfg)
    out["channel"] = check_channel(out["channel"], source)
    if int(out["sample_rate"]) <= 0 or int(out["n_mels"]) <= 0:
        raise UserError(f"{source}: sample_rate and n_mels must be positive")
    win, shift = window_samples(out), shift_samples(out)
    if win <= 0 or shift <= 0:
        raise UserError(f"{source}: frame_length_ms and frame_shift_ms must give at least one sample")
    pow2 = fft_size({**out, "n_fft": None})
    if out["n_fft"] is not None and int(out["n_fft"]) not in (win, pow2):
        raise UserError(f"{source}: n_fft must be {pow2} (the window rounded up to a power of two, "
                        f"the default) or {win} (the window itself), got {out['n_fft']}")
    nyquist = out["sample_rate"] / 2
    fmax = nyquist if out["fmax"] is None else float(out["fmax"])
    if not 0 <= float(out["fmin"]) < fmax <= nyquist:
        raise UserError(f"{source}: need 0 <= fmin < fmax <= sample_rate/2, got fmin={out['fmin']} fmax={out['fmax']}")
    if not float(out["log_floor"]) > 0:
        raise UserError(f"{source}: log_floor must be positive")
    return out


def window_samples(cfg: Mapping) -> int:
    return int(cfg["sample_rate"] * cfg["frame_length_ms"] * 0.001)


def shift_samples(cfg: Mapping) -> int:
    return int(cfg["sample_rate"] * cfg["frame_shift_ms"] * 0.001)


def fft_size(cfg: Mapping) -> int:
    """FFT length: the window rounded up to a power of two (Kaldi), unless ``n_fft`` is the window itself."""
    win = window_samples(cfg)
    n_fft = cfg.get("n_fft")
    return win if n_fft is not None and int(n_fft) == win else 1 << (win - 1).bit_length()


def num_frames(num_samples: int, cfg: Mapping) -> int:
    """Frames Kaldi's ``snip_edges`` framing gives for ``num_samples`` samples."""
    win, shift = window_samples(cfg), shift_samples(cfg)
    return 0 if num_samples < win else 1 + (num_samples - win) // shift


def compute_fbank(wave: np.ndarray, cfg: Mapping, what: str = "waveform") -> np.ndarray:
    """Log-mel filterbank (frames, n_mels) float32 of a waveform at ``cfg['sample_rate']`` in [-1, 1]."""
    import torch
    from torchaudio.compliance import kaldi

    wave = np.asarray(wave, dtype=np.float32).ravel()
    if not np.isfinite(wave).all():
        raise UserError(f"audio contains NaN or Inf samples: {what}")
    n = num_frames(wave.size, cfg)
    if n == 0:
        raise UserError(f"audio too short for one frame ({wave.size} samples < {window_samples(cfg)}): {what}")
    with torch.no_grad():
        mel = kaldi.fbank(
            torch.from_numpy(wave * np.float32(PCM_SCALE)).unsqueeze(0),
            sample_frequency=float(cfg["sample_rate"]),
            num_mel_bins=int(cfg["n_mels"]),
            frame_length=float(cfg["frame_length_ms"]),
            frame_shift=float(cfg["frame_shift_ms"]),
            round_to_power_of_two=fft_size(cfg) != window_samples(cfg),
            low_freq=float(cfg["fmin"]),
            high_freq=0.0 if cfg["fmax"] is None else float(cfg["fmax"]),
            dither=float(cfg["dither"]),
            preemphasis_coefficient=float(cfg["preemphasis"]),
            window_type=str(cfg["window"]),
            use_log_fbank=False,
            use_power=True,
            snip_edges=True,
        )
        feats = torch.clamp(mel, min=float(cfg["log_floor"])).log().numpy().astype(np.float32)
    assert feats.shape[0] == n, (feats.shape, n)
    check_finite(feats, what)
    return feats


def fbank_from_audio(spec: str, cfg: Mapping, name: str | None = None,
                     start: float | None = None, end: float | None = None) -> np.ndarray:
    """Read audio (path or pipe), optionally cut ``[start, end)`` seconds, and compute its features."""
    wave, _ = read_audio(spec, name, start, end, int(cfg["sample_rate"]), bool(cfg.get("resample", False)),
                         cfg.get("channel", MIX))
    return compute_fbank(wave, cfg, audio_label(spec, name))


def iter_fbank(items: Iterable[tuple[str, str, float | None, float | None]],
               cfg: Mapping) -> Iterator[tuple[str, np.ndarray | UserError]]:
    """Yield (utt, features or UserError) for (utt, wav spec, start, end) items, reusing a recording."""
    for utt, what, wave in read_utterances(items, int(cfg["sample_rate"]), bool(cfg.get("resample", False)),
                                           cfg.get("channel", MIX)):
        if not isinstance(wave, UserError):
            try:
                wave = compute_fbank(wave, cfg, what)
            except UserError as e:
                wave = e
        yield utt, wave


def logmel_to_waveform(logmel: np.ndarray, fbank_cfg: Mapping[str, Any] | None = None, n_iter: int = 32) -> np.ndarray:
    """Audio from log-mel filterbanks made by ``compute_fbank`` (for listening, not for scoring).

    Undoes the feature pipeline step by step: exp of the log, a least-squares inverse of Kaldi's
    mel banks (torchaudio's InverseMelScale with its banks swapped for the ones the features
    used), Griffin-Lim phase recovery with the same window and hop, de-emphasis, and a peak
    normalisation (the level is not recoverable once the log floor and DC removal are applied).
    """
    import torch
    import torchaudio
    from scipy.signal import lfilter
    from torchaudio.compliance import kaldi

    cfg = load_fbank_config(dict(fbank_cfg or {}))
    logmel = np.asarray(logmel, dtype=np.float64)
    if logmel.ndim != 2 or logmel.shape[1] != int(cfg["n_mels"]):
        raise UserError(f"expected log-mel frames (T, {cfg['n_mels']}), got shape {logmel.shape}")
    sr, win, hop = int(cfg["sample_rate"]), window_samples(cfg), shift_samples(cfg)
    n_fft = fft_size(cfg)
    high = 0.0 if cfg["fmax"] is None else float(cfg["fmax"])
    banks, _ = kaldi.get_mel_banks(int(cfg["n_mels"]), n_fft, float(sr), float(cfg["fmin"]), high, 100.0, -500.0, 1.0)
    banks = torch.nn.functional.pad(banks, (0, 1))  # Kaldi leaves out the Nyquist bin
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=n_fft // 2 + 1, n_mels=int(cfg["n_mels"]), sample_rate=sr, driver="gelsd"
    )
    inverse_mel.fb = banks.T.contiguous().float()
    mel_power = torch.from_numpy(np.exp(np.minimum(logmel, 50.0)).T.copy()).float()
    griffin_lim = torchaudio.transforms.GriffinLim(n_fft=n_fft, win_length=win, hop_length=hop, power=2.0, n_iter=n_iter)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        wave = griffin_lim(inverse_mel(mel_power[None]))[0].numpy().astype(np.float64)
    if cfg["preemphasis"]:
        wave = lfilter([1.0], [1.0, -float(cfg["preemphasis"])], wave)
    wave = wave - wave.mean()
    peak = np.abs(wave).max()
    return (0.9 * wave / peak if peak > 0 else wave).astype(np.float32)
