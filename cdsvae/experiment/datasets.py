"""The datasets of an experiment: the builder of each ``data.type``, and the check that the data's
frames fit the model config.

Each data module is imported only for its own ``data.type``, so a run reads only the code of its
own data (speech reads the feature code; video, images).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from cdsvae.errors import UserError
from cdsvae.experiment.schema import DATA_TYPES


def build_dataset(data_cfg: Mapping[str, Any], split: str, content_segment: bool = False):
    """The dataset of ``split`` from the ``data`` section of a checked config; ``content_segment``
    gives each speech item a content segment (``x_content``)."""
    kind = data_cfg["type"]
    if kind == "synthetic":
        from cdsvae.data.synthetic import build_synthetic_dataset
        return build_synthetic_dataset(data_cfg, split)
    if kind == "speech":
        from cdsvae.data.speech import build_speech_dataset
        return build_speech_dataset(dict(data_cfg), split, content_segment=content_segment)
    if kind == "video":
        from cdsvae.data.video import build_video_dataset
        return build_video_dataset(dict(data_cfg), split)
    raise UserError(f"data.type must be one of {', '.join(DATA_TYPES)}, got {kind!r}")


def check_frames(model_cfg: Mapping[str, Any], x: torch.Tensor, source: str = "data") -> None:
    """Fail early, naming the keys, when the data's frames do not fit the model config."""
    frame = model_cfg["frame"]
    if frame == "conv64":
        expected = (model_cfg["in_channels"], 64, 64)
        if tuple(x.shape[1:]) != expected:
            raise UserError(f"{source}: sequences have frames of shape {tuple(x.shape[1:])}, but model.frame "
                            f"conv64 with model.in_channels {model_cfg['in_channels']} expects {expected}")
    elif x.dim() != 2 or x.shape[1] != model_cfg["feat_dim"]:
        raise UserError(f"{source}: sequences have frames of shape {tuple(x.shape[1:])}, but model.frame "
                        f"{frame} expects ({model_cfg['feat_dim']},) (model.feat_dim)")
