import argparse
import logging
import random

import numpy as np
import pytest
import torch

from cdsvae import checkpoint as ckpt


def _state(v: float) -> dict:
    return {"model": {"w": torch.full((3, 2), v)}, "progress": {"epoch": 1, "step": int(v)},
            "meta": [1, 2.5, None, "x", True]}


def test_roundtrip_and_marker(tmp_path):
    path = tmp_path / "a.pt"
    ckpt.save_checkpoint(path, _state(7.0))
    got = ckpt.load_checkpoint(path)
    assert got["format"] == ckpt.FORMAT and got["version"] == ckpt.VERSION
    assert torch.equal(got["model"]["w"], torch.full((3, 2), 7.0))
    assert got["meta"] == [1, 2.5, None, "x", True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]  # the temporary file was renamed


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "opts": argparse.Namespace(lr=1)}, path)
    with pytest.raises(ckpt.UnsafeCheckpointError) as e:
        ckpt.load_checkpoint(path)
    msg = str(e.value)
    assert str(path) in msg and "argparse.Namespace" in msg and "refusing" in msg and "\n" not in msg
    # numpy arrays are pickled objects too: the trainer stores RNG states as tensors instead.
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "a": np.zeros(3)}, path)
    with pytest.raises(ckpt.UnsafeCheckpointError):
        ckpt.load_checkpoint(path)


def test_unsafe_newest_checkpoint_stops_resume_instead_of_falling_back(tmp_path):
    ckpt.save_checkpoint(ckpt.step_path(tmp_path, 1), _state(1.0))
    torch.save({"x": argparse.Namespace()}, ckpt.step_path(tmp_path, 2))
    with pytest.raises(ckpt.UnsafeCheckpointError):
        ckpt.load_latest(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "flip_tail"])
def test_corrupt_newest_falls_back_to_previous_with_warning(tmp_path, damage, caplog):
    ckpt.save_checkpoint(ckpt.step_path(tmp_path, 4), _state(4.0))
    ckpt.save_checkpoint(ckpt.step_path(tmp_path, 8), _state(8.0))
    bad = ckpt.step_path(tmp_path, 8)
    data = bad.read_bytes()
    if damage == "truncate":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "garbage":
        bad.write_bytes(bytes(range(256)) * 4)
    else:
        b = bytearray(data)
        for i in range(len(b) - 300, len(b) - 200):
            b[i] ^= 0xFF
        bad.write_bytes(bytes(b))
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_checkpoint(bad)
    assert str(bad) in str(e.value) and not isinstance(e.value, ckpt.UnsafeCheckpointError)

    logger = logging.getLogger("cdsvae.train")
    logger.addHandler(caplog.handler)
    try:
        path, state = ckpt.load_latest(tmp_path)
    finally:
        logger.removeHandler(caplog.handler)
    assert path == ckpt.step_path(tmp_path, 4)
    assert torch.equal(state["model"]["w"], torch.full((3, 2), 4.0))
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(bad) in warnings and str(path) in warnings


def test_all_corrupt_is_an_error_and_empty_dir_is_none(tmp_path):
    assert ckpt.load_latest(tmp_path / "missing") is None
    ckpt.step_path(tmp_path, 3).write_bytes(b"xx")
    with pytest.raises(ckpt.CheckpointError, match="no readable checkpoint"):
        ckpt.load_latest(tmp_path)


def test_foreign_file_and_missing_keys(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a cdsvae checkpoint"):
        ckpt.load_checkpoint(tmp_path / "plain.pt")
    ckpt.save_checkpoint(ckpt.step_path(tmp_path, 1), _state(1.0))
    ckpt.save_checkpoint(ckpt.step_path(tmp_path, 2), {"model": {}})  # incomplete: no progress
    path, _ = ckpt.load_latest(tmp_path, required_keys=("model", "progress"))
    assert path == ckpt.step_path(tmp_path, 1)


def test_prune_keeps_newest_and_best(tmp_path):
    for s in (1, 5, 10, 20):
        ckpt.save_checkpoint(ckpt.step_path(tmp_path, s), _state(float(s)))
    ckpt.save_checkpoint(tmp_path / ckpt.BEST, _state(0.0))
    ckpt.prune(tmp_path, 2)
    assert [s for s, _ in ckpt.list_step_checkpoints(tmp_path)] == [10, 20]
    assert (tmp_path / ckpt.BEST).exists()


def test_rng_states_survive_weights_only_roundtrip(tmp_path):
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)
    state = ckpt.capture_rng({"augment": gen})
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)],
                torch.rand(4, generator=gen), np.random.normal(), random.gauss(0, 1))
    ckpt.save_checkpoint(tmp_path / "r.pt", {"rng": state})
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    gen.manual_seed(99)
    ckpt.restore_rng(ckpt.load_checkpoint(tmp_path / "r.pt")["rng"], {"augment": gen})
    got = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)],
           torch.rand(4, generator=gen), np.random.normal(), random.gauss(0, 1))
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    assert torch.equal(got[3], expected[3])
    assert got[4] == expected[4] and got[5] == expected[5]
