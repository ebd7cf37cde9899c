import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TINY = ["--model.frame", "mlp", "--model.feat_dim", "12", "--model.s_dim", "8", "--model.z_dim", "4",
        "--model.hidden_dim", "16", "--model.g_dim", "8", "--model.frame_hidden", "16",
        "--data.type", "synthetic", "--data.frame_shape", "[12]", "--data.num_train", "16", "--data.num_valid", "8",
        "--data.with_motion", "true", "--train.batch_size", "8", "--train.tensorboard", "false"]


def _train(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "cdsvae.bin.train", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=240)


def test_help():
    r = _train("--help")
    assert r.returncode == 0
    assert "--outdir" in r.stdout and "--SECTION.KEY VALUE" in r.stdout and "synthetic" in r.stdout


def test_config_errors_are_one_line_without_traceback(tmp_path):
    conf = tmp_path / "train.yaml"
    conf.write_text("data:\n  type: synthetic\noptim:\n  learning_rate: 0.1\n")
    r = _train("--config", str(conf), "--outdir", str(tmp_path / "exp"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{conf}: unknown key 'optim.learning_rate'; valid keys in 'optim': betas, eps, grad_clip, lr," in lines[0]

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
