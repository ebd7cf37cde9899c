"""What a finished experiment directory says about itself: its resolved config and its system label.

Shared by the speech and video reports and the demo step. Reading only: nothing here builds a
model or imports the trainer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from cdsvae.errors import UserError

CONTRASTIVE_KEYS = ("con_s", "con_z", "mi_sz")
CONFIG_FILE = "config.yaml"


def _read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping; a syntax error becomes a one-line error with the line number."""
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}:{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def load_config(expdir: str | os.PathLike) -> dict:
    """The resolved config the trainer wrote (read as is: a report never re-validates old runs)."""
    path = Path(expdir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{path}: resolved config not found (is {expdir} an experiment dir?)")
    return _read_yaml(path)


def system_label(cfg: Mapping[str, Any]) -> str:
    """'DSVAE' when the contrastive and MI weights are all zero, else 'C-DSVAE'.

    A weight missing from the config's ``loss`` section takes the objective's default.
    """
    from cdsvae.objectives import LossWeights

    loss = cfg.get("loss") or {}
    defaults = LossWeights()
    weights = [float(loss.get(key, getattr(defaults, key))) for key in CONTRASTIVE_KEYS]
    return "DSVAE" if all(w == 0 for w in weights) else "C-DSVAE"


def modality(cfg: Mapping[str, Any]) -> str:
    """``data.type`` of the resolved config: "speech" or "video" (speech when not recorded)."""
    return str((cfg.get("data") or {}).get("type") or "speech")
