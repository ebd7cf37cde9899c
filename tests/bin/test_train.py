import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _tools import run_tool
from cdsvae.io import UserError

REPO = Path(__file__).resolve().parents[2]
TINY = ["--model.frame", "mlp", "--model.feat_dim", "12", "--model.s_dim", "8", "--model.z_dim", "4",
        "--model.hidden_dim", "16", "--model.g_dim", "8", "--model.frame_hidden", "16",
        "--data.type", "synthetic", "--data.frame_shape", "[12]", "--data.num_train", "16", "--data.num_valid", "8",
        "--data.with_motion", "true", "--train.batch_size", "8", "--train.tensorboard", "false"]


def _train(*args):
    """``python -m cdsvae.bin.train ARGS`` as its console script runs it, in this process (tests/_tools.py)."""
    return run_tool("train", *args, cwd=REPO)


def test_help():
    """A real process: ``python -m`` reaches the entry point."""
    r = subprocess.run([sys.executable, "-m", "cdsvae.bin.train", "--help"], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=REPO, timeout=240)
    assert r.returncode == 0
    assert "--outdir" in r.stdout and "--SECTION.KEY VALUE" in r.stdout and "synthetic" in r.stdout


def test_config_errors_are_one_line_without_traceback(tmp_path):
    conf = tmp_path / "train.yaml"
    conf.write_text("data:\n  type: synthetic\noptim:\n  learning_rate: 0.1\n")
    r = _train("--config", str(conf), "--outdir", str(tmp_path / "exp"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{conf}: unknown key 'optim.learning_rate'; valid keys in 'optim': betas, eps, grad_clip, implementation, lr," in lines[0]

    conf.write_text("data:\n  type: synthetic\n")
    r = _train("--config", str(conf), "--outdir", str(tmp_path / "exp"), "--train.epochs", "two")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "'train.epochs' must be an integer >= 1, got 'two'; valid keys in 'train': " in r.stderr
    assert not (tmp_path / "exp").exists()  # nothing is written for a bad config


def test_train_print_config_and_nonfinite_exit(tmp_path):
    r = _train(*TINY, "--outdir", str(tmp_path / "x"), "--print_config")
    assert r.returncode == 0
    assert yaml.safe_load(r.stdout)["model"]["feat_dim"] == 12

    out = tmp_path / "exp"
    r = _train(*TINY, "--outdir", str(out), "--train.epochs", "1", "--optim.lr", "1e30",
               "--train.ckpt_every_steps", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "non-finite loss term" in r.stderr and "at step 2 (epoch 1)" in r.stderr
    assert r.stderr.count("non-finite") == 1
    assert str(out / "checkpoints" / "step000000001.pt") in r.stderr
    assert (out / "config.yaml").exists() and "non-finite" in (out / "train.log").read_text()


def test_a_run_sets_up_its_process_and_checks_its_config_once(tmp_path, monkeypatch):
    from collections import Counter

    from cdsvae import config
    from cdsvae.bin.train import main
    from cdsvae.experiment import run, schema
    from cdsvae.train import batches, distributed, monitor, trainer

    calls = Counter()
    steps = {"validate": (config, schema), "_check_values": (schema,), "setup_logging": (monitor, trainer),
             "set_deterministic": (batches, trainer), "init_distributed": (distributed, trainer)}
    # validate counts the checks of the whole training config only: the sections that other code
    # checks on its own (a motion view, say, when its module is first imported) are not the config's.
    counted = {name: (lambda *a, **k: True) for name in steps}
    counted["validate"] = lambda cfg, schema, *a, **k: "train" in schema and "model" in schema
    for name, modules in steps.items():
        for module in modules:
            real = getattr(module, name)
            monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **k: (
                calls.update([_name] if counted[_name](*a, **k) else []), _real(*a, **k))[1])
    seeds = []
    for module in (run, trainer):
        real = module.seed_everything
        monkeypatch.setattr(module, "seed_everything",
                            lambda seed, _real=real, _mod=module.__name__: (seeds.append(_mod), _real(seed))[1])
    assert main([*TINY, "--outdir", str(tmp_path / "exp"), "--train.epochs", "1"]) == 0
    assert calls == {name: 1 for name in steps}
    # once each: the initial parameters (the run, the same on every rank), the per-rank streams (the trainer)
    assert seeds == ["cdsvae.experiment.run", "cdsvae.train.trainer"]
    assert (tmp_path / "exp" / "checkpoints" / "best.pt").is_file()


# -- a speech run on relative paths: absolute config, input fingerprint, CMVN copy, refused reruns

SPEECH_TINY = ["--model.frame", "mlp", "--model.feat_dim", "5", "--model.s_dim", "4", "--model.z_dim", "2",
               "--model.hidden_dim", "8", "--model.g_dim", "8", "--model.frame_hidden", "8",
               "--data.type", "speech", "--data.segment_frames", "8", "--data.train_feats", "dump/train",
               "--data.valid_feats", "dump/dev", "--data.motion_feats", "dump/vc", "--data.cmvn", "dump/cmvn.npz",
               "--train.epochs", "2", "--train.batch_size", "4", "--train.log_every", "1",
               "--train.tensorboard", "false", "--train.device", "cpu", "--outdir", "exp/cdsvae"]


def _speech_feats(path, offset=0.0, seed=0):
    import numpy as np

    from cdsvae.data.feats import FeatureWriter

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    utts = [f"spk{s}_u{u}" for s in range(4) for u in range(2)]
    with FeatureWriter(path / "feats.ark", path / "feats.scp", path / "utt2num_frames") as w:
        for k, utt in enumerate(utts):
            w.write(utt, (rng.normal(size=(12 + k, 5)) + offset).astype(np.float32))
    (path / "utt2spk").write_text("".join(f"{u} {u.split('_')[0]}\n" for u in utts))
    (path / "fbank.yaml").write_text("sample_frequency: 16000\nnum_mel_bins: 5\n")


@pytest.fixture
def speech_recipe(tmp_path, monkeypatch):
    """A recipe dir (the cwd) with dump/{train,dev,vc/copy1} feature dirs and dump/cmvn.npz."""
    import numpy as np

    from cdsvae.data.feats import CMVNStats

    _speech_feats(tmp_path / "dump" / "train")
    _speech_feats(tmp_path / "dump" / "dev", seed=1)
    _speech_feats(tmp_path / "dump" / "vc" / "copy1", offset=0.5)
    stats = CMVNStats()
    stats.accumulate(np.random.default_rng(2).normal(size=(50, 5)))
    stats.save(tmp_path / "dump" / "cmvn.npz")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _refused(argv, capsys):
    """The one-line error run_main prints for ``cdsvae.bin.train.main(argv)``."""
    from cdsvae.bin import run_main
    from cdsvae.bin.train import main

    with pytest.raises(SystemExit) as e:
        run_main(main, argv)
    assert e.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: error: ")
    return lines[0]


def test_speech_run_records_its_inputs_and_refuses_other_data(speech_recipe, monkeypatch, capsys):
    from cdsvae.bin.train import main
    from cdsvae.experiment.load import load_config_file
    from cdsvae.train.monitor import Monitor

    tmp = speech_recipe
    lines = []
    write = Monitor.write_progress
    monkeypatch.setattr(Monitor, "write_progress", lambda self, line: (lines.append(line), write(self, line))[1])
    assert main(SPEECH_TINY) == 0
    out = tmp / "exp" / "cdsvae"

    cfg = yaml.safe_load((out / "config.yaml").read_text())["data"]
    assert cfg["train_feats"] == str(tmp / "dump/train") and cfg["valid_feats"] == str(tmp / "dump/dev")
    assert cfg["motion_feats"] == str(tmp / "dump/vc") and cfg["cmvn"] == str(tmp / "dump/cmvn.npz")
    fp = json.loads((out / "inputs.json").read_text())
    assert str(tmp / "dump/train/utt2spk") in fp["files"] and str(tmp / "dump/vc/copy1/feats.scp") in fp["files"]
    assert fp["feature_config"] == str(tmp / "dump/train/fbank.yaml")
    assert (out / "cmvn.npz").read_bytes() == (tmp / "dump/cmvn.npz").read_bytes()
    assert os.path.samefile(load_config_file("exp/cdsvae")["data"]["cmvn"], out / "cmvn.npz")

    # progress: one line per log step while training, "finished: ..." at the end
    assert re.fullmatch(r"finished: step (\d+)/\1, 2/2 epochs complete\n", (out / "progress").read_text())
    n_steps = int(re.match(r"finished: step (\d+)/", (out / "progress").read_text()).group(1))
    assert n_steps >= 2
    during = lines[:-1]
    assert len(during) == n_steps
    for k, line in enumerate(during, 1):
        assert re.fullmatch(rf"epoch [12]/2, step {k}/{n_steps}, loss -?[0-9.e+-]+, ETA (\d+s|\d+m\d\ds)", line), line
    assert during[0].startswith("epoch 1/2") and during[-1].startswith("epoch 2/2")
    assert during[-1].endswith("ETA 0s")

    # from another directory, the experiment reads the same (absolute) data and its own CMVN copy
    (tmp / "elsewhere").mkdir()
    monkeypatch.chdir(tmp / "elsewhere")
    again = load_config_file(out)
    assert again["data"]["cmvn"] == str(out / "cmvn.npz") and again["data"]["train_feats"] == str(tmp / "dump/train")
    monkeypatch.chdir(tmp)

    assert main([*SPEECH_TINY, "--check_inputs"]) == 0  # unchanged inputs
    capsys.readouterr()
    # the training features change: checking and rerunning (resuming) are both refused
    (tmp / "dump/train/utt2spk").write_text((tmp / "dump/train/utt2spk").read_text().replace("spk3_u1 spk3",
                                                                                           "spk3_u1 spk2"))
    for argv in ([*SPEECH_TINY, "--check_inputs"], SPEECH_TINY):
        line = _refused(argv, capsys)
        assert "exp/cdsvae was trained on other inputs: dump/train/utt2spk changed" in line, line
    assert fp == json.loads((out / "inputs.json").read_text())  # the record is not overwritten
    (tmp / "dump/train/utt2spk").write_text(
        (tmp / "dump/train/utt2spk").read_text().replace("spk3_u1 spk2", "spk3_u1 spk3"))
    assert main([*SPEECH_TINY, "--check_inputs"]) == 0
    (tmp / "dump/train/fbank.yaml").write_text("sample_frequency: 8000\nnum_mel_bins: 5\n")
    line = _refused([*SPEECH_TINY, "--check_inputs"], capsys)
    assert line.endswith("was trained on other inputs: dump/train/fbank.yaml changed; "
                         "train into a new --outdir or move exp/cdsvae aside"), line
    line = _refused(SPEECH_TINY, capsys)
    assert "dump/train/fbank.yaml changed" in line

    # a fresh outdir can be trained on the new inputs
    assert main([*SPEECH_TINY[:-1], "exp/other", "--check_inputs"]) == 0


def test_check_inputs_refuses_more_processes_than_the_utterances_can_fill_before_any_starts(speech_recipe, capsys):
    """8 utterances, one segment of each per global batch: batch 4 fits 2 processes, not 4; the
    line names the batch and the process count that would fit."""
    from cdsvae.bin.train import main

    args = SPEECH_TINY + ["--train.unique_utts_per_batch", "true", "--check_inputs"]
    assert main(args + ["--nproc", "2"]) == 0
    line = _refused(args + ["--nproc", "4"], capsys)
    assert line == ("train: error: the training set has 8 utterances (train.unique_utts_per_batch: one segment of "
                    "each per batch), fewer than one global batch of 16 (train.batch_size 4 x 4 process(es)): use "
                    "train.batch_size 2 or less or at most 2 process(es) or train.unique_utts_per_batch false")
    assert not (speech_recipe / "exp" / "cdsvae").exists()  # nothing was written
    # the trainer refuses the same run with the same line
    from cdsvae.experiment.inputs import build_dataset
    from cdsvae.experiment.schema import load_train_config
    from cdsvae.train.batches import check_global_batch

    cfg = load_train_config(None, SPEECH_TINY[:-2])
    train_set = build_dataset(cfg["data"], "train", False)
    with pytest.raises(UserError, match="fewer than one global batch of 16"):
        check_global_batch(train_set, 4, 4, True)
    check_global_batch(train_set, 4, 2, True)
    # without the one-per-utterance rule, the sampler pads each process to ceil(N / P) items
    n = len(train_set)
    check_global_batch(train_set, -(-n // 3), 3, False)
    with pytest.raises(UserError, match=f"the training set has {n} sequences"):
        check_global_batch(train_set, -(-n // 3) + 1, 3, False)


def test_nproc_must_be_positive(speech_recipe, capsys):
    from cdsvae.bin.train import main

    with pytest.raises(SystemExit) as e:
        main(SPEECH_TINY + ["--check_inputs", "--nproc", "0"])
    assert e.value.code == 2 and "--nproc must be at least 1" in capsys.readouterr().err


def test_check_inputs_says_when_the_run_is_trained_to_the_end(speech_recipe, capsys):
    """--check_inputs prints 'finished: ...' for a run that training would leave as it is (the
    recipe then does not start it), and nothing for a new run or one with more epochs to go."""
    from cdsvae.bin.train import main

    assert main([*SPEECH_TINY, "--check_inputs"]) == 0
    assert capsys.readouterr().out == ""
    assert main(SPEECH_TINY) == 0
    n_steps = int(re.match(r"finished: step (\d+)/", (speech_recipe / "exp/cdsvae/progress").read_text()).group(1))
    capsys.readouterr()
    assert main([*SPEECH_TINY, "--check_inputs"]) == 0
    assert capsys.readouterr().out == f"finished: step {n_steps}, 2/2 epochs\n"
    assert main([*SPEECH_TINY, "--train.epochs", "3", "--check_inputs"]) == 0
    assert capsys.readouterr().out == ""
    assert main([*SPEECH_TINY, "--train.epochs", "5", "--train.max_steps", str(n_steps), "--check_inputs"]) == 0
    assert capsys.readouterr().out == f"finished: step {n_steps}, 2/5 epochs\n"  # max_steps reached


def test_check_inputs_of_several_experiments_in_one_process(speech_recipe, capsys):
    """--experiments: one line of training options per experiment, each checked as --check_inputs
    checks it, a result line each, in order; the first that fails stops the check with its own
    line (the recipe's stage 4 checks all its experiments this way before any starts)."""
    import shlex

    from cdsvae.bin.train import main

    assert main(SPEECH_TINY) == 0  # exp/cdsvae trained to the end
    n_steps = int(re.match(r"finished: step (\d+)/", (speech_recipe / "exp/cdsvae/progress").read_text()).group(1))
    fresh = [*SPEECH_TINY[:-1], "exp/new dir"]  # a path with a space, quoted on its line
    listing = speech_recipe / "experiments"
    listing.write_text(f"{shlex.join(SPEECH_TINY)}\n\n{shlex.join(fresh)} --train.seed 3\n")
    capsys.readouterr()
    assert main(["--check_inputs", "--experiments", str(listing)]) == 0
    assert capsys.readouterr().out == f"finished exp/cdsvae: step {n_steps}, 2/2 epochs\nchecked exp/new dir\n"
    # --nproc applies to each: 4 processes x batch 4, one segment per utterance, do not fit 8 utterances
    unique = ["--train.unique_utts_per_batch", "true"]
    listing.write_text(f"{shlex.join(fresh)}\n{shlex.join([*fresh[:-1], 'exp/b', *unique])}\n")
    line = _refused(["--check_inputs", "--nproc", "4", "--experiments", str(listing)], capsys)
    assert "fewer than one global batch of 16" in line
    # what came before the failure was printed (the recipe names the experiment that has no line)
    assert main(["--check_inputs", "--experiments", str(listing)]) == 0
    assert capsys.readouterr().out == "checked exp/new dir\nchecked exp/b\n"
    listing.write_text("--outdir 'exp/unclosed\n")
    line = _refused(["--check_inputs", "--experiments", str(listing)], capsys)
    assert line == f"train: error: {listing}: line 1: No closing quotation"
    with pytest.raises(SystemExit) as e:
        main(["--experiments", str(listing)])
    assert e.value.code == 2 and "--experiments needs --check_inputs" in capsys.readouterr().err
