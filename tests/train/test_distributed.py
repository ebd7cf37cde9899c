"""Which launch the environment describes (torchrun, an srun job step, or one plain process)."""

import pytest

from cdsvae.io import UserError
from cdsvae.train.distributed import init_distributed, launch_env

LAUNCH_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID",
               "SLURM_STEP_NUM_TASKS", "SLURM_STEP_ID", "SLURM_JOB_ID", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture()
def env(monkeypatch):
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for k, v in values.items():
            monkeypatch.setenv(k, str(v))
    return set_env


def test_a_plain_process_is_one_process(env):
    assert launch_env() == (0, 0, 1)


def test_a_plain_run_inside_an_allocation_is_one_process(env):
    """`salloc -n4` (or an sbatch script with -n4) exports SLURM_NTASKS=4 to its shell, but a
    `python -m cdsvae.bin.train` started there without srun is a single process."""
    env(SLURM_JOB_ID=7, SLURM_NTASKS=4, SLURM_NPROCS=4)
    assert launch_env() == (0, 0, 1)
    ctx = init_distributed("cpu", timeout_s=5)  # no MASTER_ADDR needed, nothing to wait for
    assert ctx.world_size == 1 and not ctx.distributed
    env(SLURM_PROCID=0, SLURM_LOCALID=0)  # a batch script's own task
    assert launch_env() == (0, 0, 1)


def test_an_srun_job_step_of_several_tasks_is_distributed(env):
    env(SLURM_JOB_ID=7, SLURM_NTASKS=4, SLURM_STEP_ID=0, SLURM_STEP_NUM_TASKS=2, SLURM_PROCID=1,
        SLURM_LOCALID=1)
    assert launch_env() == (1, 1, 2)
    with pytest.raises(UserError, match="MASTER_ADDR is not set"):
        init_distributed("cpu", timeout_s=5)


def test_torchrun_inside_an_srun_step_wins(env):
    env(SLURM_STEP_NUM_TASKS=1, SLURM_PROCID=0, WORLD_SIZE=4, RANK=3, LOCAL_RANK=1)
    assert launch_env() == (3, 1, 4)
