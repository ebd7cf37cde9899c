"""The ``train`` config section: the trainer's options, declared once, here.

It lives apart from the trainer so that a config can be checked (and a trained model loaded)
without importing the training loop; :func:`config_sections` gives the two sections the trainer
reads, ``optim`` (declared by :mod:`cdsvae.train.optim`) and ``train``.
"""

from __future__ import annotations

from cdsvae.config import Field, Schema, Section
from cdsvae.train.optim import OPTIM

AMP_MODES = ("none", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")

TRAIN = Section({
    "epochs": Field(100, "int", minimum=1),
    "batch_size": Field(128, "int", minimum=1),  # per process
    "num_workers": Field(0, "int", minimum=0),
    "seed": Field(1, "int", minimum=0),
    "deterministic": Field(False, "bool"),
    "amp": Field("none", "str", choices=AMP_MODES),
    "compile": Field(False, "bool"),
    "channels_last": Field(None, "bool", optional=True),  # null: on CUDA
    "log_every": Field(50, "int", minimum=1),
    "ckpt_every_steps": Field(0, "int", minimum=0),  # 0: at the end of each epoch only
    "keep_last": Field(3, "int", minimum=1),
    "max_steps": Field(None, "int", optional=True, minimum=1),
    "device": Field("auto", "str", choices=DEVICES),
    "find_unused_parameters": Field(False, "bool"),
    "tensorboard": Field(True, "bool"),
    # null: the experiment decides (C-DSVAE: on when a contrastive term is on); false without item groups
    "unique_utts_per_batch": Field(None, "bool", optional=True),
})


def config_sections() -> Schema:
    """The sections the trainer reads, as declared by their owners: ``optim`` and ``train``."""
    return {"optim": OPTIM, "train": TRAIN}
