"""Process-group set-up from the launcher's environment (torchrun or Slurm's srun).

The trainer never asks how it was launched: ``init_distributed`` reads RANK / LOCAL_RANK /
WORLD_SIZE (torchrun) or SLURM_PROCID / SLURM_LOCALID / SLURM_STEP_NUM_TASKS (srun), picks NCCL on GPUs
and gloo on CPU, and returns a small context that is a no-op for a single process.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

from cdsvae.io import UserError


@dataclasses.dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def launch_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's variables, else those of an srun job step,
    else (0, 0, 1)."""
    world = _env_int("WORLD_SIZE")
    if world is not None:
        rank = _env_int("RANK") or 0
        local = _env_int("LOCAL_RANK")
        return rank, rank if local is None else local, world
    # SLURM_STEP_NUM_TASKS is set only inside a job step that srun started; an allocation's shell
    # (salloc -n4) or batch script has SLURM_NTASKS too, but a plain run there is one process.
    world = _env_int("SLURM_STEP_NUM_TASKS")
    if world is not None and world > 1:
        rank = _env_int("SLURM_PROCID") or 0
        local = _env_int("SLURM_LOCALID") or 0
        return rank, local, world
    return 0, 0, 1


def resolve_device(name: str, local_rank: int) -> torch.device:
    """"auto" is cuda:LOCAL_RANK where a GPU is visible, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("train.device is 'cuda' but no GPU is visible (CUDA_VISIBLE_DEVICES, driver)")
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise UserError(f"local rank {local_rank} has no GPU: only {count} visible on this node; "
                            f"launch at most {count} processes per node")
        return torch.device("cuda", local_rank)
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"train.device must be auto, cuda or cpu, got {name!r}")


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistContext:
    """Join the process group the launcher describes (if any) and choose this process's device."""
    rank, local_rank, world = launch_env()
    dev = resolve_device(device, local_rank)
    if world == 1:
        return DistContext(device=dev)
    if "WORLD_SIZE" not in os.environ:  # an srun job step (launch_env)
        # srun sets no rendezvous; the batch script exports MASTER_ADDR / MASTER_PORT.
        if "MASTER_ADDR" not in os.environ:
            raise UserError("running under srun with several tasks but MASTER_ADDR is not set; export "
                            "MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n1)")
        os.environ.setdefault("MASTER_PORT", "29500")
        os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), str(world)
        os.environ["LOCAL_RANK"] = str(local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"timeout": datetime.timedelta(seconds=timeout_s)}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world, **kwargs)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world, device=dev, backend=backend)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(ctx: DistContext, tensor: torch.Tensor) -> torch.Tensor:
    """Mean over processes, in place (identity for one process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= ctx.world_size
    return tensor


def all_reduce_sum(ctx: DistContext, tensor: torch.Tensor) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, indexed by rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
