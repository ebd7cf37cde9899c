"""cdsvae.experiment.inputs: the datasets and the check that their frames fit the model, absolute data paths,
fingerprints of the training inputs, the checks on resume and before evaluation, and the experiment's own
copy of the CMVN statistics."""

import hashlib
import json
import os

import pytest
import torch

from _tiny import TINY
from cdsvae.experiment import inputs
from cdsvae.experiment.inputs import (
    FEATS_DIR_FILES,
    absolute_data_paths,
    changes,
    check_experiment,
    check_frames,
    check_resume,
    copy_cmvn,
    experiment_cmvn,
    file_digest,
    fingerprint,
    input_files,
    write_inputs,
)
from cdsvae.io import UserError


def test_frames_that_do_not_fit_the_model_are_named():
    check_frames(TINY, torch.zeros(6, 12))
    with pytest.raises(UserError, match=r"frames of shape \(40,\).*expects \(12,\) \(model.feat_dim\)"):
        check_frames(TINY, torch.zeros(6, 40))
    with pytest.raises(UserError, match=r"model.in_channels 3 expects \(3, 64, 64\)"):
        check_frames({"frame": "conv64", "in_channels": 3}, torch.zeros(6, 1, 64, 64))


def feats_dir(path, fbank="sample_frequency: 16000\nnum_mel_bins: 5\n"):
    """The four files a feature dir is fingerprinted by (contents need not be real features here)."""
    path.mkdir(parents=True)
    (path / "feats.scp").write_text(f"a_1 {path}/feats.ark:8\nb_1 {path}/feats.ark:99\n")
    (path / "utt2num_frames").write_text("a_1 30\nb_1 40\n")
    (path / "utt2spk").write_text("a_1 a\nb_1 b\n")
    (path / "fbank.yaml").write_text(fbank)
    return path


@pytest.fixture
def speech(tmp_path):
    """A speech config over train/dev feature dirs, two converted copies and a CMVN file."""
    dump = tmp_path / "dump"
    feats_dir(dump / "train")
    feats_dir(dump / "dev")
    feats_dir(dump / "test")
    for k in (1, 2):
        feats_dir(dump / "vc" / f"copy{k}")
    (dump / "cmvn.npz").write_bytes(b"cmvn statistics")
    data = {"type": "speech", "train_feats": str(dump / "train"), "valid_feats": str(dump / "dev"),
            "motion_feats": str(dump / "vc"), "cmvn": str(dump / "cmvn.npz"), "segment_frames": 20}
    return {"model": {"z_dim": 4}, "loss": {"con_s": 10.0}, "optim": {"lr": 1e-3}, "augment": {},
            "train": {"epochs": 2}, "data": data}


# -- absolute_data_paths


def test_absolute_data_paths_makes_every_data_path_absolute_and_leaves_the_rest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = {"model": {"frame": "mlp", "feat_dim": 5},
           "data": {"type": "speech", "train_feats": "dump/train", "test_feats": None,
                    "motion_feats": ["dump/vc/copy1", "dump/vc/copy2"], "cmvn": "dump/cmvn.npz",
                    "segment_frames": 20, "train_split": "train", "seed": 3}}
    out = absolute_data_paths(cfg)
    data = out["data"]
    assert data["train_feats"] == str(tmp_path / "dump/train")
    assert data["motion_feats"] == [str(tmp_path / "dump/vc/copy1"), str(tmp_path / "dump/vc/copy2")]
    assert data["cmvn"] == str(tmp_path / "dump/cmvn.npz")
    assert data["test_feats"] is None
    assert {k: data[k] for k in ("type", "segment_frames", "train_split", "seed")} == \
        {"type": "speech", "segment_frames": 20, "train_split": "train", "seed": 3}
    assert out["model"] == cfg["model"]
    assert cfg["data"]["train_feats"] == "dump/train"  # the input is not modified

    mapping = absolute_data_paths({"data": {"type": "speech", "motion_feats": {"train": ["vc/a"], "dev": "vc/b"},
                                            "cmvn": "/abs/cmvn.npz"}})["data"]
    assert mapping["motion_feats"] == {"train": [str(tmp_path / "vc/a")], "dev": str(tmp_path / "vc/b")}
    assert mapping["cmvn"] == "/abs/cmvn.npz"  # already absolute: unchanged


def test_absolute_data_paths_gives_video_its_default_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = absolute_data_paths({"data": {"type": "video", "train_split": "train", "frames": "frames.npy"}})["data"]
    assert data["root"] == str(tmp_path / "data")
    assert data["train_split"] == "train" and data["frames"] == "frames.npy"
    assert absolute_data_paths({"data": {"type": "video", "root": "sprites"}})["data"]["root"] == \
        str(tmp_path / "sprites")
    # synthetic data has no paths: nothing is added
    assert absolute_data_paths({"data": {"type": "synthetic", "num_train": 4}})["data"] == \
        {"type": "synthetic", "num_train": 4}


# -- file_digest


def test_file_digest_is_the_sha256_of_the_bytes_or_none(tmp_path):
    f = tmp_path / "x.bin"
    payload = bytes(range(256)) * 4099  # over one read block
    f.write_bytes(payload)
    assert file_digest(f) == hashlib.sha256(payload).hexdigest()
    assert file_digest(str(f)) == hashlib.sha256(payload).hexdigest()
    assert file_digest(tmp_path / "nope") is None
    (tmp_path / "empty").write_bytes(b"")
    assert file_digest(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_file_digest_of_a_large_file_reads_its_size_and_edges(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "_WHOLE_FILE_LIMIT", 64)
    monkeypatch.setattr(inputs, "_EDGE_BYTES", 16)
    f = tmp_path / "big"
    base = bytearray(range(200))
    f.write_bytes(bytes(base))
    d0 = file_digest(f)
    assert d0.startswith("edges:") and d0 != "edges:" + hashlib.sha256(bytes(base)).hexdigest()

    def digest_of(data):
        f.write_bytes(bytes(data))
        return file_digest(f)

    middle = bytearray(base)
    middle[100] ^= 0xFF
    assert digest_of(middle) == d0  # bytes between the edges are not read
    for k in (0, 15, 184, 199):  # in the first or the last 16 bytes
        edge = bytearray(base)
        edge[k] ^= 0xFF
        assert digest_of(edge) != d0, k
    assert digest_of(base + b"\0") != d0  # another size
    assert digest_of(base) == d0
    small = tmp_path / "small"
    small.write_bytes(bytes(64))  # at the limit: the whole file
    assert file_digest(small) == hashlib.sha256(bytes(64)).hexdigest()


# -- input_files


def test_input_files_of_a_speech_config(speech, tmp_path):
    dump = tmp_path / "dump"
    files = input_files(speech)
    dirs = [dump / "train", dump / "dev", dump / "vc" / "copy1", dump / "vc" / "copy2"]  # train_feats, valid_feats
    assert files == [d / name for d in dirs for name in FEATS_DIR_FILES] + [dump / "cmvn.npz"]
    assert len(FEATS_DIR_FILES) == 4 and set(FEATS_DIR_FILES) == {"feats.scp", "utt2num_frames", "utt2spk",
                                                                  "fbank.yaml"}
    # a list of copies and a mapping split -> copies name the same dirs; no cmvn, no CMVN file
    for motion in ([str(dump / "vc/copy1"), str(dump / "vc/copy2")],
                   {"train": [str(dump / "vc/copy1")], "dev": str(dump / "vc/copy2")}):
        data = {**speech["data"], "motion_feats": motion, "cmvn": None, "valid_feats": None}
        files = input_files({"data": data})
        assert files == [d / n for d in (dump / "train", dump / "vc/copy1", dump / "vc/copy2")
                         for n in FEATS_DIR_FILES]
    assert input_files({"data": {"type": "synthetic"}}) == []


def test_input_files_of_a_video_config(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / split / "frames.npy").write_bytes(b"x")
    direct = tmp_path / "elsewhere" / "test"
    direct.mkdir(parents=True)
    (direct / "frames.npy").write_bytes(b"x")
    cfg = {"data": {"type": "video", "root": str(root), "train_split": "train", "valid_split": "val"}}
    assert input_files(cfg) == [root / s / n for s in ("train", "val")
                                for n in ("frames.npy", "labels.npz", "factors.yaml")]
    cfg = {"data": {"type": "video", "root": str(root), "train_split": str(direct), "valid_split": None}}
    assert input_files(cfg) == [direct / n for n in ("frames.npy", "labels.npz", "factors.yaml")]


# -- fingerprint and changes


def test_fingerprint_records_config_sections_and_file_digests(speech, tmp_path):
    fp = fingerprint(speech)
    assert set(fp["config"]) == {"model", "loss", "optim", "augment", "data"}  # not train
    assert fp["config"]["model"] == {"z_dim": 4}
    train_utt2spk = str(tmp_path / "dump/train/utt2spk")
    assert fp["files"][train_utt2spk] == hashlib.sha256(b"a_1 a\nb_1 b\n").hexdigest()
    assert fp["files"][str(tmp_path / "dump/cmvn.npz")] == hashlib.sha256(b"cmvn statistics").hexdigest()
    assert fp["feature_config"] == str(tmp_path / "dump/train/fbank.yaml")
    json.dumps(fp)  # what inputs.json holds
    assert changes(fp, fingerprint(speech)) == []
    assert changes(fp, fingerprint({**speech, "train": {"epochs": 9}})) == []  # more epochs: same inputs


def test_changes_name_config_keys_and_files(speech, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = fingerprint(speech)
    cfg = {**speech, "data": {**speech["data"], "segment_frames": 30}}
    assert changes(old, fingerprint(cfg)) == ["data.segment_frames: 20 -> 30"]
    (tmp_path / "dump/train/utt2spk").write_text("a_1 a\nb_1 c\n")
    (tmp_path / "dump/vc/copy2/utt2num_frames").unlink()
    diff = changes(old, fingerprint(cfg))
    assert diff[0] == "data.segment_frames: 20 -> 30"  # config keys first
    assert set(diff[1:]) == {"dump/train/utt2spk changed", "dump/vc/copy2/utt2num_frames missing now"}
    assert changes(fingerprint(cfg), old)[1:] == ["dump/train/utt2spk changed", "dump/vc/copy2/utt2num_frames new"]


# -- check_resume


def test_check_resume(speech, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "exp"
    exp.mkdir()
    fp = fingerprint(speech)
    check_resume(exp, fp, has_checkpoints=False)  # nothing to resume: any inputs
    with pytest.raises(UserError, match=r"holds checkpoints but no record .*\(inputs\.json\)"):
        check_resume(exp, fp, has_checkpoints=True)
    write_inputs(exp, fp)
    assert json.loads((exp / "inputs.json").read_text()) == fp
    check_resume(exp, fp, has_checkpoints=True)
    (tmp_path / "dump/train/fbank.yaml").write_text("num_mel_bins: 80\n")
    with pytest.raises(UserError, match=r"was trained on other inputs: dump/train/fbank\.yaml changed; train into a new --outdir or move \S*exp aside$"):
        check_resume(exp, fingerprint(speech), has_checkpoints=True)
    (exp / "inputs.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="inputs.json: unreadable fingerprint"):
        check_resume(exp, fp, has_checkpoints=True)


# -- check_experiment


def test_check_experiment(speech, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "exp"
    exp.mkdir()
    with pytest.raises(UserError, match=r"exp: no record of its training inputs \(inputs\.json\)"):
        check_experiment(exp)
    fp = fingerprint(speech)
    write_inputs(exp, fp)
    assert check_experiment(exp, [tmp_path / "dump/test", str(tmp_path / "dump/train")]) == fp

    # test features made with other options
    (tmp_path / "dump/test/fbank.yaml").write_text("sample_frequency: 8000\nnum_mel_bins: 5\n")
    with pytest.raises(UserError, match=r"other options than dump/test/fbank\.yaml \(compare with "
                                        r"dump/train/fbank\.yaml\)"):
        check_experiment(exp, [tmp_path / "dump/train", tmp_path / "dump/test"])
    check_experiment(exp)  # without feature dirs to check: fine
    (tmp_path / "dump/test/fbank.yaml").unlink()
    with pytest.raises(UserError, match=r"dump/test/fbank\.yaml: missing"):
        check_experiment(exp, [tmp_path / "dump/test"])

    # a recorded input edited after training
    (tmp_path / "dump/vc/copy1/feats.scp").write_text("a_1 elsewhere.ark:8\n")
    with pytest.raises(UserError, match=r"exp was trained on other inputs: dump/vc/copy1/feats\.scp changed$"):
        check_experiment(exp)
    (tmp_path / "dump/cmvn.npz").unlink()
    with pytest.raises(UserError, match=r"dump/cmvn\.npz missing now; dump/vc/copy1/feats\.scp changed"):
        check_experiment(exp)


def test_check_experiment_without_a_training_feature_config_compares_no_options(speech, tmp_path):
    (tmp_path / "dump/train/fbank.yaml").unlink()  # features not made by make_fbank
    exp = tmp_path / "exp"
    exp.mkdir()
    write_inputs(exp, fingerprint(speech))
    check_experiment(exp, [tmp_path / "dump/test"])  # nothing to compare the test options with


def test_video_split_given_as_a_directory_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my" / "train").mkdir(parents=True)
    (tmp_path / "my" / "train" / "frames.npy").write_bytes(b"frames")
    data = absolute_data_paths({"data": {"type": "video", "train_split": "my/train", "valid_split": "dev"}})["data"]
    assert data["train_split"] == str(tmp_path / "my/train")
    assert data["valid_split"] == "dev"  # a name under root: left as it is
    files = input_files({"data": data})
    assert tmp_path / "my/train/frames.npy" in files and all(p.is_absolute() for p in files)


def test_many_changes_are_summarised(speech, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    write_inputs(exp, fingerprint(speech))
    for d in ("train", "dev"):
        for name in ("utt2spk", "utt2num_frames"):
            (tmp_path / "dump" / d / name).write_text("x\n")
    with pytest.raises(UserError, match=r"changed; and 1 more$") as e:
        check_experiment(exp)
    assert str(e.value).count(" changed") == 3


# -- the experiment's copy of the CMVN statistics


def test_copy_cmvn_and_experiment_cmvn(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    source = tmp_path / "dump" / "cmvn.npz"
    source.parent.mkdir()
    source.write_bytes(b"\x93NUMPY statistics")
    data = {"cmvn": str(source)}
    assert experiment_cmvn(exp, data) == str(source)  # no copy yet: the source
    copy = copy_cmvn(exp, data)
    assert copy == exp / "cmvn.npz" and copy.read_bytes() == source.read_bytes()
    assert experiment_cmvn(exp, data) == str(exp / "cmvn.npz")
    source.write_bytes(b"recomputed")
    assert experiment_cmvn(exp, data) == str(exp / "cmvn.npz")  # evaluation keeps the training statistics
    copy_cmvn(exp, data)
    assert copy.read_bytes() == b"recomputed"
    assert [p.name for p in exp.iterdir()] == ["cmvn.npz"]  # no temporary left behind

    kaldi = tmp_path / "dump" / "cmvn.ark"
    kaldi.write_bytes(b"kaldi stats")
    assert copy_cmvn(exp, {"cmvn": str(kaldi)}) == exp / "cmvn.ark"
    assert experiment_cmvn(exp, {"cmvn": str(kaldi)}) == str(exp / "cmvn.ark")

    assert copy_cmvn(exp, {"cmvn": None}) is None and experiment_cmvn(exp, {}) is None
    with pytest.raises(UserError, match="nope.npz: no such CMVN statistics file"):
        copy_cmvn(exp, {"cmvn": str(tmp_path / "nope.npz")})
    other = tmp_path / "other"
    other.mkdir()
    assert experiment_cmvn(other, data) == str(source)
    assert not os.path.exists(other / "cmvn.npz")


def test_checking_an_experiment_does_not_import_torch():
    """Stages 5-7 start with cdsvae.bin.check_experiment for every experiment; importing torch there
    would cost seconds of CPU per stage for a check that reads JSON and hashes files."""
    import subprocess
    import sys

    code = ("import sys, cdsvae.bin.check_experiment, cdsvae.experiment.inputs; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
