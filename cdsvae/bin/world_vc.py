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
import logging
import shutil
from pathlib import Path
from typing import Sequence

from cdsvae.audio import read_utterances
from cdsvae.augment.world_vc import VCConfig, draw_conversion, load_vc_config, world_analyze, world_convert
from cdsvae.bin import run_main, str2bool
from cdsvae.data.feats import match_num_frames, read_utt2num_frames
from cdsvae.data.jobs import audio_items, job_paths, merge_jobs, run_job
from cdsvae.errors import UserError
from cdsvae.fbank import compute_fbank, load_fbank_config
from cdsvae.io import atomic_write_text

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
    return job_paths(copy_dir, job)["bad"].with_name(f"vc_params.{job}")


def merge(src: Path, outdir: Path, nj: int, vc: VCConfig) -> None:
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
