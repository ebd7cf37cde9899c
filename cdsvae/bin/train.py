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
                        "with one line naming what differs from the run in OUTDIR) and exit; prints 'finished: "
                        "step S, E/N epochs' when OUTDIR's run is already trained to the end")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="with --check_inputs: the run will have N processes (GPUs x nodes); also check that "
                        "the training data fills one global batch of N x train.batch_size (default: 1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.nproc < 1:
        parser.error(f"--nproc must be at least 1, got {args.nproc}")
    # Imported after parsing: torch takes seconds to import, and --help needs none of it.
    from cdsvae.config import to_yaml
    from cdsvae.experiment.inputs import absolute_data_paths
    from cdsvae.experiment.run import check_run_inputs, check_training_batches, finished_run, train
    from cdsvae.experiment.schema import load_train_config

    cfg = load_train_config(args.config or None, rest)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    if args.check_inputs:
        cfg = absolute_data_paths(cfg)
        check_run_inputs(cfg, args.outdir)
        done = finished_run(cfg, args.outdir)
        if done is not None:  # nothing left to train: the batch of N processes does not matter
            print(f"finished: {done}")
            return 0
        check_training_batches(cfg, args.nproc)
        return 0
    train(cfg, args.outdir)
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
