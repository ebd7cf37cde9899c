"""Log-mel filterbank features of a Kaldi data dir, written as ark/scp with kaldiio.

One job (the recipe's launcher runs ``JOB=1:nj`` over ``data/<set>/split<nj>/JOB``)::

    python -m cdsvae.bin.make_fbank --config conf/fbank.yaml --job JOB \\
        data/train/split4/JOB dump/train

writes ``dump/train/data/raw_fbank.JOB.{ark,scp}``, ``utt2num_frames.JOB`` and
``bad.JOB`` (utterances skipped with ``--skip_bad true``, with the reason).  Then::

    python -m cdsvae.bin.make_fbank --merge --nj 4 data/train dump/train

makes ``dump/train`` a data dir: ``feats.scp``, ``utt2num_frames``, ``feat_dim``,
``fbank.yaml`` (the resolved options, reused by the voice-conversion stage) and the
data dir's tables restricted to the utterances that have features.  Without ``--job``
and ``--merge`` both steps run in one process.  Every file appears atomically.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from cdsvae.bin import run_main, str2bool
from cdsvae.data.jobs import audio_items, merge_jobs, run_job
from cdsvae.fbank import iter_fbank, load_fbank_config
from cdsvae.io import UserError

logger = logging.getLogger("make_fbank")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cdsvae.bin.make_fbank", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", help="Kaldi data dir (a split part with --job, the whole dir with --merge)")
    p.add_argument("featdir", help="output dir, e.g. dump/train")
    p.add_argument("--config", help="YAML with fbank options (sample_rate, n_mels, frame_length_ms, ...)")
    p.add_argument("--skip_bad", type=str2bool, default=False,
                   help="skip and count unreadable/too-short utterances instead of failing (true|false)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--job", type=int, help="job number: write data/raw_fbank.JOB.* only")
    g.add_argument("--merge", action="store_true", help="merge the outputs of jobs 1..--nj")
    p.add_argument("--nj", type=int, default=1, help="number of jobs to merge (with --merge)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    featdir = Path(args.featdir)
    if args.merge:
        if args.nj < 1:
            raise UserError(f"--nj must be >= 1, got {args.nj}")
        merge_jobs(Path(args.data_dir), featdir, args.nj, log=logger)
        return 0
    cfg = load_fbank_config(args.config)
    items = audio_items(args.data_dir)
    job = args.job if args.job is not None else 1
    if job < 1:
        raise UserError(f"--job must be >= 1, got {job}")
    written, skipped = run_job(items, cfg, featdir, job, args.skip_bad, iter_fbank, log=logger)
    logger.info("fbank job %d: wrote %d utterances, skipped %d bad", job, written, skipped)
    if args.job is None:
        merge_jobs(Path(args.data_dir), featdir, 1, log=logger)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
