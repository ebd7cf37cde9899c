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
from pathlib import Path
from typing import Sequence

from cdsvae.augment.world_vc import VCConfig
from cdsvae.bin import run_main, str2bool


def _options_help() -> str:
    defaults = VCConfig().as_dict()
    return "\n".join(["voice-conversion options (keys of --vc_config, with their defaults):"]
                     + [f"  {key}: {value}" for key, value in defaults.items()])


def build_parser() -> argparse.ArgumentParser:
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
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from cdsvae.augment.vc_copies import world_vc

    world_vc(Path(args.src), Path(args.outdir), args.vc_config, args.fbank_config, args.job,
             args.nj if args.merge else None, args.skip_bad)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
