"""How a run's batches are loaded and run: loader processes, collate function, device placement
and precision, shared by the training loop and validation."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import torch
from torch.utils.data import DataLoader, Dataset

from cdsvae.errors import UserError


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch moved to ``device``; other values as they are."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def batch_size(batch: Any) -> int:
    """The number of sequences in a batch: the first dimension of its first tensor with one."""
    values = batch.values() if isinstance(batch, Mapping) else batch
    for v in values:
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return v.shape[0]
    raise UserError("a batch holds no tensor with a batch dimension")


@dataclasses.dataclass(frozen=True)
class Batches:
    """Loading and running batches on one device (``train.num_workers``, ``train.amp``)."""

    device: torch.device
    num_workers: int = 0
    collate_fn: Callable | None = None
    amp: str = "none"

    def loader(self, dataset: Dataset, **kw) -> DataLoader:
        return DataLoader(dataset, num_workers=self.num_workers, collate_fn=self.collate_fn,
                          pin_memory=self.device.type == "cuda", **kw)

    def to_device(self, batch: Any) -> Any:
        return to_device(batch, self.device)

    def autocast(self):
        """The forward pass's precision: ``amp`` none (float32), bf16 or fp16 autocast."""
        dtype = torch.float16 if self.amp == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.amp in ("bf16", "fp16"))
