"""Speaker subsets of a Kaldi data dir: a chosen list of speakers, or N drawn at random with a seed
(the work of ``cdsvae.bin.subset_data_dir``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cdsvae.data.datadir import DataDir, sorted_c
from cdsvae.data.validate import validate_data_dir
from cdsvae.io import UserError


def choose_speakers(speakers: Sequence[str], num_spk: int, seed: int) -> list[str]:
    """``num_spk`` of ``speakers`` drawn without replacement with ``seed``, in sorted order."""
    speakers = sorted_c(speakers)
    if not 1 <= num_spk <= len(speakers):
        raise UserError(f"--num_spk must be within 1..{len(speakers)} (the speakers there are), got {num_spk}")
    rng = np.random.default_rng(seed)
    return sorted_c(speakers[i] for i in rng.choice(len(speakers), size=num_spk, replace=False))


def read_speaker_list(path: Path, speakers: Sequence[str], src) -> list[str]:
    """The speakers listed in ``path`` (one a line), each of which must be one of ``speakers`` of ``src``."""
    if not path.is_file():
        raise UserError(f"{path}: no such speaker list")
    keep = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    unknown = [s for s in keep if s not in set(speakers)]
    if unknown:
        raise UserError(f"{path}: speaker '{unknown[0]}' is not in {src}")
    return keep


def subset_speakers(src, dst, spk_list=None, num_spk: int | None = None, seed: int = 0) -> tuple[int, int, int]:
    """Write to ``dst`` the data dir ``src`` restricted to the speakers of ``spk_list``, or to ``num_spk``
    drawn with ``seed``, and check it; returns (speakers kept, speakers there, utterances kept)."""
    data = DataDir.load(src)
    speakers = data.speakers
    if spk_list is not None:
        keep = read_speaker_list(Path(spk_list), speakers, src)
    else:
        keep = choose_speakers(speakers, num_spk, seed)
    spk2utt = data.spk2utt or {}
    utts = [u for s in keep for u in spk2utt.get(s, [])]
    if Path(dst).resolve() == Path(src).resolve():
        raise UserError(f"{dst}: the output must not be the source dir")
    data.subset(utts).save(dst)
    problems = validate_data_dir(dst, check_audio=False)
    if problems:
        raise UserError(f"{dst}: the subset is not a valid data dir: {problems[0]}")
    return len(keep), len(speakers), len(utts)
