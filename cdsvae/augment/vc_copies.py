"""K voice-converted copies of the utterances of a feature dir, as log-mel data dirs parallel to the
original (``OUT/copy1..copyK``): one job's conversion, and the merge of the jobs (the work of
``cdsvae.bin.world_vc``, whose help describes the layout).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from cdsvae.audio import read_utterances
from cdsvae.augment.world_vc import VCConfig, draw_conversion, load_vc_config, world_analyze, world_convert
from cdsvae.data.feats import match_num_frames, read_utt2num_frames
from cdsvae.data.jobs import audio_items, job_paths, merge_jobs, run_job
from cdsvae.fbank import compute_fbank, load_fbank_config
from cdsvae.io import UserError, atomic_write_text

logger = logging.getLogger("world_vc")


def convert_job(src: Path, outdir: Path, job: int, cfg: dict, vc: VCConfig, skip_bad: bool) -> tuple[int, int]:
    """Write copies 1..K of every utterance of ``src`` for one job; return (written, skipped)."""
    if not (src / "utt2num_frames").is_file():
        raise UserError(f"{src / 'utt2num_frames'}: missing (run make_fbank on this data first)")
    ref_frames = read_utt2num_frames(src / "utt2num_frames")
    items = [it for it in audio_items(src) if it[0] in ref_frames]
    if not items:
        raise UserError(f"{src}: no utterance with features in utt2num_frames")
    k_copies = vc.num_copies
    params: list[list[str]] = [[] for _ in range(k_copies)]

    def convert(items, cfg):
        """(utt, [features of copies 1..K] or UserError); the parameters drawn go to ``params``."""
        for utt, what, wave in read_utterances(items, int(cfg["sample_rate"]), bool(cfg.get("resample", False)),
                                               cfg.get("channel", "mix")):
            if isinstance(wave, UserError):
                yield utt, wave
                continue
            try:
                analysis = world_analyze(wave, int(cfg["sample_rate"]), vc.frame_period, vc.f0_floor,
                                         vc.f0_ceil, vc.f0_method)
                copies = []
                for k in range(1, k_copies + 1):
                    f0_scale, warp = draw_conversion(utt, k, vc.seed, vc.f0_scale_range, vc.warp_range)
                    feats = compute_fbank(world_convert(analysis, f0_scale, warp), cfg, f"{what}, copy {k}")
                    feats = match_num_frames(feats, ref_frames[utt], f"{what}, copy {k}")
                    copies.append((feats, f"{utt} {f0_scale:.6f} {warp:.6f}\n"))
            except UserError as e:
                yield utt, e
                continue
            for k, (_, line) in enumerate(copies):
                params[k].append(line)
            yield utt, [feats for feats, _ in copies]

    copy_dirs = [outdir / f"copy{k}" for k in range(1, k_copies + 1)]
    written, skipped = run_job(items, cfg, copy_dirs, job, skip_bad, convert, desc="world_vc", log=logger)
    for k, copy_dir in enumerate(copy_dirs):
        atomic_write_text(_params_path(copy_dir, job), "".join(params[k]))
    logger.info("world_vc job %d: %d utterances x %d copies, skipped %d bad", job, written, k_copies, skipped)
    return written, skipped


def _params_path(copy_dir: Path, job: int) -> Path:
    """Where one job writes the conversion parameters of its utterances in a copy."""
    return job_paths(copy_dir, job)["bad"].with_name(f"vc_params.{job}")


def merge(src: Path, outdir: Path, nj: int, vc: VCConfig) -> None:
    """Every copy's jobs 1..nj merged into a data dir, copies beyond ``vc.num_copies`` removed, ``vc.yaml`` written."""
    import yaml

    for k in range(1, vc.num_copies + 1):
        copy_dir = outdir / f"copy{k}"
        merge_jobs(src, copy_dir, nj, desc="world_vc", log=logger)
        lines = [_params_path(copy_dir, job).read_text(encoding="utf-8") for job in range(1, nj + 1)]
        atomic_write_text(copy_dir / "vc_params", "".join(sorted("".join(lines).splitlines(keepends=True))))
    # Copies of an earlier run with more copies would still be read as motion views: remove them.
    for stale in sorted(outdir.glob("copy*")):
        suffix = stale.name[len("copy"):]
        if stale.is_dir() and suffix.isdigit() and int(suffix) > vc.num_copies:
            shutil.rmtree(stale)
            logger.info("removed %s: num_copies is now %d", stale, vc.num_copies)
    atomic_write_text(outdir / "vc.yaml", yaml.safe_dump(vc.as_dict(), sort_keys=True))


def world_vc(src: Path, outdir: Path, vc_config=None, fbank_config=None, job: int | None = None,
             merge_nj: int | None = None, skip_bad: bool = False) -> None:
    """Convert the utterances of ``src`` as job ``job`` (None: job 1, then merged), or with ``merge_nj``
    merge jobs 1..merge_nj; options from ``vc_config`` and features as ``fbank_config`` (default
    ``src/fbank.yaml``) says."""
    if vc_config is not None and not Path(vc_config).is_file():
        raise UserError(f"{vc_config}: voice-conversion config not found (--vc_config)")
    vc = load_vc_config(vc_config)
    if merge_nj is not None:
        merge(src, outdir, merge_nj, vc)
        return
    fbank_config = fbank_config or src / "fbank.yaml"
    if not Path(fbank_config).is_file():
        raise UserError(f"{fbank_config}: missing: pass --fbank_config with the fbank options used for {src}")
    cfg = load_fbank_config(fbank_config)
    convert_job(src, outdir, job if job is not None else 1, cfg, vc, skip_bad)
    if job is None:
        merge(src, outdir, 1, vc)
