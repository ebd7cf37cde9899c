"""K voice-converted copies of every utterance, as log-mel features parallel to the originals.

Input is the feature dir written by ``make_fbank`` (a data dir with wav.scp, feats.scp,
utt2num_frames and fbank.yaml), or a split part of it.  Output layout (one data dir per
copy, keyed by the original utterance ids, so copy k of ``utt`` is ``utt`` in
``OUT/copy{k}/feats.scp``)::

    OUT/copy1/{feats.scp,utt2num_frames,feat_dim,fbank.yaml,vc_params,utt2spk,...}
    OUT/copy2/...
    OUT/vc.yaml            conversion options

Features use exactly the original's fbank options.  The converted audio has the
original's sample count, hence the same frame count; the count is checked against the
original's utt2num_frames and a difference of one frame (only possible when the original
features came from elsewhere) is fixed by trimming the last frame or repeating it.

    python -m cdsvae.bin.world_vc --num_copies 2 --seed 1 dump/train dump/train_vc
    # per job, then merge:
    python -m cdsvae.bin.world_vc --config dump/train/fbank.yaml --job JOB dump/train/split4/JOB dump/train_vc
    python -m cdsvae.bin.world_vc --merge --nj 4 dump/train dump/train_vc
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Sequence

from cdsvae.augment.world_vc import VC_DEFAULTS, draw_conversion, world_analyze, world_convert
from cdsvae.bin import run_main, str2bool
from cdsvae.errors import UserError
from cdsvae.features import (FeatureWriter, audio_items, compute_fbank, cut_segment, job_paths, load_fbank_config,
                             match_num_frames, merge_jobs, read_audio, read_utt2num_frames, resample_if_needed)
from cdsvae.io import atomic_write_text

logger = logging.getLogger("world_vc")


def vc_options(args) -> dict:
    return {"num_copies": args.num_copies, "seed": args.seed, "f0_scale_range": list(args.f0_scale_range),
            "warp_range": list(args.warp_range), "f0_method": args.f0_method,
            "frame_period": VC_DEFAULTS["frame_period"], "f0_floor": VC_DEFAULTS["f0_floor"],
            "f0_ceil": VC_DEFAULTS["f0_ceil"]}


def convert_job(src: Path, outdir: Path, job: int, cfg: dict, opts: dict, skip_bad: bool) -> tuple[int, int]:
    """Write copies 1..K of every utterance of ``src`` for one job; return (written, skipped)."""
    import yaml
    from tqdm import tqdm

    if not (src / "utt2num_frames").is_file():
        raise UserError(f"{src / 'utt2num_frames'}: missing (run make_fbank on this data first)")
    ref_frames = read_utt2num_frames(src / "utt2num_frames")
    items = [it for it in audio_items(src) if it[0] in ref_frames]
    if not items:
        raise UserError(f"{src}: no utterance with features in utt2num_frames")
    k_copies = int(opts["num_copies"])
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
                analysis = world_analyze(wave, int(cfg["sample_rate"]), opts["frame_period"], opts["f0_floor"],
                                         opts["f0_ceil"], opts["f0_method"])
                copies = []
                for k in range(1, k_copies + 1):
                    f0_scale, warp = draw_conversion(utt, k, opts["seed"], opts["f0_scale_range"], opts["warp_range"])
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


def merge(src: Path, outdir: Path, nj: int, opts: dict) -> None:
    import yaml

    for k in range(1, int(opts["num_copies"]) + 1):
        copy_dir = outdir / f"copy{k}"
        merge_jobs(src, copy_dir, nj, desc="world_vc")
        lines = []
        for job in range(1, nj + 1):
            lines.append(job_paths(copy_dir, job)["bad"].with_name(f"vc_params.{job}").read_text(encoding="utf-8"))
        atomic_write_text(copy_dir / "vc_params", "".join(sorted("".join(lines).splitlines(keepends=True))))
    atomic_write_text(outdir / "vc.yaml", yaml.safe_dump(opts, sort_keys=True))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cdsvae.bin.world_vc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="feature data dir from make_fbank (or a split part of it with --job)")
    p.add_argument("outdir", help="output dir; copies go to OUTDIR/copy1..copyK")
    p.add_argument("--config", help="fbank options (default: SRC/fbank.yaml, as make_fbank wrote it)")
    p.add_argument("--num_copies", type=int, default=2, help="converted copies per utterance (K)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--f0_scale_range", type=float, nargs=2, default=VC_DEFAULTS["f0_scale_range"],
                   metavar=("LOW", "HIGH"), help="F0 scale, drawn log-uniformly")
    p.add_argument("--warp_range", type=float, nargs=2, default=VC_DEFAULTS["warp_range"],
                   metavar=("LOW", "HIGH"), help="all-pass warp alpha (positive: formants up), drawn uniformly")
    p.add_argument("--f0_method", choices=("dio", "harvest"), default="dio")
    p.add_argument("--skip_bad", type=str2bool, default=False, help="skip and count bad utterances (true|false)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--job", type=int, help="job number: write OUTDIR/copy*/data/raw_fbank.JOB.* only")
    g.add_argument("--merge", action="store_true", help="merge jobs 1..--nj into OUTDIR/copy*/feats.scp")
    p.add_argument("--nj", type=int, default=1)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.num_copies < 1:
        raise UserError(f"--num_copies must be >= 1, got {args.num_copies}")
    src, outdir = Path(args.src), Path(args.outdir)
    opts = vc_options(args)
    if args.merge:
        merge(src, outdir, args.nj, opts)
        return 0
    config = args.config or src / "fbank.yaml"
    if not Path(config).is_file():
        raise UserError(f"{config}: missing: pass --config with the fbank options used for {src}")
    cfg = load_fbank_config(config)
    job = args.job if args.job is not None else 1
    convert_job(src, outdir, job, cfg, opts, args.skip_bad)
    if args.job is None:
        merge(src, outdir, 1, opts)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
