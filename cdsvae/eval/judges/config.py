"""The sections of a judge config (``conf/judges.yaml``), declared once, here: ``speaker`` (the
in-recipe speaker judge), ``content`` and ``probe`` (a CTC recogniser each) and ``swap`` (the swap
protocol's sizes). Each is a :class:`~cdsvae.config.Section` (keys, defaults, types, choices); the
dataclass the code reads takes its defaults from it and is checked against it. The file itself and
its ``gate`` section are read by :mod:`cdsvae.eval.judges.speech`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from cdsvae.config import Field, Section, check_section
from cdsvae.eval.judges.ctc_model import FRONTENDS
from cdsvae.io import UserError


# The ``speaker`` section of a judge config: its keys, defaults and types, declared once, here.
SPEAKER_JUDGE = Section({
    "channels": Field([256, 256, 256, 256, 768], "floats"),
    "kernel_sizes": Field([5, 3, 3, 3, 1], "floats"),
    "dilations": Field([1, 2, 3, 4, 1], "floats"),
    "attention_channels": Field(64, "int", minimum=1),
    "se_channels": Field(64, "int", minimum=1),
    "res2net_scale": Field(8, "int", minimum=1),
    "lin_neurons": Field(192, "int", minimum=1),  # embedding size
    "margin": Field(0.2, "float", minimum=0.0),  # AAM margin (radians)
    "scale": Field(30.0, "float", minimum=0.0),  # AAM scale
    "epochs": Field(20, "int", minimum=1),
    "batch_size": Field(32, "int", minimum=1),
    "lr": Field(1e-3, "float", minimum=0.0),  # Adam; > 0
    "lr_decay": Field(0.9, "float", minimum=0.0),  # lr of epoch e (from 0) is lr * lr_decay ** e; in (0, 1]
    "weight_decay": Field(2e-5, "float", minimum=0.0),
    "crop_frames": Field(200, "int", minimum=1),  # random training crops; shorter utterances are used whole
    "seed": Field(0, "int"),
})
_SPEAKER_DEFAULT = SPEAKER_JUDGE.defaults()


@dataclass
class SpeakerJudgeConfig:
    """Network and training options of the in-recipe judge (ECAPA-TDNN + AAM softmax): the section
    ``speaker`` of a judge config, declared by :data:`SPEAKER_JUDGE`."""

    channels: list = field(default_factory=lambda: _SPEAKER_DEFAULT["channels"])
    kernel_sizes: list = field(default_factory=lambda: _SPEAKER_DEFAULT["kernel_sizes"])
    dilations: list = field(default_factory=lambda: _SPEAKER_DEFAULT["dilations"])
    attention_channels: int = _SPEAKER_DEFAULT["attention_channels"]
    se_channels: int = _SPEAKER_DEFAULT["se_channels"]
    res2net_scale: int = _SPEAKER_DEFAULT["res2net_scale"]
    lin_neurons: int = _SPEAKER_DEFAULT["lin_neurons"]
    margin: float = _SPEAKER_DEFAULT["margin"]
    scale: float = _SPEAKER_DEFAULT["scale"]
    epochs: int = _SPEAKER_DEFAULT["epochs"]
    batch_size: int = _SPEAKER_DEFAULT["batch_size"]
    lr: float = _SPEAKER_DEFAULT["lr"]
    lr_decay: float = _SPEAKER_DEFAULT["lr_decay"]
    weight_decay: float = _SPEAKER_DEFAULT["weight_decay"]
    crop_frames: int = _SPEAKER_DEFAULT["crop_frames"]
    seed: int = _SPEAKER_DEFAULT["seed"]

    def __post_init__(self):
        check_section("speaker", asdict(self), SPEAKER_JUDGE, "speaker judge")
        n = len(self.channels)
        if n < 3 or len(self.kernel_sizes) != n or len(self.dilations) != n:
            raise UserError("speaker judge: channels, kernel_sizes and dilations need one entry per layer (at least 3)")
        if any(int(c) % int(self.res2net_scale) for c in self.channels[1:-1]):
            raise UserError(f"speaker judge: res2net_scale {self.res2net_scale} must divide the middle channels {self.channels}")
        if not (self.lr > 0 and 0 < self.lr_decay <= 1):
            raise UserError(f"speaker judge: need lr > 0 and 0 < lr_decay <= 1, got {self.lr} and {self.lr_decay}")

    @classmethod
    def from_dict(cls, d: Mapping) -> "SpeakerJudgeConfig":
        check_section("speaker", d, SPEAKER_JUDGE, "speaker judge")
        return cls(**dict(d))

    def min_frames(self) -> int:
        """Fewest frames an utterance needs: the reflect padding of the widest convolution."""
        return 1 + max((int(k) - 1) * int(d) // 2 for k, d in zip(self.kernel_sizes, self.dilations))


# The sections ``content`` and ``probe`` of a judge config (a CTC recogniser each): keys, defaults
# and types, declared once, here.
CTC = Section({
    "hidden": Field(128, "int", minimum=1),  # LSTM units per direction
    "layers": Field(2, "int", minimum=1),
    "proj": Field(128, "int", minimum=1),  # front-end output size
    "frontend": Field("conv", "str", choices=FRONTENDS),  # conv (kernel 3 over frames) | linear (per frame)
    "dropout": Field(0.1, "float", minimum=0.0),
    "subsample": Field(1, "int", minimum=1),
    "normalise": Field(True, "bool"),  # per-dimension mean/std of the training inputs
    "epochs": Field(20, "int", minimum=1),
    "batch_size": Field(16, "int", minimum=1),
    "lr": Field(2e-3, "float", minimum=0.0),
    "grad_clip": Field(5.0, "float", minimum=0.0),  # max gradient norm (0: none)
    "seed": Field(0, "int"),
    "time_masks": Field(0, "int", minimum=0),  # SpecAugment-style masks per utterance in training (0: off)
    "time_mask_width": Field(10, "int", minimum=0),  # frames, at most
    "feature_masks": Field(0, "int", minimum=0),
    "feature_mask_width": Field(8, "int", minimum=0),  # dimensions, at most
})
_CTC_DEFAULT = CTC.defaults()


@dataclass
class CTCConfig:
    """Network and training settings (:data:`CTC`); ``subsample=2`` stacks frame pairs (20 ms steps
    on 10 ms log-mel: about half the time, fine for phones unless utterances are packed with short
    units)."""

    hidden: int = _CTC_DEFAULT["hidden"]
    layers: int = _CTC_DEFAULT["layers"]
    proj: int = _CTC_DEFAULT["proj"]
    frontend: str = _CTC_DEFAULT["frontend"]
    dropout: float = _CTC_DEFAULT["dropout"]
    subsample: int = _CTC_DEFAULT["subsample"]
    normalise: bool = _CTC_DEFAULT["normalise"]
    epochs: int = _CTC_DEFAULT["epochs"]
    batch_size: int = _CTC_DEFAULT["batch_size"]
    lr: float = _CTC_DEFAULT["lr"]
    grad_clip: float = _CTC_DEFAULT["grad_clip"]
    seed: int = _CTC_DEFAULT["seed"]
    time_masks: int = _CTC_DEFAULT["time_masks"]
    time_mask_width: int = _CTC_DEFAULT["time_mask_width"]
    feature_masks: int = _CTC_DEFAULT["feature_masks"]
    feature_mask_width: int = _CTC_DEFAULT["feature_mask_width"]

    def __post_init__(self):
        check_section("ctc", asdict(self), CTC, "ctc config")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "CTCConfig":
        check_section("ctc", values, CTC, "ctc config")
        return cls(**values)


# The ``swap`` section of a judge config, declared once, here.
SWAP = Section({
    "n_pairs": Field(100, "int", minimum=1),
    "n_draws": Field(3, "int", minimum=1),
    "seed": Field(0, "int"),
})
_SWAP_DEFAULT = SWAP.defaults()


@dataclass
class SwapConfig:
    """Sizes of the swap protocol of :mod:`cdsvae.eval.metrics.disentangle` (:data:`SWAP`)."""

    n_pairs: int = _SWAP_DEFAULT["n_pairs"]
    n_draws: int = _SWAP_DEFAULT["n_draws"]
    seed: int = _SWAP_DEFAULT["seed"]

    def __post_init__(self) -> None:
        check_section("swap", asdict(self), SWAP, "swap config")
