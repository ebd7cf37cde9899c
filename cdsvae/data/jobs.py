"""Per-utterance feature jobs over a data dir: the items of a job, its outputs, and their merge.

A stage that turns audio into features (``make_fbank``, ``world_vc``) runs ``JOB=1:nj``
over the parts of ``split_data_dir``: ``audio_items`` lists a part's utterances,
``run_job`` writes ``FEATDIR/data/<stem>.JOB.{ark,scp}``, ``utt2num_frames.JOB``,
``bad.JOB`` (utterances skipped with the reason) and ``fbank.JOB.yaml`` (the options) in
one or several feature dirs at once, and ``merge_jobs`` makes a feature dir a data dir with
``feats.scp``, ``utt2num_frames``, ``feat_dim`` and ``bad_utts``.  What the features are is
the caller's ``features_fn``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import yaml
from tqdm import tqdm

from cdsvae.data.datadir import DataDir, read_scp, write_scp
from cdsvae.data.feats import FeatureWriter, read_utt2num_frames
from cdsvae.io import UserError, atomic_write_text

_logger = logging.getLogger(__name__)

Item = tuple[str, str, float | None, float | None]
"""(utterance, wav.scp entry, start, end): ``start``/``end`` in seconds from ``segments``, else None."""

FeaturesFn = Callable[[Sequence[Item], dict], Iterator[tuple[str, Any]]]
"""``features_fn(items, cfg)`` of ``run_job``."""


def audio_items(data_dir: str | os.PathLike) -> list[Item]:
    """(utt, wav.scp entry, start, end) for every utterance of a data dir, in C order."""
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


def run_job(items: Sequence[Item], cfg: dict, featdirs: Path | Iterable[Path], job: int, skip_bad: bool,
            features_fn: FeaturesFn, stem: str = "raw_fbank", desc: str = "fbank",
            log: logging.Logger = _logger) -> tuple[int, int]:
    """Write one job's features; return (written, skipped).

    ``features_fn(items, cfg)`` yields (utt, result) in item order: the utterance's matrix
    (one per dir, in order, when ``featdirs`` is a list of dirs), or the UserError that
    makes it bad: raised, or with ``skip_bad`` logged and listed in every dir's ``bad.JOB``.
    """
    several = not isinstance(featdirs, (str, os.PathLike))
    paths = [job_paths(Path(d), job, stem) for d in (featdirs if several else [featdirs])]
    bad: list[str] = []
    written = 0
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(FeatureWriter(p["ark"], p["scp"], p["utt2num_frames"])) for p in paths]
        for utt, feats in tqdm(features_fn(items, cfg), total=len(items), desc=f"{desc} job {job}",
                               unit="utt", mininterval=10, delay=5, file=sys.stderr):
            if isinstance(feats, UserError):
                if not skip_bad:
                    raise feats
                log.warning("skipping bad utterance %s: %s", utt, feats)
                bad.append(f"{utt} {feats}\n")
                continue
            for writer, mat in zip(writers, feats if several else [feats], strict=True):
                writer.write(utt, mat)
            written += 1
    for p in paths:
        atomic_write_text(p["bad"], "".join(bad))
        atomic_write_text(p["config"], yaml.safe_dump(cfg, sort_keys=True))
    return written, len(bad)


def merge_jobs(data_dir: Path, featdir: Path, nj: int, stem: str = "raw_fbank", desc: str = "fbank",
               config_name: str = "fbank.yaml", log: logging.Logger = _logger) -> tuple[int, int]:
    """Collect job outputs into ``featdir`` as a data dir with feats.scp; return (utterances, skipped)."""
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
    cfg = yaml.safe_load(config_text)
    atomic_write_text(featdir / "feat_dim", f"{cfg['n_mels']}\n")
    atomic_write_text(featdir / config_name, config_text)
    if bad:
        write_scp(featdir / "bad_utts", bad)
        log.warning("%s: skipped %d of %d utterances (bad audio), listed in %s",
                    featdir, len(bad), len(utts), featdir / "bad_utts")
    else:  # a list from an earlier run would be counted as skipped now
        (featdir / "bad_utts").unlink(missing_ok=True)
    log.info("%s: %d utterances, %d frames", featdir / "feats.scp", len(kept), sum(frames[u] for u in kept))
    return len(kept), len(bad)
