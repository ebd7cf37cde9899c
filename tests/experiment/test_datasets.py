"""The datasets of an experiment and the check that their frames fit the model."""

import pytest
import torch

from _tiny import TINY
from cdsvae.errors import UserError
from cdsvae.experiment.datasets import check_frames


def test_frames_that_do_not_fit_the_model_are_named():
    check_frames(TINY, torch.zeros(6, 12))
    with pytest.raises(UserError, match=r"frames of shape \(40,\).*expects \(12,\) \(model.feat_dim\)"):
        check_frames(TINY, torch.zeros(6, 40))
    with pytest.raises(UserError, match=r"model.in_channels 3 expects \(3, 64, 64\)"):
        check_frames({"frame": "conv64", "in_channels": 3}, torch.zeros(6, 1, 64, 64))
