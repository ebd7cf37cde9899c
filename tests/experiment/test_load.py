"""Loading an experiment directory back, and its errors."""

import logging

import pytest
import torch
import yaml

from _tiny import tiny_config as _cfg
from cdsvae import checkpoint as ckpt
from cdsvae.errors import UserError
from cdsvae.experiment.load import load_model
from cdsvae.experiment.run import train
from cdsvae.experiment.schema import check_config


def test_load_model_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_model(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(_cfg()))
    with pytest.raises(UserError, match="no checkpoint to load"):
        load_model(tmp_path)


def test_load_model_falls_back_from_corrupt_best_to_newest_step(tmp_path, caplog):
    out = tmp_path / "exp"
    train(check_config(_cfg(train__epochs=1)), out)
    (out / "checkpoints" / ckpt.BEST).write_bytes(b"truncated")
    with caplog.at_level(logging.WARNING, logger="cdsvae.experiment.load"):
        model, _ = load_model(out)
    assert "best.pt" in caplog.text
    newest = ckpt.load_checkpoint(ckpt.step_path(out / "checkpoints", 4))["model"]
    assert all(torch.equal(v, newest[k]) for k, v in model.state_dict().items())
