"""Checkpoints of a run and resuming from them."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from _toy import TOY, final_params, new_trainer, run_toy, toy_config, toy_data, toy_env, toy_loss, toy_trainer
from cdsvae import checkpoint as ckpt


def test_rerun_of_finished_run_does_nothing(tmp_path):
    out = tmp_path / "exp"
    toy_trainer(out, epochs=1, max_steps=5).fit()
    before = final_params(out)
    (out / "progress").unlink()
    summary = toy_trainer(out, epochs=1, max_steps=5).fit()
    assert summary["step"] == 5
    assert "nothing to do" in (out / "train.log").read_text()
    assert (out / "progress").read_text() == "finished earlier: step 5/5, 0/1 epochs complete\n"
    assert all(torch.equal(before[k], v) for k, v in final_params(out).items())


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_sigkill_mid_epoch_then_rerun_gives_uninterrupted_parameters(tmp_path, amp):
    """Also under autocast (CPU bf16 and fp16): fp16's GradScaler state is checkpointed and restored."""
    args = ["--noisy", "--epochs", "3", "--ckpt_every_steps", "2", "--delay_s", "0.01", "--amp", amp]
    ref = run_toy(args, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, TOY, "--outdir", str(out), *args], env=toy_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = ckpt.step_path(out / "checkpoints", 10)  # epoch 2 is steps 9..16
    deadline = time.time() + 200
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # it was still running: killed mid-training
    newest = ckpt.list_step_checkpoints(out / "checkpoints")[-1][0]
    assert 10 <= newest < 16

    resumed = run_toy(args, out)
    assert resumed.returncode == 0, resumed.stderr
    log = (out / "train.log").read_text()
    assert f"resumed from {ckpt.step_path(out / 'checkpoints', newest)}: epoch 1, step {newest}" in log
    assert f"{(newest - 8) * 4} samples into the epoch" in log
    want, got = final_params(tmp_path / "ref"), final_params(out)
    for k in want:
        assert torch.equal(want[k], got[k]), k
    _, state = ckpt.load_latest(out / "checkpoints")
    if amp == "fp16":
        assert state["scaler"]["scale"] > 0 and "_growth_tracker" in state["scaler"]
    else:
        assert state["scaler"] == {}
    if amp != "none":  # autocast really changed the arithmetic: not the fp32 run's parameters
        fp32 = run_toy([a if a != amp else "none" for a in args], tmp_path / "fp32")
        assert fp32.returncode == 0, fp32.stderr
        assert not all(torch.equal(v, final_params(tmp_path / "fp32")[k]) for k, v in want.items())


def test_resuming_a_run_chosen_on_another_criterion_starts_the_choice_afresh(tmp_path):
    out = tmp_path / "exp"
    toy_trainer(out, epochs=1).fit()  # best.pt on the validation loss
    tr = new_trainer(out, toy_loss, toy_data(32), toy_data(8, split="valid"), toy_config(epochs=2),
                     criterion=("recon_only", ("recon",)))
    tr.fit()
    log = (out / "train.log").read_text()
    assert "chose its best checkpoint on validation loss, this run chooses on recon_only" in log
    best = ckpt.load_checkpoint(out / "checkpoints" / ckpt.BEST)
    assert best["criterion"] == "recon_only" and best["progress"]["epoch"] == 2
