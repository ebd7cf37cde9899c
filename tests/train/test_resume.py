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


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The uninterrupted run of the given script arguments, made once per module: {args: outdir}."""
    runs = {}

    def run(args):
        if tuple(args) not in runs:
            outdir = tmp_path_factory.mktemp("uninterrupted") / "exp"
            ref = run_toy(args, outdir)
            assert ref.returncode == 0, ref.stderr
            runs[tuple(args)] = outdir
        return runs[tuple(args)]

    return run


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_sigkill_mid_epoch_then_rerun_gives_uninterrupted_parameters(tmp_path, amp, uninterrupted):
    """Also under autocast (CPU bf16 and fp16): fp16's GradScaler state is checkpointed and restored.
    The fp32 run is the reference of amp none and the contrast of the autocast runs: made once."""
    args = ["--noisy", "--epochs", "3", "--ckpt_every_steps", "2", "--delay_s", "0.01", "--amp", amp]
    ref = uninterrupted(args)

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
    want, got = final_params(ref), final_params(out)
    for k in want:
        assert torch.equal(want[k], got[k]), k
    _, state = ckpt.load_latest(out / "checkpoints")
    if amp == "fp16":
        assert state["scaler"]["scale"] > 0 and "_growth_tracker" in state["scaler"]
    else:
        assert state["scaler"] == {}
    if amp != "none":  # autocast really changed the arithmetic: not the fp32 run's parameters
        fp32 = final_params(uninterrupted([a if a != amp else "none" for a in args]))
        assert not all(torch.equal(v, fp32[k]) for k, v in want.items())


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
