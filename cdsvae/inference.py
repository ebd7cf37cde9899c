"""``Disentangler``: a packed model (:mod:`cdsvae.packed`) as a Python object, for use outside the recipe.

Speech goes through the recipe's own pipeline: audio read at the filterbank's rate (resampled
when the fbank config or the caller allows it) with several channels made one as the fbank
config says (``channel``: their mean by default, or one channel), log-mel filterbanks (:func:`cdsvae.fbank.compute_fbank`),
the training CMVN, non-overlapping segments of ``data.segment_frames`` frames (the tail shorter
than a segment is dropped), and s as the mean over segments of the posterior mean, which is what
stage 5 (:mod:`cdsvae.eval.metrics.embeddings`) writes. z_1:T is the posterior mean of every frame the
segments cover. A swap decodes the content's z with the speaker's s, as the listening demo does,
and turns the log-mel frames into audio with Griffin-Lim or a speechbrain vocoder.

Video takes one sequence of frames ``(T, C, H, W)``, float in [0, 1] or uint8, as the video
data does; s is the appearance, z_1:T the motion.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np
import torch

from cdsvae.experiment.load import packed_model
from cdsvae.io import UserError
from cdsvae.packed import PackedModel, read_packed


class Embeddings(NamedTuple):
    """s ``(Ds,)`` of the utterance or sequence and z ``(T, Dz)`` per frame."""

    s: np.ndarray
    z: np.ndarray


class Swap(NamedTuple):
    """A decoded swap: log-mel ``(T, n_mels)`` and audio at ``sample_rate`` (speech), or
    frames ``(T, C, H, W)`` in [0, 1] (video, ``waveform`` None)."""

    features: np.ndarray
    waveform: np.ndarray | None
    sample_rate: int | None

    def write(self, path: str | os.PathLike) -> None:
        """Write the audio as a 16-bit PCM wav (speech)."""
        from cdsvae.audio import write_wav

        if self.waveform is None:
            raise UserError("a video swap has frames, not audio: save swap.features instead")
        write_wav(path, self.waveform, int(self.sample_rate))


class Disentangler:
    """A trained C-DSVAE: ``encode`` to (s, z_1:T), ``swap`` to recombine two inputs."""

    def __init__(self, packed: PackedModel, device: str | torch.device = "cpu", vocoder: Any = None,
                 n_iter: int = 32):
        self.packed, self.device, self.n_iter = packed, torch.device(device), int(n_iter)
        self.config = packed.config
        self.modality = packed.modality
        self.model = packed_model(packed, self.device)
        self.fbank = packed.fbank
        self.segment_frames = packed.manifest.get("segment_frames")
        self.vocoder = vocoder

    @classmethod
    def from_packed(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
                    vocoder: str | os.PathLike | None = None, n_iter: int = 32) -> "Disentangler":
        """Load a packed directory or ``.tar.gz``; ``vocoder`` is a speechbrain HiFi-GAN directory
        (speech; default Griffin-Lim with ``n_iter`` iterations)."""
        packed = read_packed(path)
        voc = None
        if vocoder is not None:
            if packed.modality != "speech":
                raise UserError(f"{path}: a vocoder is for speech models; this is a {packed.modality} model")
            from cdsvae.vocoder import SpeechBrainVocoder

            voc = SpeechBrainVocoder(vocoder, packed.fbank, device=str(device))
        return cls(packed, device, voc, n_iter)

    @property
    def sample_rate(self) -> int | None:
        return int(self.fbank["sample_rate"]) if self.fbank is not None else None

    def require(self, modality: str, what: str) -> None:
        """A UserError unless the model is of ``modality`` (``what`` names the caller)."""
        if self.modality != modality:
            raise UserError(f"{self.packed.source}: {what} needs a {modality} model; this is a {self.modality} model")

    # ---- speech
    def features(self, audio, sample_rate: int | None = None, resample: bool | None = None,
                 name: str | None = None, channel: str | int | None = None) -> np.ndarray:
        """Log-mel ``(T, n_mels)`` of a path (or wav.scp pipe) or of samples at ``sample_rate``
        (default: the model's), as stage 2 computes them. Samples are ``(N,)``, or ``(N, channels)``
        made one by ``channel`` (default: the model's fbank setting, ``"mix"``: their mean)."""
        from cdsvae.audio import MIX, audio_label, check_channel, read_audio, select_channel
        from cdsvae.fbank import compute_fbank

        self.require("speech", "audio input")
        target = self.sample_rate
        allowed = bool(self.fbank.get("resample")) if resample is None else bool(resample)
        channel = check_channel(self.fbank.get("channel", MIX) if channel is None else channel)
        if isinstance(audio, (str, os.PathLike)):
            what = audio_label(str(audio), name)
            wave, rate = read_audio(str(audio), name, channel=channel)
        else:
            what = name or "waveform"
            wave = np.asarray(audio, dtype=np.float32)
            if wave.ndim == 2:
                wave = select_channel(wave, channel, what)
            if wave.ndim != 1:
                raise UserError(f"expected samples (N,) or (N, channels), got shape {wave.shape}: {what}")
            rate = int(sample_rate or target)
        if rate != target:
            if not allowed:
                raise UserError(f"sample rate {rate} Hz, the model's features are at {target} Hz "
                                f"(resample=True, or --resample, converts it): {what}")
            from cdsvae.audio import resample_to

            wave = resample_to(wave, rate, target, True, what)
        return compute_fbank(wave, self.fbank, what)

    def _segments(self, feats: np.ndarray, what: str) -> torch.Tensor:
        from cdsvae.eval.metrics.embeddings import cut_segments

        n_frames, seg = feats.shape[0], int(self.segment_frames)
        if n_frames < seg:
            hop = float(self.fbank["frame_shift_ms"]) / 1000
            raise UserError(f"audio too short: {n_frames} frames ({n_frames * hop:.2f} s), shorter than one "
                            f"segment of {seg} frames ({seg * hop:.2f} s): {what}")
        if self.packed.cmvn is not None:
            feats = self.packed.cmvn.apply(feats)
        segs = cut_segments(np.asarray(feats, dtype=np.float32), seg)
        return torch.from_numpy(np.ascontiguousarray(segs)).to(self.device)

    @torch.no_grad()
    def _encode_segments(self, segs: torch.Tensor, batch_size: int = 64):
        s_parts, z_parts = [], []
        for start in range(0, segs.shape[0], batch_size):
            out = self.model.encode(segs[start:start + batch_size])
            s_parts.append(out.s_mean.float())
            z_parts.append(out.z_mean.float())
        return torch.cat(s_parts), torch.cat(z_parts)

    def _speech_encode(self, audio, sample_rate, resample, name, role: str | None = None, channel=None):
        from cdsvae.audio import audio_label

        what = audio_label(str(audio), name) if isinstance(audio, (str, os.PathLike)) else name or "waveform"
        what += f" ({role})" if role else ""
        feats = self.features(audio, sample_rate, resample, name, channel)
        s_seg, z_seg = self._encode_segments(self._segments(feats, what))
        # as stage 5: a sum over segments by index_add_, divided by their count
        owner = torch.zeros(s_seg.shape[0], dtype=torch.long, device=s_seg.device)
        s = torch.zeros(1, s_seg.shape[1], device=s_seg.device).index_add_(0, owner, s_seg) / s_seg.shape[0]
        return s[0], z_seg

    # ---- both
    def encode(self, x, sample_rate: int | None = None, resample: bool | None = None,
               name: str | None = None, channel: str | int | None = None) -> Embeddings:
        """(s, z_1:T) of an utterance (path, pipe or samples; ``channel`` as in ``features``) or a
        video sequence ``(T, C, H, W)``."""
        if self.modality == "speech":
            s, z = self._speech_encode(x, sample_rate, resample, name, channel=channel)
            return Embeddings(s.cpu().numpy(), z.reshape(-1, z.shape[-1]).cpu().numpy())
        if isinstance(x, (str, os.PathLike)):
            self.require("speech", "audio input")
        enc = self._video_encode(x, name or "frames")
        return Embeddings(enc.s_mean[0].cpu().numpy(), enc.z_mean[0].cpu().numpy())

    @torch.no_grad()
    def swap(self, content, speaker=None, motion=None, sample_rate: int | None = None,
             resample: bool | None = None, channel: str | int | None = None) -> Swap:
        """Speech: ``content``'s z decoded with ``speaker``'s s, as log-mel and audio (``channel``
        as in ``features``). Video: ``content``'s s (appearance) decoded with ``motion``'s z_1:T, as frames."""
        if self.modality == "speech":
            if speaker is None or motion is not None:
                raise UserError("a speech swap takes content= and speaker=")
            s_b, _ = self._speech_encode(speaker, sample_rate, resample, None, "speaker", channel)
            _, z_a = self._speech_encode(content, sample_rate, resample, None, "content", channel)
            dec = self.model.decode(s_b[None].expand(z_a.shape[0], -1), z_a)
            logmel = dec.reshape(-1, dec.shape[-1]).float().cpu().numpy()
            if self.packed.cmvn is not None:
                logmel = logmel * self.packed.cmvn.std.astype(np.float32) + self.packed.cmvn.mean.astype(np.float32)
            return Swap(logmel, self.vocode(logmel), self.output_rate)
        if motion is None or speaker is not None:
            raise UserError("a video swap takes content= and motion=")
        s_a = self._video_encode(content, "content").s_mean
        z_b = self._video_encode(motion, "motion").z_mean
        frames = self.model.decode(s_a, z_b)[0].float().clamp(0, 1).cpu().numpy()
        return Swap(frames, None, None)

    @property
    def output_rate(self) -> int | None:
        """The rate of the audio ``swap`` returns (the vocoder's, else the features')."""
        if self.vocoder is not None:
            return int(self.vocoder.sample_rate)
        return self.sample_rate

    def vocode(self, logmel: np.ndarray) -> np.ndarray:
        """Audio of log-mel frames: the vocoder's, else Griffin-Lim (:func:`cdsvae.fbank.logmel_to_waveform`)."""
        if self.vocoder is not None:
            return self.vocoder(logmel)
        from cdsvae.fbank import logmel_to_waveform

        return logmel_to_waveform(logmel, self.fbank, self.n_iter).astype(np.float32)

    # ---- video
    def _video_encode(self, frames, what: str):
        self.require("video", "a frame sequence")
        x = np.asarray(frames)
        m = self.config["model"]
        expected = (int(m["in_channels"]), 64, 64)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise UserError(f"{what}: expected frames (T, {', '.join(map(str, expected))}), got shape {x.shape}")
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(self.device)
        with torch.no_grad():
            return self.model.encode(x)

