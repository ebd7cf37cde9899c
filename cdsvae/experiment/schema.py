"""The config of an experiment: every section and key ``cdsvae.bin.train`` accepts, and its checks.

Each section is declared once, by the code that reads it: ``model`` by :mod:`cdsvae.models`,
``loss`` by :mod:`cdsvae.objectives`, ``optim`` and ``train`` by :mod:`cdsvae.train.optim` and
:mod:`cdsvae.train.optim`; ``augment`` and the common keys of ``data`` here (the other ``data``
keys are declared and checked by the dataset builder of ``data.type``). :func:`load_train_config` is
the one way a config file plus overrides becomes a checked config; :func:`check_config` checks one
read back (``config.yaml`` of an experiment, a packed model).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from cdsvae.config import Field, Schema, Section, load_config, required, validate
from cdsvae.io import UserError
from cdsvae.models import MODEL, resolve_model_config
from cdsvae.objectives import LOSS, LossWeights
from cdsvae.train.optim import config_sections

DATA_TYPES = ("speech", "video", "synthetic")
CONTENT_VIEWS = ("shuffle", "reverse", "segment")
CONFIG_FILE = "config.yaml"


def config_schema() -> Schema:
    """Every section and key ``cdsvae.bin.train`` accepts, with defaults."""
    return {
        "model": MODEL,
        "loss": LOSS,
        **config_sections(),  # optim, train: declared by the trainer's modules
        "augment": Section({
            # shuffle | reverse: x's frames reordered (the paper); segment: another segment of the
            # same utterance (speech), the positive of self-supervised speaker-embedding recipes
            "content_view": Field("shuffle", "str", choices=CONTENT_VIEWS),
            # Overrides of cdsvae.augment.video.MotionViewConfig, e.g. {hue: 0.0}; video only.
            "motion_view": Field({}, "any"),
        }),
        # Only these keys are checked here; the rest go to the dataset builder of `type`.
        "data": Section({
            "type": required("str", choices=DATA_TYPES),
            "train_split": Field("train", "str"),
            "valid_split": Field("dev", "str", optional=True),  # null: no validation
        }, open=True),
    }


def declared_defaults() -> dict[str, dict[str, Any]]:
    """``{section: {key: default}}`` for every key of :func:`config_schema` that has one."""
    return {sec: section.defaults() for sec, section in config_schema().items()}


def _check_values(cfg: dict[str, Any], source: str) -> dict[str, Any]:
    """The checks of a schema-valid config owned by the model and the objective, and the values
    the experiment resolves (``train.unique_utts_per_batch: null``)."""
    resolve_model_config(cfg["model"], source)
    try:
        LossWeights(**cfg["loss"])
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    if cfg["augment"]["motion_view"] is not None and not isinstance(cfg["augment"]["motion_view"], Mapping):
        raise UserError(f"{source}: 'augment.motion_view' must be a mapping of motion-view options")
    if cfg["augment"]["content_view"] == "segment" and cfg["data"]["type"] != "speech":
        raise UserError(f"{source}: 'augment.content_view: segment' needs several segments per sequence "
                        f"(data.type speech), got data.type {cfg['data']['type']}; use shuffle or reverse")
    if cfg["train"]["unique_utts_per_batch"] is None:
        cfg["train"]["unique_utts_per_batch"] = uses_contrastive(cfg["loss"])
    return cfg


def check_config(cfg: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Schema validation plus the value checks owned by the model and the objective."""
    return _check_values(validate(cfg, config_schema(), source), source)


def load_train_config(path: str | os.PathLike | None, overrides: Sequence[str] | Mapping = ()) -> dict[str, Any]:
    """The checked config of a run: the YAML file ``path`` (optional) with ``--section.key value``
    overrides, validated against :func:`config_schema` and checked; errors name ``path``."""
    source = str(path) if path is not None else "config"
    return _check_values(load_config(path, overrides, config_schema()), source)


def uses_contrastive(loss_cfg: Mapping[str, Any]) -> bool:
    """Whether a contrastive term (con_s or con_z on views) is on."""
    return loss_cfg.get("mi_estimator", "contrastive") == "contrastive" and (
        float(loss_cfg.get("con_s", 0)) > 0 or float(loss_cfg.get("con_z", 0)) > 0)


def content_segments(cfg: Mapping[str, Any]) -> bool:
    """Whether the datasets must give each item a content segment (``x_content``)."""
    return (cfg["augment"]["content_view"] == "segment" and cfg["loss"]["mi_estimator"] == "contrastive"
            and cfg["loss"]["con_s"] > 0)
