"""A small corpus of the kind people have, for egs/custom: espeak-ng voices in speaker folders,
one stereo 44.1 kHz file, one 8 kHz file, one too short, one that is not audio, and transcripts
beside half of the files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

# (speaker folder as people name them, espeak-ng voice, pitch): folder names with spaces and
# characters Kaldi ids cannot hold, and two that become the same id.
SPEAKERS = (("Anna K", "en-us+f2", 60), ("Anna-K", "en-us+f4", 75), ("bob.smith", "en-us+m1", 35),
            ("carl", "en-us+m3", 50), ("dora", "en-us+f1", 85), ("ed", "en-us+m5", 25))
SENTENCES = ("the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
             "a bright kite drifted over the green hills", "we will meet at noon near the old mill",
             "many hands make light work in the morning", "the rain fell softly on the quiet town")
UTTS_PER_SPEAKER = 4


def synthesise(path: Path, voice: str, pitch: int, text: str) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", "165", "-w", str(path), text],
                   check=True, capture_output=True)


def at_rate(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    return AF.resample(torch.from_numpy(wave.astype(np.float32)), rate, target).numpy()


def make_corpus(root: Path) -> dict[str, Path]:
    """``root/audio/<speaker>/...`` and the special files by role (stereo44k, rate8k, short, junk)."""
    audio = root / "audio"
    special = {}
    folders = {speaker: audio / speaker / ("session 1" if k % 2 else "") for k, (speaker, _, _) in enumerate(SPEAKERS)}
    for k, (speaker, voice, pitch) in enumerate(SPEAKERS):
        folder = folders[speaker]
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(UTTS_PER_SPEAKER):
            text = SENTENCES[(k + j) % len(SENTENCES)]
            wav = folder / f"rec {j}.wav" if k == 0 else folder / f"u{j}.wav"
            synthesise(wav, voice, pitch, text)
            if j % 2 == 0:  # half of the files have a transcript beside them
                wav.with_suffix(".txt").write_text(text.capitalize() + ".\n")
    # a stereo 44.1 kHz recording: the voice on the left, a quieter copy on the right
    special["stereo44k"] = folders["carl"] / "u1.wav"
    wave, rate = sf.read(special["stereo44k"], dtype="float32")
    up = at_rate(wave, rate, 44100)
    sf.write(special["stereo44k"], np.stack([up, 0.5 * up], 1), 44100, subtype="PCM_16")
    # an 8 kHz recording, stored as FLAC
    wave, rate = sf.read(folders["dora"] / "u1.wav", dtype="float32")
    (folders["dora"] / "u1.wav").unlink()
    special["rate8k"] = folders["dora"] / "u1.flac"
    sf.write(special["rate8k"], at_rate(wave, rate, 8000), 8000)
    # too short (0.1 s) and not audio at all
    special["short"] = folders["ed"] / "click.wav"
    sf.write(special["short"], np.zeros(2205, dtype=np.float32), 22050)
    special["junk"] = audio / "bob.smith" / "broken.wav"
    special["junk"].write_bytes(b"not a recording" * 20)
    return special


def write_manifest(root: Path, audio: Path, with_text: bool) -> Path:
    """A TSV over the same files (paths relative to the manifest), with or without a text column."""
    rows = []
    for path in sorted(p for p in audio.rglob("*") if p.suffix in (".wav", ".flac")):
        speaker = path.relative_to(audio).parts[0]
        txt = path.with_suffix(".txt")
        text = txt.read_text().strip() if txt.is_file() else ""
        rel = path.relative_to(root).as_posix()
        rows.append(f"{rel}\t{speaker}" + (f"\t{text}" if with_text else ""))
    manifest = root / ("manifest_text.tsv" if with_text else "manifest.tsv")
    manifest.write_text(("path\tspeaker\ttext\n" if with_text else "path\tspeaker\n") + "\n".join(rows) + "\n")
    return manifest
