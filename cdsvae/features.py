"""Log-mel filterbank features, audio reading, feature-file writing and global CMVN.

Features come from ``torchaudio.compliance.kaldi.fbank``: it reproduces Kaldi's
``compute-fbank-feats`` (povey window, DC removal, pre-emphasis, Kaldi mel scale,
``snip_edges``), so the features match what a Kaldi or ESPnet recipe would compute
from the same audio, and the frame count has Kaldi's closed form
``1 + (num_samples - window) // shift``, which ``utt2num_frames`` and the
voice-conversion stage rely on.  Waveforms are scaled to the 16-bit integer range
first, as Kaldi reads them, so the log floor means the same thing as in Kaldi.

The configuration is a small dict (or YAML file) with the keys of ``FBANK_DEFAULTS``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from cdsvae.errors import UserError
from cdsvae.io import atomic_open, atomic_write_text

_logger = logging.getLogger("cdsvae.features")

FBANK_DEFAULTS: dict = {
    "sample_rate": 16000,      # Hz the features are computed at
    "n_mels": 80,              # mel bins
    "frame_length_ms": 25.0,   # analysis window
    "frame_shift_ms": 10.0,    # hop
    "n_fft": None,             # None: window rounded up to a power of two (Kaldi); or the window length
    "fmin": 20.0,              # lowest mel edge, Hz (Kaldi's default)
    "fmax": None,              # highest mel edge, Hz; None: Nyquist
    "dither": 0.0,             # 0 keeps features deterministic
    "log_floor": 1.1920929e-07,  # mel energies are floored here before the log (Kaldi: float epsilon)
    "preemphasis": 0.97,
    "window": "povey",
    "resample": False,         # resample audio at another rate instead of failing
}

PCM_SCALE = 32768.0  # Kaldi reads 16-bit samples as integers


def load_fbank_config(cfg: Mapping | str | os.PathLike | None = None) -> dict:
    """Resolve a config dict or YAML path against ``FBANK_DEFAULTS``; unknown keys are an error."""
    source = "fbank config"
    if cfg is None:
        cfg = {}
    elif isinstance(cfg, (str, os.PathLike)):
        import yaml

        source = str(cfg)
        try:
            with open(cfg, encoding="utf-8") as f:
                cfg = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{source}: not valid YAML: {e}") from None
        if not isinstance(cfg, Mapping):
            raise UserError(f"{source}: expected a mapping of fbank options")
    unknown = sorted(set(cfg) - set(FBANK_DEFAULTS))
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(FBANK_DEFAULTS)}")
    out = dict(FBANK_DEFAULTS)
    out.update(cfg)
    if int(out["sample_rate"]) <= 0 or int(out["n_mels"]) <= 0:
        raise UserError(f"{source}: sample_rate and n_mels must be positive")
    win, shift = window_samples(out), shift_samples(out)
    if win <= 0 or shift <= 0:
        raise UserError(f"{source}: frame_length_ms and frame_shift_ms must give at least one sample")
    pow2 = 1 << (win - 1).bit_length()
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


def num_frames(num_samples: int, cfg: Mapping) -> int:
    """Frames Kaldi's ``snip_edges`` framing gives for ``num_samples`` samples."""
    win, shift = window_samples(cfg), shift_samples(cfg)
    return 0 if num_samples < win else 1 + (num_samples - win) // shift


# The containers read here, told apart by their first bytes; a file's name never decides its
# format (a ``.WAV`` may hold RIFF/WAVE, a ``.wav`` NIST SPHERE).
AUDIO_HEADERS = "NIST SPHERE (NIST_1A), RIFF/WAVE, FLAC or Ogg"


def sniff_audio_format(head: bytes) -> str | None:
    """``"sphere"``, ``"wav"``, ``"flac"`` or ``"ogg"`` from the first bytes of a file; None for anything else."""
    if head.startswith(b"NIST_1A"):
        return "sphere"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    return None


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says: its container (``sniff_audio_format``), rate, length, channels."""

    format: str
    sample_rate: int
    num_samples: int
    channels: int


def _sphere_sample_count(head: bytes) -> int | None:
    text = head[:1024].decode("latin-1", "replace")
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "sample_count":
            try:
                return int(fields[2])
            except ValueError:
                return None
    return None


def _wav_declared_frames(head: bytes) -> int | None:
    """Frames a RIFF/WAVE header promises (None when unknown, e.g. a streamed header)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align, fmt_tag = 12, None, None
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if cid == b"fmt " and pos + 22 <= len(head):
            fmt_tag, _, _, _, block_align = struct.unpack("<HHIIH", head[pos + 8:pos + 22])
        if cid == b"data":
            if block_align in (None, 0) or fmt_tag not in (1, 3, 6, 7, 0xFFFE) or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def _file_info(path: Path, what: str) -> AudioInfo:
    import soundfile as sf

    if not path.is_file():
        raise UserError(f"audio file not found: {what}")
    with open(path, "rb") as f:
        head = f.read(65536)
    if not head:
        raise UserError(f"empty audio file: {what}")
    fmt = sniff_audio_format(head)
    if fmt is None:
        raise UserError(f"unknown audio format (the file starts with {head[:8]!r}; expected {AUDIO_HEADERS}): {what}")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        hint = ""
        if fmt == "sphere" and b"shorten" in head[:1024]:
            hint = " (shorten-compressed SPHERE: put 'sph2pipe -f wav FILE |' in wav.scp)"
        raise UserError(f"cannot decode audio file: {what}: {e}{hint}") from None
    declared = None
    if fmt == "sphere":
        declared = _sphere_sample_count(head)
    elif fmt == "wav":
        declared = _wav_declared_frames(head)
    if declared is not None and info.frames < declared:
        raise UserError(f"truncated audio file: header declares {declared} samples, found {info.frames}: {what}")
    return AudioInfo(fmt, int(info.samplerate), int(info.frames), int(info.channels))


def audio_file_info(path: str | os.PathLike, name: str | None = None) -> AudioInfo:
    """Read an audio file's header without decoding its samples.

    The format is decided from the file's first bytes, never from its name.  A missing,
    empty, unknown (neither of ``AUDIO_HEADERS``), undecodable or truncated file (fewer
    samples than its header declares) is a one-line UserError naming the file, and the
    utterance ``name`` when given.
    """
    return _file_info(Path(path), f"{path}" + (f" (utterance {name})" if name else ""))


def read_audio(spec: str, name: str | None = None) -> tuple[np.ndarray, int]:
    """Read a mono waveform from a path or a Kaldi pipe (``"cmd args |"``): (float32 samples in [-1, 1], rate).

    The one reader of wav.scp entries.  A file's format comes from its header
    (``audio_file_info``), whatever its extension; a pipe's output is decoded as what it
    starts with.  ``name`` (the utterance id) is added to error messages.  Missing, empty,
    unknown, truncated (fewer samples than the header declares), undecodable and
    multi-channel audio are UserErrors naming the file.
    """
    import soundfile as sf

    what = f"{spec.strip()}" + (f" (utterance {name})" if name else "")
    spec = spec.strip()
    if spec.endswith("|"):
        cmd = spec[:-1].strip()
        proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise UserError(f"audio command failed with exit status {proc.returncode}: {what}: {tail[0]}")
        if not proc.stdout:
            raise UserError(f"empty audio from command: {what}")
        try:
            data, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            raise UserError(f"cannot decode audio from command: {what}: {e}") from None
        declared = None
    else:
        path = Path(spec)
        info = _file_info(path, what)
        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            raise UserError(f"cannot decode audio file: {what}: {e}") from None
        declared = info.num_samples
    if data.shape[1] != 1:
        raise UserError(f"expected mono audio, got {data.shape[1]} channels: {what}")
    if declared is not None and data.shape[0] < declared:
        raise UserError(f"truncated audio file: header declares {declared} samples, found {data.shape[0]}: {what}")
    if data.shape[0] == 0:
        raise UserError(f"audio has no samples: {what}")
    return np.ascontiguousarray(data[:, 0]), int(rate)


def resample_if_needed(wave: np.ndarray, rate: int, cfg: Mapping, what: str) -> np.ndarray:
    """Bring ``wave`` to ``cfg['sample_rate']``: resample when allowed, else a UserError naming ``what``."""
    target = int(cfg["sample_rate"])
    if rate == target:
        return wave
    if not cfg.get("resample", False):
        raise UserError(f"sample rate {rate} Hz, expected {target} Hz (set resample: true to convert): {what}")
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate, target)
    return out.numpy()


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
    win = window_samples(cfg)
    n_fft = cfg.get("n_fft")
    with torch.no_grad():
        mel = kaldi.fbank(
            torch.from_numpy(wave * np.float32(PCM_SCALE)).unsqueeze(0),
            sample_frequency=float(cfg["sample_rate"]),
            num_mel_bins=int(cfg["n_mels"]),
            frame_length=float(cfg["frame_length_ms"]),
            frame_shift=float(cfg["frame_shift_ms"]),
            round_to_power_of_two=n_fft is None or int(n_fft) != win,
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


def check_finite(feats: np.ndarray, what: str) -> None:
    """Refuse NaN/Inf: they would poison every statistic computed from the feature file."""
    if not np.isfinite(feats).all():
        bad = np.argwhere(~np.isfinite(feats))[0]
        raise UserError(f"non-finite feature value at frame {bad[0]}: {what}")


def fbank_from_audio(spec: str, cfg: Mapping, name: str | None = None,
                     start: float | None = None, end: float | None = None) -> np.ndarray:
    """Read audio (path or pipe), optionally cut ``[start, end)`` seconds, and compute its features."""
    wave, rate = read_audio(spec, name)
    what = spec.strip() + (f" (utterance {name})" if name else "")
    wave = cut_segment(wave, rate, start, end, what)
    wave = resample_if_needed(wave, rate, cfg, what)
    return compute_fbank(wave, cfg, what)


def cut_segment(wave: np.ndarray, rate: int, start: float | None, end: float | None, what: str) -> np.ndarray:
    """Samples of a Kaldi ``segments`` entry; ``end`` of -1 means the end of the recording."""
    if start is None:
        return wave
    b = int(round(start * rate))
    e = wave.size if end is None or end < 0 else int(round(end * rate))
    if e > wave.size + int(0.02 * rate) or b >= e:
        raise UserError(f"segment [{start}, {end}] s lies outside the {wave.size / rate:.3f} s recording: {what}")
    return wave[b:min(e, wave.size)]


class FeatureWriter:
    """Write features to ``<stem>.ark`` + ``<stem>.scp`` (+ utt2num_frames) atomically.

    The ark goes to a temporary name and is renamed when complete; the scp and
    utt2num_frames are written last, so a reader never sees an scp that points into a
    partial ark.  Every matrix is checked for NaN/Inf before it is written.
    """

    def __init__(self, ark: str | os.PathLike, scp: str | os.PathLike,
                 utt2num_frames: str | os.PathLike | None = None):
        self.ark, self.scp, self.utt2num_frames = str(ark), scp, utt2num_frames
        self._stack = contextlib.ExitStack()
        self._f = None
        self._entries: list[tuple[str, int, int]] = []
        self.dim: int | None = None

    def __enter__(self) -> "FeatureWriter":
        self._f = self._stack.enter_context(atomic_open(self.ark, "wb"))
        return self

    def write(self, key: str, feats: np.ndarray) -> None:
        import kaldiio

        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] == 0:
            raise UserError(f"features of {key} must be a non-empty (frames, dim) matrix, got shape {feats.shape}")
        if self.dim is not None and feats.shape[1] != self.dim:
            raise UserError(f"features of {key} have dim {feats.shape[1]}, earlier ones {self.dim}")
        if not key or any(c.isspace() for c in key):
            raise UserError(f"invalid utterance id {key!r}")
        check_finite(feats, f"utterance {key}")
        self.dim = feats.shape[1]
        offset = self._f.tell() + len((key + " ").encode("utf-8"))
        kaldiio.save_ark(self._f, {key: feats})
        self._entries.append((key, offset, feats.shape[0]))

    def __exit__(self, exc_type, exc, tb) -> bool:
        failed = exc_type is not None
        self._stack.__exit__(exc_type, exc, tb)  # renames the ark on success, removes it on failure
        if not failed:
            with atomic_open(self.scp, "w", encoding="utf-8") as f:
                f.writelines(f"{k} {self.ark}:{o}\n" for k, o, _ in self._entries)
            if self.utt2num_frames is not None:
                with atomic_open(self.utt2num_frames, "w", encoding="utf-8") as f:
                    f.writelines(f"{k} {n}\n" for k, _, n in self._entries)
        return False


class CMVNStats:
    """Global per-dimension mean and variance over a feature set, accumulated in float64."""

    def __init__(self, dim: int | None = None):
        self.count = 0
        self.sum = None if dim is None else np.zeros(dim)
        self.sum_sq = None if dim is None else np.zeros(dim)

    def accumulate(self, feats: np.ndarray) -> None:
        feats = np.asarray(feats, dtype=np.float64)
        if self.sum is None:
            self.sum, self.sum_sq = np.zeros(feats.shape[1]), np.zeros(feats.shape[1])
        if feats.shape[1] != self.sum.size:
            raise UserError(f"feature dim {feats.shape[1]} differs from the earlier {self.sum.size}")
        self.count += feats.shape[0]
        self.sum += feats.sum(axis=0)
        self.sum_sq += np.square(feats).sum(axis=0)

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.count

    @property
    def std(self) -> np.ndarray:
        var = self.sum_sq / self.count - np.square(self.mean)
        return np.sqrt(np.maximum(var, 1e-10))

    def save(self, path: str | os.PathLike) -> None:
        """``.npz`` (sum, sum_sq, count, mean, std) or else a Kaldi global stats matrix (2 x dim+1)."""
        if not self.count:
            raise UserError(f"no frames accumulated for {path}")
        if str(path).endswith(".npz"):
            with atomic_open(path, "wb") as f:
                np.savez(f, sum=self.sum, sum_sq=self.sum_sq, count=np.int64(self.count),
                         mean=self.mean, std=self.std)
        else:
            import kaldiio

            stats = np.zeros((2, self.sum.size + 1))
            stats[0, :-1], stats[0, -1], stats[1, :-1] = self.sum, self.count, self.sum_sq
            with atomic_open(path, "wb") as f:
                kaldiio.save_mat(f, stats)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CMVNStats":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"CMVN stats file not found: {path}")
        out = cls()
        try:
            if path.suffix == ".npz":
                with np.load(path) as z:
                    out.sum, out.sum_sq, out.count = z["sum"], z["sum_sq"], int(z["count"])
            else:
                import kaldiio

                stats = np.asarray(kaldiio.load_mat(str(path)), dtype=np.float64)
                if stats.ndim != 2 or stats.shape[0] != 2:
                    raise ValueError(f"expected a 2 x (dim+1) matrix, got shape {stats.shape}")
                out.sum, out.count, out.sum_sq = stats[0, :-1], int(round(stats[0, -1])), stats[1, :-1]
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f"cannot read CMVN stats {path}: {e}") from None
        if out.count <= 0:
            raise UserError(f"CMVN stats {path} count no frames")
        return out

    def apply(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - self.mean) / self.std).astype(np.float32)


def read_utt2num_frames(path: str | os.PathLike) -> dict[str, int]:
    out: dict[str, int] = {}
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].isdigit():
                raise UserError(f"{path}:{lineno}: expected 'utt num_frames', got {line.strip()!r}")
            out[fields[0]] = int(fields[1])
    return out


def match_num_frames(feats: np.ndarray, target: int, what: str, tolerance: int = 1) -> np.ndarray:
    """Trim trailing frames, or repeat the last frame, to get exactly ``target`` frames.

    Used where two feature sets must align frame by frame (a converted copy against
    its original); a difference larger than ``tolerance`` frames is an error.
    """
    n = feats.shape[0]
    if abs(n - target) > tolerance:
        raise UserError(f"{n} frames where {target} were expected (more than {tolerance} off): {what}")
    if n > target:
        return feats[:target]
    if n < target:
        return np.concatenate([feats, np.repeat(feats[-1:], target - n, axis=0)])
    return feats


def iter_fbank_jobs(items: Iterable[tuple[str, str, float | None, float | None]], cfg: Mapping):
    """Yield (utt, features or UserError) for (utt, wav spec, start, end) items, reusing a recording."""
    cache_key, cache = None, None
    for utt, spec, start, end in items:
        try:
            if start is None:
                yield utt, fbank_from_audio(spec, cfg, utt)
                continue
            if cache_key != spec:
                cache_key, cache = spec, read_audio(spec, utt)
            wave, rate = cache
            what = f"{spec.strip()} (utterance {utt})"
            piece = resample_if_needed(cut_segment(wave, rate, start, end, what), rate, cfg, what)
            yield utt, compute_fbank(piece, cfg, what)
        except UserError as e:
            yield utt, e


def audio_items(data_dir: str | Path):
    """(utt, wav.scp entry, start, end) for every utterance of a data dir, in C order."""
    from cdsvae.data.datadir import DataDir

    data = DataDir.load(data_dir)
    wav = data.wav_scp
    if wav is None:
        raise UserError(f"{Path(data_dir) / 'wav.scp'}: missing")
    items = []
    if data.segments is not None:
        for utt in data.utterances:
            fields = data.segments[utt].split()
            try:
                reco, start, end = fields[0], float(fields[1]), float(fields[2])
            except (IndexError, ValueError):
                raise UserError(f"{Path(data_dir) / 'segments'}: '{utt}': expected 'recording start end'") from None
            if reco not in wav:
                raise UserError(f"{Path(data_dir) / 'segments'}: '{utt}': recording '{reco}' not in wav.scp")
            items.append((utt, wav[reco], start, end))
    else:
        for utt in data.utterances:
            if utt not in wav:
                raise UserError(f"{Path(data_dir) / 'wav.scp'}: no entry for utterance '{utt}'")
            items.append((utt, wav[utt], None, None))
    if not items:
        raise UserError(f"{data_dir}: no utterances")
    return items


def job_paths(featdir: Path, job: int, stem: str = "raw_fbank") -> dict[str, Path]:
    d = featdir / "data"
    return {"ark": d / f"{stem}.{job}.ark", "scp": d / f"{stem}.{job}.scp",
            "utt2num_frames": d / f"utt2num_frames.{job}", "bad": d / f"bad.{job}", "config": d / f"fbank.{job}.yaml"}


def run_job(items, cfg: dict, featdir: Path, job: int, skip_bad: bool, features_fn=None, stem: str = "raw_fbank",
            desc: str = "fbank") -> tuple[int, int]:
    """Write one job's features; return (written, skipped).

    ``features_fn(items, cfg)`` yields (utt, matrix or UserError); the default computes
    filterbanks from the audio.
    """
    import yaml
    from tqdm import tqdm

    paths = job_paths(featdir, job, stem)
    features_fn = features_fn or iter_fbank_jobs
    bad: list[str] = []
    written = 0
    with FeatureWriter(paths["ark"], paths["scp"], paths["utt2num_frames"]) as writer:
        for utt, feats in tqdm(features_fn(items, cfg), total=len(items), desc=f"{desc} job {job}",
                               unit="utt", mininterval=10, file=sys.stderr):
            if isinstance(feats, UserError):
                if not skip_bad:
                    raise feats
                _logger.warning("skipping bad utterance %s: %s", utt, feats)
                bad.append(f"{utt} {feats}\n")
                continue
            writer.write(utt, feats)
            written += 1
    atomic_write_text(paths["bad"], "".join(bad))
    atomic_write_text(paths["config"], yaml.safe_dump(cfg, sort_keys=True))
    _logger.info("%s job %d: wrote %d utterances, skipped %d bad", desc, job, written, len(bad))
    return written, len(bad)


def merge_jobs(data_dir: Path, featdir: Path, nj: int, stem: str = "raw_fbank", desc: str = "fbank",
               config_name: str = "fbank.yaml") -> tuple[int, int]:
    """Collect job outputs into ``featdir`` as a data dir with feats.scp; return (utterances, skipped)."""
    from cdsvae.data.datadir import DataDir, read_scp, write_scp

    data = DataDir.load(data_dir)
    feats: dict[str, str] = {}
    frames: dict[str, int] = {}
    bad: dict[str, str] = {}
    config_text = None
    for job in range(1, nj + 1):
        paths = job_paths(featdir, job, stem)
        for key in ("scp", "utt2num_frames", "bad", "config"):
            if not paths[key].is_file():
                raise UserError(f"{paths[key]}: missing: did {desc} job {job} of {nj} fail?")
        text = paths["config"].read_text(encoding="utf-8")
        if config_text is not None and text != config_text:
            raise UserError(f"{paths['config']}: options differ from job 1: rerun all jobs with the same config")
        config_text = text
        feats.update(read_scp(paths["scp"]))
        frames.update(read_utt2num_frames(paths["utt2num_frames"]))
        for line in paths["bad"].read_text(encoding="utf-8").splitlines():
            utt, _, why = line.partition(" ")
            bad[utt] = why
    utts = data.utterances
    missing = [u for u in utts if u not in feats and u not in bad]
    if missing:
        raise UserError(f"{featdir}: {len(missing)} utterance(s) of {data_dir} have no features "
                        f"(e.g. {', '.join(missing[:3])}): were all {nj} jobs run on {data_dir}/split{nj}?")
    kept = [u for u in utts if u in feats]
    if not kept:
        raise UserError(f"{data_dir}: no utterance produced features ({len(bad)} bad)")
    out = data.subset(kept)
    out.tables["feats.scp"] = {u: feats[u] for u in kept}
    out.tables["utt2num_frames"] = {u: str(frames[u]) for u in kept}
    out.save(featdir)
    import yaml

    cfg = yaml.safe_load(config_text)
    atomic_write_text(featdir / "feat_dim", f"{cfg['n_mels']}\n")
    atomic_write_text(featdir / config_name, config_text)
    if bad:
        write_scp(featdir / "bad_utts", bad)
        _logger.warning("%s: skipped %d of %d utterances (bad audio), listed in %s",
                       featdir, len(bad), len(utts), featdir / "bad_utts")
    _logger.info("%s: %d utterances, %d frames", featdir / "feats.scp", len(kept), sum(frames[u] for u in kept))
    return len(kept), len(bad)
