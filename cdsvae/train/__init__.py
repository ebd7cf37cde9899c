"""Training: a generic resumable, distributed trainer and the C-DSVAE task built on it."""

from cdsvae.train.task import load_model, load_model_with_info

__all__ = ["load_model", "load_model_with_info"]
