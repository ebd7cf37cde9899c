"""The experiment's own description: its resolved config and system label, read without the trainer."""

import pytest

from cdsvae.eval.report.experiment import load_config, modality, system_label
from cdsvae.io import UserError
from _experiments import CDSVAE_W, DSVAE_W


def test_system_label_from_config():
    assert system_label({"loss": DSVAE_W}) == "DSVAE"
    assert system_label({"loss": CDSVAE_W}) == "C-DSVAE"
    assert system_label({"loss": {"con_s": 0, "con_z": 0, "mi_sz": 0.5}}) == "C-DSVAE"
    assert system_label({"model": {}}) == "C-DSVAE"  # objective defaults are C-DSVAE's


def test_config_is_read_as_written(tmp_path):
    (tmp_path / "config.yaml").write_text("loss: {con_s: 0}\ndata: {type: video}\n")
    cfg = load_config(tmp_path)
    assert cfg == {"loss": {"con_s": 0}, "data": {"type": "video"}} and modality(cfg) == "video"
    assert modality({}) == "speech"
    (tmp_path / "config.yaml").write_text("loss: [unclosed\n")
    with pytest.raises(UserError, match=r"config.yaml: line 2: invalid YAML"):
        load_config(tmp_path)
    (tmp_path / "config.yaml").write_text("- a list\n")
    with pytest.raises(UserError, match="expected a mapping of sections, got list"):
        load_config(tmp_path)
    (tmp_path / "config.yaml").unlink()
    with pytest.raises(UserError, match="config.yaml: resolved config not found"):
        load_config(tmp_path)
