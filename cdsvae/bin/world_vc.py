"""K voice-converted copies of every utterance, as log-mel features parallel to the originals.

Input is the feature dir written by ``make_fbank`` (a data dir with wav.scp, feats.scp,
utt2num_frames and fbank.yaml), or a split part of it.  Output layout (one data dir per
copy, keyed by the original utterance ids, so copy k of ``utt`` is ``utt`` in
``OUT/copy{k}/feats.scp``)::

    OUT/copy1/{feats.scp,utt2num_frames,feat_dim,fbank.yaml,vc_params,utt2spk,...}
    OUT/copy2/...
    OUT/vc.yaml            the conversion options used (every key, defaults filled in)

The conversion options come from one YAML file, ``--vc_config`` (a recipe's conf/vc.yaml);
keys left out take the defaults listed below, and an unknown key is an error.  Features use
exactly the original's fbank options (``--fbank_config``, by default SRC/fbank.yaml).  The
converted audio has the original's sample count, hence the same frame count; the count is
checked against the original's utt2num_frames and a difference of one frame (only possible
when the original features came from elsewhere) is fixed by trimming the last frame or
repeating it.

    python -m cdsvae.bin.world_vc --vc_config conf/vc.yaml dump/train dump/train_vc
    # per job, then merge:
    python -m cdsvae.bin.world_vc --vc_config conf/vc.yaml --fbank_config dump/train/fbank.yaml \\
        --job JOB dump/train/split4/JOB dump/train_vc
    python -m cdsvae.bin.world_vc --vc_config conf/vc.yaml --merge --nj 4 dump/train dump/train_vc
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
from pathlib import Path
from typing import Sequence

from cdsvae.augment.world_vc import VCConfig, draw_conversion, load_vc_config, world_analyze, world_convert
from cdsvae.bin import run_main, str2bool
from cdsvae.errors import UserError
from cdsvae.features import (FeatureWriter, audio_items, compute_fbank, cut_segment, job_paths, load_fbank_config,
                             match_num_frames, merge_jobs, read_audio, read_utt2num_frames, resample_if_needed)
from cdsvae.io import atomic_write_text

logger = logging.getLogger("world_vc")


def convert_job(src: Path, outdir: Path, job: int, cfg: dict, vc: VCConfig, skip_bad: bool) -> tuple[int, int]:
    """Write copies 1..K of every utterance of ``src`` for one job; return (written, skipped)."""
    import yaml
    from tqdm import tqdm

    if not (src / "utt2num_frames").is_file():
        raise UserError(f"{src / 'utt2num_frames'}: missing (run make_fbank on this data first)")
    ref_frames = read_utt2num_frames(src / "utt2num_frames")
    items = [it for it in audio_items(src) if it[0] in ref_frames]
    if not items:
        raise UserError(f"{src}: no utterance with features in utt2num_frames")
    k_copies = vc.num_copies
    paths = [job_paths(outdir / f"copy{k}", job) for k in range(1, k_copies + 1)]
    bad: list[str] = []
    params: list[list[str]] = [[] for _ in range(k_copies)]
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(FeatureWriter(p["ark"], p["scp"], p["utt2num_frames"])) for p in paths]
        for utt, spec, start, end in tqdm(items, desc=f"world_vc job {job}", unit="utt", mininterval=10,
                                          file=sys.stderr):
            what = f"{spec.strip()} (utterance {utt})"
            try:
                wave, rate = read_audio(spec, utt)
                wave = resample_if_needed(cut_segment(wave, rate, start, end, what), rate, cfg, what)
                analysis = world_analyze(wave, int(cfg["sample_rate"]), vc.frame_period, vc.f0_floor,
                                         vc.f0_ceil, vc.f0_method)
                copies = []
                for k in range(1, k_copies + 1):
                    f0_scale, warp = draw_conversion(utt, k, vc.seed, vc.f0_scale_range, vc.warp_range)
                    feats = compute_fbank(world_convert(analysis, f0_scale, warp), cfg, f"{what}, copy {k}")
                    feats = match_num_frames(feats, ref_frames[utt], f"{what}, copy {k}")
                    copies.append((feats, f"{utt} {f0_scale:.6f} {warp:.6f}\n"))
            except UserError as e:
                if not skip_bad:
                    raise
                logger.warning("skipping bad utterance %s: %s", utt, e)
                bad.append(f"{utt} {e}\n")
                continue
            for k, (feats, line) in enumerate(copies):
                writers[k].write(utt, feats)
                params[k].append(line)
    for k, p in enumerate(paths):
        atomic_write_text(p["bad"], "".join(bad))
        atomic_write_text(p["config"], yaml.safe_dump(cfg, sort_keys=True))
        atomic_write_text(p["bad"].with_name(f"vc_params.{job}"), "".join(params[k]))
    logger.info("world_vc job %d: %d utterances x %d copies, skipped %d bad", job, len(items) - len(bad),
                k_copies, len(bad))
    return len(items) - len(bad), len(bad)


def merge(src: Path, outdir: Path, nj: int, vc: VCConfig) -> None:
    import yaml

    for k in range(1, vc.num_copies + 1):
        copy_dir = outdir / f"copy{k}"
        merge_jobs(src, copy_dir, nj, desc="world_vc")
        lines = []
        for job in range(1, nj + 1):
            lines.append(job_paths(copy_dir, job)["bad"].with_name(f"vc_params.{job}").read_text(encoding="utf-8"))
        atomic_write_text(copy_dir / "vc_params", "".join(sorted("".join(lines).splitlines(keepends=True))))
    # Copies of an earlier run with more copies would still be read as motion views: remove them.
    for stale in sorted(outdir.glob("copy*")):
        suffix = stale.name[len("copy"):]
        if stale.is_dir() and suffix.isdigit() and int(suffix) > vc.num_copies:
            shutil.rmtree(stale)
            logger.info("removed %s: num_copies is now %d", stale, vc.num_copies)
    atomic_write_text(outdir / "vc.yaml", yaml.safe_dump(vc.as_dict(), sort_keys=True))


def _options_help() -> str:
    defaults = VCConfig().as_dict()
    return "\n".join(["voice-conversion options (keys of --vc_config, with their defaults):"]
                     + [f"  {key}: {value}" for key, value in defaults.items()])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cdsvae.bin.world_vc", description=__doc__, epilog=_options_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="feature data dir from make_fbank (or a split part of it with --job)")
    p.add_argument("outdir", help="output dir; copies go to OUTDIR/copy1..copyK")
    p.add_argument("--vc_config", metavar="FILE",
                   help="YAML with the voice-conversion options listed below (default: all defaults)")
    p.add_argument("--fbank_config", metavar="FILE",
                   help="fbank options of the features (default: SRC/fbank.yaml, as make_fbank wrote it)")
    p.add_argument("--skip_bad", type=str2bool, default=False, help="skip and count bad utterances (true|false)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--job", type=int, help="job number: write OUTDIR/copy*/data/raw_fbank.JOB.* only")
    g.add_argument("--merge", action="store_true", help="merge jobs 1..--nj into OUTDIR/copy*/feats.scp")
    p.add_argument("--nj", type=int, default=1)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.vc_config is not None and not Path(args.vc_config).is_file():
        raise UserError(f"{args.vc_config}: voice-conversion config not found (--vc_config)")
    vc = load_vc_config(args.vc_config)
    src, outdir = Path(args.src), Path(args.outdir)
    if args.merge:
        merge(src, outdir, args.nj, vc)
        return 0
    fbank_config = args.fbank_config or src / "fbank.yaml"
    if not Path(fbank_config).is_file():
        raise UserError(f"{fbank_config}: missing: pass --fbank_config with the fbank options used for {src}")
    cfg = load_fbank_config(fbank_config)
    job = args.job if args.job is not None else 1
    convert_job(src, outdir, job, cfg, vc, args.skip_bad)
    if args.job is None:
        merge(src, outdir, 1, vc)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
