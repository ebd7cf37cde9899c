"""Loading an experiment directory back, and its errors."""

import logging

import pytest
import torch
import yaml

from _tiny import tiny_config as _cfg
from cdsvae import checkpoint as ckpt
from cdsvae.experiment.load import load_model
from cdsvae.experiment.run import train
from cdsvae.experiment.schema import check_config
from cdsvae.io import UserError


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


def test_load_packed_gives_the_weights_of_the_experiment_in_eval_mode(tmp_path):
    """A packed model (directory or tarball) loads into the model its experiment loads; weights
    that do not fit its config.yaml are a one-line error naming the packed model."""
    from pathlib import Path

    from _packed import packed_video

    from cdsvae.experiment.load import load_packed

    exp, packed = packed_video(tmp_path)
    want, _ = load_model(exp)
    for source in (packed, Path(f"{packed}.tar.gz")):
        model, info = load_packed(source)
        assert not model.training and info.modality == "video" and info.source == str(source)
        got = model.state_dict()
        assert got.keys() == want.state_dict().keys()
        assert all(torch.equal(v, got[k]) for k, v in want.state_dict().items())
    state = torch.load(packed / "model.pt", weights_only=True)
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("s_mean_head")}
    torch.save(state, packed / "model.pt")
    with pytest.raises(UserError, match=rf"^{packed}: weights do not match its config.yaml \(Error"):
        load_packed(packed)
