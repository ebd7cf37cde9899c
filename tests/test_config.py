"""The config machinery: fields, sections, validation, overrides, YAML reading and writing."""

import pytest
import yaml

from cdsvae.config import (Field, Section, dump_config, load_config, merge, parse_overrides, read_yaml, required,
                           validate)
from cdsvae.io import UserError

SCHEMA = {
    "optim": Section({"lr": Field(1e-3, "float", minimum=0.0), "betas": Field([0.9, 0.999], "floats", length=2),
                      "grad_clip": Field(None, "float", optional=True),
                      "schedule": Field("constant", "str", choices=("constant", "cosine"))}),
    "train": Section({"epochs": Field(10, "int", minimum=1), "compile": Field(False, "bool")}),
    "data": Section({"type": required("str", choices=("speech", "video"))}, open=True),
}


def test_defaults_fill_missing_keys_and_open_section_passes_extra_keys():
    cfg = validate({"data": {"type": "video", "root": "data/x"}, "train": {"epochs": 3}}, SCHEMA)
    assert cfg["optim"] == {"lr": 1e-3, "betas": [0.9, 0.999], "grad_clip": None, "schedule": "constant"}
    assert cfg["train"] == {"epochs": 3, "compile": False}
    assert cfg["data"] == {"type": "video", "root": "data/x"}


def test_unknown_key_is_one_line_listing_valid_keys():
    with pytest.raises(UserError) as e:
        validate({"data": {"type": "video"}, "optim": {"lrr": 1}}, SCHEMA, "conf/train.yaml")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == ("conf/train.yaml: unknown key 'optim.lrr'; valid keys in 'optim': betas, grad_clip, lr, "
                   "schedule")


@pytest.mark.parametrize("section,key,value", [
    ("optim", "lr", "fast"),
    ("optim", "lr", True),          # a bool is not a number
    ("optim", "lr", -1.0),          # below the minimum
    ("optim", "betas", [0.9]),      # wrong length
    ("optim", "schedule", "linear"),
    ("train", "epochs", 2.5),
    ("train", "epochs", True),      # bool is an int subclass in Python; not accepted
    ("train", "compile", 1),
    ("optim", "grad_clip", "x"),
])
def test_wrong_type_names_key_expected_type_and_valid_keys(section, key, value):
    with pytest.raises(UserError) as e:
        validate({"data": {"type": "video"}, section: {key: value}}, SCHEMA, "c.yaml")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"c.yaml: '{section}.{key}' must be ")
    assert f"got {value!r}" in msg
    assert f"valid keys in '{section}': " + ", ".join(sorted(SCHEMA[section].fields)) in msg


def test_coercions_int_to_float_and_exponent_string():
    cfg = validate({"data": {"type": "video"}, "optim": {"lr": "1e-4", "betas": [1, 0.99], "grad_clip": 5}},
                   SCHEMA)
    assert cfg["optim"]["lr"] == 1e-4 and isinstance(cfg["optim"]["lr"], float)
    assert cfg["optim"]["betas"] == [1.0, 0.99]
    assert cfg["optim"]["grad_clip"] == 5.0


def test_unknown_section_and_missing_required_key():
    with pytest.raises(UserError, match=r"unknown section 'optimizer'; valid sections: optim, train, data"):
        validate({"optimizer": {}}, SCHEMA)
    with pytest.raises(UserError, match=r"'data.type' is required \(one of speech\|video\)"):
        validate({}, SCHEMA)


def test_parse_overrides_yaml_values():
    got = parse_overrides(["--optim.lr", "1e-4", "--train.compile=true", "--optim.betas", "[0.5, 0.9]",
                           "--optim.grad_clip", "null", "--data.root", "a b"])
    assert got == {"optim": {"lr": "1e-4", "betas": [0.5, 0.9], "grad_clip": None},
                   "train": {"compile": True}, "data": {"root": "a b"}}
    for bad in (["--lr", "1"], ["optim.lr", "1"], ["--optim.lr"], ["--optim.a.b", "1"]):
        with pytest.raises(UserError):
            parse_overrides(bad)


def test_load_config_file_plus_overrides_and_dump_roundtrip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  type: speech\n  root: dump\noptim:\n  lr: 1e-3\n  schedule: cosine\n")
    cfg = load_config(path, ["--optim.lr", "0.5", "--data.root", "other"], SCHEMA)
    assert cfg["optim"]["lr"] == 0.5 and cfg["optim"]["schedule"] == "cosine"
    assert cfg["data"] == {"type": "speech", "root": "other"}
    out = tmp_path / "exp" / "config.yaml"
    dump_config(cfg, out)
    assert validate(yaml.safe_load(out.read_text()), SCHEMA) == cfg
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]  # no temporary file left behind


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: 1\n  betas: [0.9\n")
    with pytest.raises(UserError) as e:
        read_yaml(path)
    assert str(e.value).startswith(f"{path}: line ")
    path.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="expected a mapping of sections"):
        read_yaml(path)


def test_merge_keeps_unrelated_keys():
    assert merge({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}, "b": {"z": 4}}) == {"a": {"x": 1, "y": 3}, "b": {"z": 4}}
