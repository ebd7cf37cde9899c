"""The config of an experiment: its sections, as their owners declare them, and its checks."""

import pytest

from cdsvae.config import read_yaml
from cdsvae.experiment.schema import check_config, config_schema
from cdsvae.io import UserError


def test_real_schema_covers_model_defaults_and_loss_weights():
    from cdsvae.models import MODEL
    from cdsvae.objectives import LOSS, LossWeights

    schema = config_schema()
    assert set(schema) == {"model", "loss", "optim", "train", "augment", "data"}
    assert schema["model"] is MODEL and schema["loss"] is LOSS  # declared by their owners, taken as they are
    cfg = check_config({"data": {"type": "synthetic"}, "loss": {"con_s": 0, "con_z": 0, "mi_sz": 0}})
    assert cfg["model"] == MODEL.defaults()
    assert LossWeights(**cfg["loss"]).con_s == 0.0
    with pytest.raises(UserError, match=r"unknown key 'model.zdim'; valid keys in 'model': .*z_dim"):
        check_config({"data": {"type": "synthetic"}, "model": {"zdim": 3}})
    with pytest.raises(UserError, match=r"'loss.mi_estimator' must be one of contrastive\|mws"):
        check_config({"data": {"type": "synthetic"}, "loss": {"mi_estimator": "nce"}})
    with pytest.raises(UserError, match=r"'model.frame' must be one of conv64\|mlp\|conv1d"):
        check_config({"data": {"type": "synthetic"}, "model": {"frame": "rnn"}})
    with pytest.raises(UserError, match=r"'model.init_std' must be a positive number"):  # checked by cdsvae.models
        check_config({"data": {"type": "synthetic"}, "model": {"init_std": 0}})


def test_template_example_lists_every_key_with_its_default():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "egs/TEMPLATE/cdsvae1/conf/train_example.yaml"
    raw = read_yaml(example)
    cfg = check_config(raw, str(example))
    schema = config_schema()
    for name in ("model", "loss", "optim", "train", "augment"):
        assert set(raw[name]) == set(schema[name].fields), name
        for key, field in schema[name].fields.items():
            if (name, key) == ("train", "unique_utts_per_batch"):  # null resolves to "a contrastive term is on"
                assert raw[name][key] is None and cfg[name][key] is True
            elif (name, key) != ("model", "frame"):
                assert cfg[name][key] == field.default, (name, key)
