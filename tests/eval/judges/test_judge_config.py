"""The sections of a judge config: each dataclass has exactly its section's keys and defaults, and a
bad key or value is one line naming the key and the valid ones."""

from dataclasses import asdict

import pytest

from cdsvae.eval.judges.config import CTC, SPEAKER_JUDGE, SWAP, CTCConfig, SpeakerJudgeConfig, SwapConfig
from cdsvae.io import UserError


@pytest.mark.parametrize("cls, section", [(SpeakerJudgeConfig, SPEAKER_JUDGE), (CTCConfig, CTC), (SwapConfig, SWAP)])
def test_dataclass_has_the_keys_and_defaults_of_its_section(cls, section):
    assert asdict(cls()) == section.defaults()


def test_the_defaults_the_recipes_were_measured_with():
    assert asdict(SpeakerJudgeConfig())["channels"] == [256, 256, 256, 256, 768]
    assert (SpeakerJudgeConfig().epochs, SpeakerJudgeConfig().lr, SpeakerJudgeConfig().crop_frames) == (20, 1e-3, 200)
    assert (CTCConfig().hidden, CTCConfig().frontend, CTCConfig().grad_clip, CTCConfig().epochs) == (128, "conv", 5.0, 20)
    assert asdict(SwapConfig()) == {"n_pairs": 100, "n_draws": 3, "seed": 0}


def test_values_are_kept_as_given():
    """Checking does not convert: an integer stays an integer, so a config's fingerprint is unchanged."""
    cfg = CTCConfig.from_dict({"grad_clip": 5, "lr": 1})
    assert type(cfg.grad_clip) is int and type(cfg.lr) is int


@pytest.mark.parametrize("build, message", [
    (lambda: SpeakerJudgeConfig.from_dict({"chanels": [8, 8, 8]}), "unknown key 'speaker.chanels'; valid keys in 'speaker': "),
    (lambda: CTCConfig.from_dict({"frontend": "rnn"}), "'ctc.frontend' must be one of linear|conv, got 'rnn'"),
    (lambda: CTCConfig(epochs=0), "'ctc.epochs' must be an integer >= 1, got 0"),
    (lambda: SwapConfig(n_draws=0), "'swap.n_draws' must be an integer >= 1, got 0"),
    (lambda: SpeakerJudgeConfig(channels=[16, 16, 48], kernel_sizes=[5, 3], dilations=[1, 2, 1]), "one entry per layer"),
    (lambda: SpeakerJudgeConfig(lr_decay=1.5), "0 < lr_decay <= 1"),
])
def test_bad_keys_and_values_are_one_line_errors(build, message):
    with pytest.raises(UserError, match=message.replace("|", r"\|").replace("(", r"\(").replace(")", r"\)")) as e:
        build()
    assert "\n" not in str(e.value)
