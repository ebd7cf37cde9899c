"""Reading audio: container headers, wav.scp entries (files and pipes), segments, resampling.

``read_audio`` is the one reader of a wav.scp entry; ``read_utterances`` runs it over the
(utterance, entry, start, end) items of a data dir, reading a recording once for all of its
consecutive segments.  A file's format comes from its first bytes (``sniff_audio_format``),
never from its name (a ``.WAV`` may hold RIFF/WAVE, a ``.wav`` NIST SPHERE), and a header
is checked against the samples it promises (``audio_file_info``, ``read_sphere_header``).
Several channels are mixed down to one (their mean), or one channel is taken (``channel``: an
index from 0), as ``select_channel`` says.  Every problem is a one-line UserError naming the
file and, when known, the utterance.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from cdsvae.io import UserError

# The containers read here, told apart by their first bytes.
AUDIO_HEADERS = "NIST SPHERE (NIST_1A), RIFF/WAVE, FLAC or Ogg"

# How several channels become one: "mix" (their mean) or a channel index from 0.
MIX = "mix"

# soundfile (libsndfile) and torchaudio are imported where they are used: importing this
# module for a header or a format check does not load them.


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


def _sphere_header_size(head: bytes) -> int:
    lines = head.split(b"\n")
    if not head.startswith(b"NIST_1A") or len(lines) < 3:
        raise ValueError("not a NIST SPHERE file (no NIST_1A header)")
    try:
        return int(lines[1])
    except ValueError:
        raise ValueError(f"bad SPHERE header size {lines[1][:20]!r}") from None


def parse_sphere_header(head: bytes) -> dict[str, int | float | str]:
    """The fields of the NIST SPHERE header at the start of ``head``, plus ``header_size``.

    ``key -type value`` lines up to ``end_head`` (``-i`` integer, ``-r`` real, ``-sN`` text).
    A ValueError says what is wrong: no ``NIST_1A``, a bad size or field, no ``end_head``
    (``head`` must hold the whole header).
    """
    fields: dict[str, int | float | str] = {"header_size": _sphere_header_size(head)}
    for raw in head.split(b"\n")[2:]:
        line = raw.decode("ascii", errors="replace").strip()
        if line == "end_head":
            return fields
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[1].startswith("-"):
            continue
        key, kind, value = parts
        try:
            fields[key] = int(value) if kind == "-i" else float(value) if kind == "-r" else value
        except ValueError:
            raise ValueError(f"bad SPHERE header field {line!r}") from None
    raise ValueError("SPHERE header has no end_head (truncated header?)")


def read_sphere_header(path: str | os.PathLike) -> dict[str, int | float | str]:
    """Check and parse the header of a NIST SPHERE file (see ``parse_sphere_header``).

    Also a UserError naming the file: unreadable, empty, no sample_rate or sample_count, a
    sample_coding other than pcm (shorten-compressed pcm is accepted: its header is all that
    is read), or fewer bytes than the header announces.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if size == 0:
        raise UserError(f"{path}: empty file")
    try:
        header_size = _sphere_header_size(head)
        if header_size > len(head):
            with open(path, "rb") as f:
                head = f.read(header_size)
        fields = parse_sphere_header(head)
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None
    for key in ("sample_rate", "sample_count"):
        if key not in fields:
            raise UserError(f"{path}: SPHERE header lacks {key}")
    coding = str(fields.get("sample_coding", "pcm"))
    if coding.split(",")[0] != "pcm":
        raise UserError(f"{path}: SPHERE sample_coding {coding!r} is not supported (expected pcm)")
    if "shorten" in coding:
        return fields
    frame_bytes = int(fields.get("sample_n_bytes", 2)) * int(fields.get("channel_count", 1))
    expected = header_size + int(fields["sample_count"]) * frame_bytes
    if size < expected:
        raise UserError(f"{path}: truncated: {size} bytes, header announces {expected}")
    return fields


def _sphere_declared_samples(head: bytes) -> int | None:
    """Samples a SPHERE header promises (None when it does not say or cannot be parsed)."""
    try:
        count = parse_sphere_header(head).get("sample_count")
        return None if count is None else int(count)
    except ValueError:
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
        declared = _sphere_declared_samples(head)
    elif fmt == "wav":
        declared = _wav_declared_frames(head)
    if declared is not None and info.frames < declared:
        raise UserError(f"truncated audio file: header declares {declared} samples, found {info.frames}: {what}")
    return AudioInfo(fmt, int(info.samplerate), int(info.frames), int(info.channels))


def audio_label(spec: str, name: str | None = None) -> str:
    """How messages name a wav.scp entry: the entry, and the utterance when given."""
    return spec.strip() + (f" (utterance {name})" if name else "")


def audio_file_info(path: str | os.PathLike, name: str | None = None) -> AudioInfo:
    """Read an audio file's header without decoding its samples.

    The format is decided from the file's first bytes, never from its name.  A missing,
    empty, unknown (neither of ``AUDIO_HEADERS``), undecodable or truncated file (fewer
    samples than its header declares) is a one-line UserError naming the file, and the
    utterance ``name`` when given.
    """
    return _file_info(Path(path), audio_label(str(path), name))


def check_channel(channel: str | int, source: str = "channel") -> str | int:
    """``channel`` as ``select_channel`` takes it: ``"mix"`` or an index from 0 (a UserError otherwise)."""
    if channel == MIX:
        return MIX
    if isinstance(channel, bool) or not isinstance(channel, (int, str)) or not str(channel).isdigit():
        raise UserError(f"{source}: channel must be '{MIX}' (the mean of the channels) or a channel index "
                        f"from 0, got {channel!r}")
    return int(channel)


def select_channel(data: np.ndarray, channel: str | int, what: str) -> np.ndarray:
    """One channel of ``(samples, channels)``: their mean for ``"mix"``, else the channel of that index.

    Mono audio passes unchanged under ``"mix"`` and channel 0; an index beyond the channels the
    audio has is a UserError naming ``what``.
    """
    channel = check_channel(channel)
    n = data.shape[1]
    if channel == MIX:
        return data[:, 0] if n == 1 else data.mean(axis=1, dtype=np.float64).astype(np.float32)
    if channel >= n:
        raise UserError(f"channel {channel} asked for, the audio has {n} channel{'s' if n > 1 else ''} "
                        f"(channels count from 0; '{MIX}' takes their mean): {what}")
    return data[:, channel]


def _read_recording(spec: str, what: str, channel: str | int = MIX) -> tuple[np.ndarray, int]:
    """The samples (float32 in [-1, 1]) of ``channel`` (``select_channel``) and the rate of a path or a
    ``"cmd args |"`` pipe."""
    import soundfile as sf

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
    if declared is not None and data.shape[0] < declared:
        raise UserError(f"truncated audio file: header declares {declared} samples, found {data.shape[0]}: {what}")
    if data.shape[0] == 0:
        raise UserError(f"audio has no samples: {what}")
    return np.ascontiguousarray(select_channel(data, channel, what)), int(rate)


def cut_segment(wave: np.ndarray, rate: int, start: float | None, end: float | None, what: str) -> np.ndarray:
    """Samples of a Kaldi ``segments`` entry; ``end`` of -1 means the end of the recording."""
    if start is None:
        return wave
    b = int(round(start * rate))
    e = wave.size if end is None or end < 0 else int(round(end * rate))
    if e > wave.size + int(0.02 * rate) or b >= e:
        raise UserError(f"segment [{start}, {end}] s lies outside the {wave.size / rate:.3f} s recording: {what}")
    return wave[b:min(e, wave.size)]


def resample_to(wave: np.ndarray, rate: int, target: int | None, allowed: bool, what: str) -> np.ndarray:
    """``wave`` at ``target`` Hz (None: as it is): resampled when ``allowed``, else a UserError naming ``what``."""
    if target is None or rate == int(target):
        return wave
    target = int(target)
    if not allowed:
        raise UserError(f"sample rate {rate} Hz, expected {target} Hz (set resample: true to convert): {what}")
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate, target)
    return out.numpy()


def read_audio(spec: str, name: str | None = None, start: float | None = None, end: float | None = None,
               sample_rate: int | None = None, resample: bool = False,
               channel: str | int = MIX) -> tuple[np.ndarray, int]:
    """Read a waveform from a path or a Kaldi pipe (``"cmd args |"``): (float32 samples in [-1, 1], rate).

    The one reader of wav.scp entries.  A file's format comes from its header
    (``audio_file_info``), whatever its extension; a pipe's output is decoded as what it
    starts with.  ``start``/``end`` (seconds) cut a ``segments`` entry out of the recording;
    with ``sample_rate`` the samples come at that rate, resampled if ``resample`` and an
    error otherwise.  Several channels become one as ``channel`` says (``select_channel``: their
    mean by default).  ``name`` (the utterance id) is added to error messages.  Missing, empty,
    unknown, truncated (fewer samples than the header declares) and undecodable audio, and a
    channel the audio lacks, are UserErrors naming the file.
    """
    what = audio_label(spec, name)
    wave, rate = _read_recording(spec, what, channel)
    wave = resample_to(cut_segment(wave, rate, start, end, what), rate, sample_rate, resample, what)
    return wave, rate if sample_rate is None else int(sample_rate)


def read_utterances(items: Iterable[tuple[str, str, float | None, float | None]], sample_rate: int | None = None,
                    resample: bool = False, channel: str | int = MIX
                    ) -> Iterator[tuple[str, str, np.ndarray | UserError]]:
    """``(utt, label, samples or the UserError that stopped them)`` for (utt, wav.scp entry, start, end) items.

    As ``read_audio`` for each item, but consecutive items of one recording (the segments of
    a ``segments`` file) read it once.  ``label`` names the utterance in messages.
    """
    cache_key, cache = None, None
    for utt, spec, start, end in items:
        what = audio_label(spec, utt)
        try:
            if cache_key != spec:
                cache_key, cache = spec, _read_recording(spec, what, channel)
            wave, rate = cache
            wave = resample_to(cut_segment(wave, rate, start, end, what), rate, sample_rate, resample, what)
        except UserError as e:
            yield utt, what, e
            continue
        yield utt, what, wave


def write_wav(path: str | os.PathLike, wave: np.ndarray, sample_rate: int) -> Path:
    """Write mono samples in [-1, 1] as a 16-bit PCM wav, atomically."""
    import soundfile as sf

    from cdsvae.io import atomic_write_bytes

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0), int(sample_rate), format="WAV",
             subtype="PCM_16")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
