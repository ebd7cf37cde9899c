"""What a finished experiment directory says about itself: its resolved config and its system label.

Shared by the speech and video reports and the demo step. Reading only: nothing here builds a
model or imports the trainer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from cdsvae.io import UserError, read_yaml

CONTRASTIVE_KEYS = ("con_s", "con_z", "mi_sz")
CONFIG_FILE = "config.yaml"


def load_config(expdir: str | os.PathLike) -> dict:
    """The resolved config the trainer wrote (read as is: a report never re-validates old runs)."""
    path = Path(expdir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{path}: resolved config not found (is {expdir} an experiment dir?)")
    return read_yaml(path)


def system_label(cfg: Mapping[str, Any]) -> str:
    """'DSVAE' when the contrastive and MI weights are all zero, else 'C-DSVAE'.

    A weight missing from the config's ``loss`` section takes the objective's default.
    """
    loss = cfg.get("loss") or {}
    if all(key in loss for key in CONTRASTIVE_KEYS):  # a resolved config holds them all: no torch import
        weights = [float(loss[key]) for key in CONTRASTIVE_KEYS]
    else:
        from cdsvae.objectives import LossWeights

        defaults = LossWeights()
        weights = [float(loss.get(key, getattr(defaults, key))) for key in CONTRASTIVE_KEYS]
    return "DSVAE" if all(w == 0 for w in weights) else "C-DSVAE"


def modality(cfg: Mapping[str, Any]) -> str:
    """``data.type`` of the resolved config: "speech" or "video" (speech when not recorded)."""
    return str((cfg.get("data") or {}).get("type") or "speech")
