"""Train a C-DSVAE (or DSVAE) model; rerunning the same command resumes from --outdir.

Multi-process: ``torchrun --nproc_per_node N -m cdsvae.bin.train ...`` (see cdsvae.train.trainer).
"""

from __future__ import annotations

import argparse
from typing import Sequence

from cdsvae.bin import run_main

EPILOG = """\
overrides: any config key as --SECTION.KEY VALUE (VALUE parsed as YAML), e.g.
  --optim.lr 5e-4 --train.batch_size 64 --train.amp bf16 --loss.con_s 0 --data.type synthetic
sections: model, loss, optim, train, augment, data (data.type: speech | video | synthetic;
other data keys go to that type's dataset builder)
outputs in OUTDIR: config.yaml (resolved, data paths absolute), inputs.json (fingerprint of the
config and input files; a rerun on other inputs is refused), cmvn.npz (copy of data.cmvn),
train.log, progress (one line: epoch, step, loss, ETA), checkpoints/, tensorboard/
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cdsvae.bin.train", description=__doc__.splitlines()[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config with the sections listed below; omitted keys take their defaults")
    p.add_argument("--outdir", required=True, help="experiment directory; resumed from when it has checkpoints")
    p.add_argument("--print_config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--check_inputs", action="store_true",
                   help="only check that OUTDIR can be trained or resumed with this config and data (exit 1 "
                        "with one line naming what differs from the run in OUTDIR) and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    from cdsvae.train.config import merge, parse_overrides, read_yaml, to_plain
    from cdsvae.train.inputs import absolute_data_paths
    from cdsvae.train.task import check_config, check_run_inputs, train

    raw = read_yaml(args.config) if args.config else {}
    cfg = check_config(merge(raw, parse_overrides(rest)), args.config or "config")
    if args.print_config:
        import yaml
        print(yaml.safe_dump(to_plain(cfg), sort_keys=False, default_flow_style=False), end="")
        return 0
    if args.check_inputs:
        check_run_inputs(absolute_data_paths(cfg), args.outdir)
        return 0
    train(cfg, args.outdir)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
