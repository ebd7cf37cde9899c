"""Train a C-DSVAE (or DSVAE) model; rerunning the same command resumes from --outdir.

Launching (``DIR`` is the experiment directory; a rerun of the same command resumes from it)::

    # CPU or one GPU
    python -m cdsvae.bin.train --config conf/train.yaml --outdir DIR
    # 4 GPUs on one node (what `run.sh --ngpu 4` runs)
    torchrun --standalone --nproc_per_node 4 -m cdsvae.bin.train --config conf/train.yaml --outdir DIR
    # 2 CPU processes with gloo (how the tests exercise the distributed path)
    torchrun --standalone --nproc_per_node 2 -m cdsvae.bin.train --config conf/train.yaml \\
        --outdir DIR --train.device cpu
    # 2 nodes x 4 GPUs, torchrun rendezvous: run on every node
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv_id JOB --rdzv_backend c10d \\
        --rdzv_endpoint HOST0:29400 -m cdsvae.bin.train --config conf/train.yaml --outdir DIR
    # Slurm, one task per GPU (srun sets SLURM_PROCID / SLURM_LOCALID / SLURM_STEP_NUM_TASKS)
    export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1) MASTER_PORT=29500
    srun --nodes 2 --ntasks-per-node 4 --gpus-per-node 4 \\
        python -m cdsvae.bin.train --config conf/train.yaml --outdir DIR

Multi-node runs need ``DIR`` on a file system every node sees: rank 0 alone writes, every rank
reads the checkpoint it resumes from.

The training semantics (batch per process, DDP, epoch order, resumption): :mod:`cdsvae.train.trainer`.
"""

from __future__ import annotations

import argparse
import sys
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
    p.add_argument("--outdir", help="experiment directory; resumed from when it has checkpoints (required, except "
                                    "with --experiments)")
    p.add_argument("--print_config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--check_inputs", action="store_true",
                   help="only check that OUTDIR can be trained or resumed with this config and data (exit 1 "
                        "with one line naming what differs from the run in OUTDIR) and exit; prints 'finished: "
                        "step S, E/N epochs' when OUTDIR's run is already trained to the end")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="with --check_inputs: the run will have N processes (GPUs x nodes); also check that "
                        "the training data fills one global batch of N x train.batch_size (default: 1)")
    p.add_argument("--experiments", metavar="FILE",
                   help="with --check_inputs: check several experiments in one process, one per line of FILE "
                        "(- for standard input): the options of its training command, shell-quoted, e.g. "
                        "'--config conf/train.yaml --outdir exp/cdsvae_seed2 --train.seed 2'. Prints 'checked "
                        "OUTDIR' or 'finished OUTDIR: step S, E/N epochs' for each, in order, and stops at the "
                        "first that fails (exit 1, its one-line error)")
    return p


def _check(parser: argparse.ArgumentParser, argv: Sequence[str], nproc: int) -> tuple[str, str | None]:
    """(OUTDIR, 'step S, E/N epochs' when its run is trained to the end already) of one training
    command's options, after the checks of --check_inputs."""
    from cdsvae.experiment.inputs import absolute_data_paths
    from cdsvae.experiment.run import check_run_inputs, check_training_batches, finished_run
    from cdsvae.experiment.schema import load_train_config

    args, rest = parser.parse_known_args(argv)
    if not args.outdir:
        parser.error("--outdir is required")
    cfg = absolute_data_paths(load_train_config(args.config or None, rest))
    check_run_inputs(cfg, args.outdir)
    done = finished_run(cfg, args.outdir)
    if done is None:  # nothing left to train: the batch of N processes does not matter
        check_training_batches(cfg, nproc)
    return args.outdir, done


def _check_experiments(parser: argparse.ArgumentParser, path: str, nproc: int) -> None:
    import shlex

    from cdsvae.io import UserError

    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    lines = [line for line in text.splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        try:
            argv = shlex.split(line)
        except ValueError as e:
            raise UserError(f"{path}: line {number}: {e}") from None
        outdir, done = _check(parser, argv, nproc)
        print(f"finished {outdir}: {done}" if done is not None else f"checked {outdir}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.nproc < 1:
        parser.error(f"--nproc must be at least 1, got {args.nproc}")
    if args.experiments is not None:
        if not args.check_inputs:
            parser.error("--experiments needs --check_inputs")
        _check_experiments(parser, args.experiments, args.nproc)
        return 0
    if not args.outdir:
        parser.error("--outdir is required")
    if args.check_inputs:
        done = _check(parser, argv if argv is not None else sys.argv[1:], args.nproc)[1]
        if done is not None:
            print(f"finished: {done}")
        return 0
    # Imported after parsing: torch takes seconds to import, and --help needs none of it.
    from cdsvae.config import to_yaml
    from cdsvae.experiment.run import train
    from cdsvae.experiment.schema import load_train_config

    cfg = load_train_config(args.config or None, rest)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    train(cfg, args.outdir)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
