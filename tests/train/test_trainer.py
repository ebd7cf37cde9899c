import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _toy import FEAT, ToyModel, toy_config, toy_loss
from cdsvae.data.synthetic import SyntheticSequenceDataset
from cdsvae.errors import UserError
from cdsvae.train import checkpoint as ckpt
from cdsvae.train.trainer import (
    ResumableDistributedSampler,
    Trainer,
    TrainingDiverged,
    format_duration,
    lr_factor,
    seed_everything,
)

TOY = str(Path(__file__).with_name("_toy.py"))
REPO = Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def _data(n=32, **kw):
    return SyntheticSequenceDataset(n, seq_len=4, frame_shape=(FEAT,), **kw)


def _trainer(outdir, loss=toy_loss, n=32, valid=True, **train):
    seed_everything(0)
    valid_set = _data(8, split="valid") if valid else None
    return Trainer(ToyModel(), loss, _data(n), valid_set, toy_config(**train), outdir)


def _final_params(outdir) -> dict:
    _, state = ckpt.load_latest(Path(outdir) / "checkpoints")
    return state["model"]


def test_lr_factor_known_values():
    assert lr_factor(0, "constant", 0, 100) == 1.0
    assert [lr_factor(s, "constant", 4, 100) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    # cosine from the end of warm-up (factor 1) to the last step (factor 0)
    assert lr_factor(2, "cosine", 2, 12) == 1.0
    assert lr_factor(7, "cosine", 2, 12) == pytest.approx(0.5)
    assert lr_factor(12, "cosine", 2, 12) == pytest.approx(0.0)
    assert lr_factor(4, "cosine", 0, 8) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_format_duration_known_values():
    assert [format_duration(s) for s in (0, 5, 59.4, 59.6, 65, 3599, 3600, 3725, 36000 + 59 * 60 + 59)] == \
        ["0s", "5s", "59s", "1m00s", "1m05s", "59m59s", "1h00m", "1h02m", "10h59m"]
    assert format_duration(-3) == "0s"


def test_progress_file_follows_training_and_says_finished(tmp_path, monkeypatch):
    import re

    lines = []
    write = Trainer._write_progress
    monkeypatch.setattr(Trainer, "_write_progress", lambda self, line: (lines.append(line), write(self, line))[1])
    out = tmp_path / "exp"
    _trainer(out, epochs=2, log_every=3).fit()  # 32 sequences, batch 4: 8 steps per epoch
    assert (out / "progress").read_text() == "finished: step 16/16, 2/2 epochs complete\n"
    during, last = lines[:-1], lines[-1]
    assert last == "finished: step 16/16, 2/2 epochs complete"
    # every 3 steps, and at the end of each epoch
    steps = [int(re.search(r"step (\d+)/16,", line).group(1)) for line in during]
    assert steps == [3, 6, 8, 9, 12, 15, 16]
    for line in during:
        assert re.fullmatch(r"epoch [12]/2, step \d+/16, loss \d[0-9.e+-]*, ETA \d+s", line), line
    assert [line.split(",")[0] for line in during] == ["epoch 1/2"] * 3 + ["epoch 2/2"] * 4
    assert during[-1].endswith("ETA 0s")


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sampler_resume_and_global_blocks_match_a_loop(world):
    data = list(range(24))
    batch = 2
    samplers = [ResumableDistributedSampler(data, world, r, seed=5) for r in range(world)]
    for s in samplers:
        s.set_position(epoch=3, samples_done=0)
    full = [list(s) for s in samplers]
    single = ResumableDistributedSampler(data, 1, 0, seed=5)
    single.set_epoch(3)
    order = list(single)
    # Step k of the distributed run covers the k-th block of world*batch indices of the one order.
    for k in range(len(full[0]) // batch):
        got = sorted(i for r in range(world) for i in full[r][k * batch:(k + 1) * batch])
        assert got == sorted(order[k * world * batch:(k + 1) * world * batch])
    # Resuming after `done` global samples continues each rank's list where it stopped.
    done = world * batch * 2
    for r, s in enumerate(samplers):
        s.set_position(epoch=3, samples_done=done)
        assert list(s) == full[r][done // world:]
        assert len(s) == len(full[r]) - done // world
    samplers[0].set_position(epoch=4, samples_done=0)
    assert list(samplers[0]) != full[0]  # a new epoch, a new permutation


def test_training_reduces_loss_writes_log_checkpoints_and_tensorboard(tmp_path):
    out = tmp_path / "exp"
    tr = _trainer(out, epochs=3, ckpt_every_steps=3, keep_last=2, tensorboard=True)
    first = tr.validate()["loss"]
    summary = tr.fit()
    assert summary["epoch"] == 3 and summary["step"] == 24
    assert summary["best_valid"] < 0.5 * first
    steps = [s for s, _ in ckpt.list_step_checkpoints(out / "checkpoints")]
    assert steps == [21, 24]  # keep_last 2
    best = ckpt.load_checkpoint(out / "checkpoints" / ckpt.BEST)
    assert best["criterion"] == "loss" and best["valid"]["loss"] == summary["best_valid"]
    log = (out / "train.log").read_text()
    assert "global batch 4" in log and "recon" in log and "seq_per_s" in log

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/recon", "train/l2", "train/lr", "train/seq_per_s", "train/grad_norm",
            "valid/loss", "valid/recon", "valid/l2"} <= tags
    assert [e.step for e in acc.Scalars("valid/loss")] == [8, 16, 24]


def test_rerun_of_finished_run_does_nothing(tmp_path):
    out = tmp_path / "exp"
    _trainer(out, epochs=1, max_steps=5).fit()
    before = _final_params(out)
    (out / "progress").unlink()
    summary = _trainer(out, epochs=1, max_steps=5).fit()
    assert summary["step"] == 5
    assert "nothing to do" in (out / "train.log").read_text()
    assert (out / "progress").read_text() == "finished earlier: step 5/5, 0/1 epochs complete\n"
    assert all(torch.equal(before[k], v) for k, v in _final_params(out).items())


def test_nonfinite_loss_stops_before_update_and_names_term(tmp_path):
    calls = {"n": 0}

    def loss(model, batch, gen):
        total, terms = toy_loss(model, batch, gen)
        calls["n"] += 1
        if calls["n"] == 3:
            terms = {**terms, "kl": torch.tensor(float("nan"))}
        else:
            terms = {**terms, "kl": torch.tensor(0.0)}
        return total + terms["kl"], terms

    out = tmp_path / "exp"
    tr = _trainer(out, loss=loss, valid=False, ckpt_every_steps=1)
    with pytest.raises(TrainingDiverged) as e:
        tr.fit()
    msg = str(e.value)
    assert "loss term 'kl' = nan at step 3 (epoch 1)" in msg
    assert "step000000002.pt" in msg and "\n" not in msg
    assert isinstance(e.value, UserError)  # the entry point exits 1 with this one line
    # The good checkpoint is intact and equals the parameters the failed step did not touch.
    saved = ckpt.load_checkpoint(ckpt.step_path(out / "checkpoints", 2))["model"]
    assert all(torch.equal(saved[k], v) for k, v in tr.model.state_dict().items())
    assert "non-finite" in (out / "train.log").read_text()


def test_nonfinite_weighted_total_is_named_when_terms_are_finite(tmp_path):
    def loss(model, batch, gen):
        total, terms = toy_loss(model, batch, gen)
        return total * float("inf"), terms

    with pytest.raises(TrainingDiverged, match=r"non-finite loss \(weighted sum of finite terms\) = inf at step 1"):
        _trainer(tmp_path, loss=loss, valid=False).fit()


def test_too_small_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="fewer than one batch"):
        _trainer(tmp_path, n=3, batch_size=4)


def _run(args, outdir, **kw):
    return subprocess.run([sys.executable, TOY, "--outdir", str(outdir), *args], env=_env(), capture_output=True,
                          text=True, timeout=240, **kw)


def test_sigkill_mid_epoch_then_rerun_gives_uninterrupted_parameters(tmp_path):
    args = ["--noisy", "--epochs", "3", "--ckpt_every_steps", "2", "--delay_s", "0.01"]
    ref = _run(args, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, TOY, "--outdir", str(out), *args], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = ckpt.step_path(out / "checkpoints", 10)  # epoch 2 is steps 9..16
    deadline = time.time() + 200
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # it was still running: killed mid-training
    newest = ckpt.list_step_checkpoints(out / "checkpoints")[-1][0]
    assert 10 <= newest < 16

    resumed = _run(args, out)
    assert resumed.returncode == 0, resumed.stderr
    log = (out / "train.log").read_text()
    assert f"resumed from {ckpt.step_path(out / 'checkpoints', newest)}: epoch 1, step {newest}" in log
    assert f"{(newest - 8) * 4} samples into the epoch" in log
    want, got = _final_params(tmp_path / "ref"), _final_params(out)
    for k in want:
        assert torch.equal(want[k], got[k]), k


def test_two_process_gloo_ddp_matches_one_process_with_the_global_batch(tmp_path):
    """Per-sequence loss terms averaged over the batch, no batch statistics: the mean of the two
    processes' gradients (DDP) is the gradient of the whole global batch, so the runs agree up to
    float summation order."""
    # A constant schedule: a cosine one would depend on the number of epochs of each invocation.
    single = _run(["--batch_size", "8", "--num_train", "32", "--schedule", "constant"], tmp_path / "one")
    assert single.returncode == 0, single.stderr
    # The distributed run stops after epoch 1 and is resumed for epoch 2 (both ranks load rank 0's choice).
    for epochs in ("1", "2"):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", TOY,
               "--outdir", str(tmp_path / "two"), "--batch_size", "4", "--num_train", "32", "--epochs", epochs,
               "--schedule", "constant"]
        ddp = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
        assert ddp.returncode == 0, ddp.stderr[-3000:]
    log = (tmp_path / "two" / "train.log").read_text()
    assert "2 process(es) (gloo), batch 4 per process, global batch 8" in log
    assert "step000000004.pt: epoch 1, step 4, 0 samples into the epoch" in log
    one, two = _final_params(tmp_path / "one"), _final_params(tmp_path / "two")
    for k in one:
        assert torch.allclose(one[k], two[k], rtol=1e-5, atol=1e-6), (k, (one[k] - two[k]).abs().max())
    init = ToyModel()
    assert not torch.allclose(one["enc.weight"], init.enc.weight)
    # The validation loss is reduced over both processes' shards: it equals the single-process one.
    vals = [[ln for ln in (tmp_path / d / "train.log").read_text().splitlines() if "validation" in ln][-1]
            for d in ("one", "two")]
    v1, v2 = (float(v.split("loss ")[1].split()[0]) for v in vals)
    assert v1 == pytest.approx(v2, rel=1e-4)


def test_loader_workers_do_not_change_the_result(tmp_path):
    """Items are a function of (index, epoch), so the number of loader processes is irrelevant."""
    results = []
    for workers in (0, 2):
        tr = _trainer(tmp_path / str(workers), loss=lambda m, b, g: toy_loss(m, b, g, noisy=True), epochs=1,
                      num_workers=workers)
        tr.fit()
        results.append(tr.model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_validation_order_is_shuffled_and_the_same_for_every_seed(tmp_path):
    """Validation batches mix items (not consecutive segments of one utterance) and do not depend
    on train.seed, so every system and seed is validated and selected on the same batches."""
    a = _trainer(tmp_path / "a", seed=1)
    b = _trainer(tmp_path / "b", seed=7)
    order = a._valid_order()
    assert sorted(order.tolist()) == list(range(8)) and order.tolist() != list(range(8))
    assert order.tolist() == b._valid_order().tolist()
    assert a.validate() == pytest.approx(a.validate())  # deterministic between calls


def _recon_only(model, batch, generator):
    """A loss whose total is ranked differently from its 'recon' term: it rewards large weights."""
    x = batch["x"]
    recon = (model(x) - x).pow(2).sum(dim=(1, 2)).mean()
    bonus = -1e-2 * sum(p.pow(2).sum() for p in model.parameters())
    return recon + bonus, {"recon": recon.detach(), "bonus": bonus.detach()}


def test_best_checkpoint_follows_the_criterion_not_the_loss(tmp_path):
    seed_everything(0)
    tr = Trainer(ToyModel(), _recon_only, _data(32), _data(8, split="valid"), toy_config(epochs=4),
                 tmp_path / "exp", criterion=("crit", ("recon",)))
    summary = tr.fit()
    best = ckpt.load_checkpoint(tmp_path / "exp" / "checkpoints" / ckpt.BEST)
    assert best["criterion"] == "crit" and best["valid"]["crit"] == best["valid"]["recon"]
    log = (tmp_path / "exp" / "train.log").read_text()
    crits = [float(ln.split(" crit ")[1].split()[0]) for ln in log.splitlines() if "validation at step" in ln]
    assert summary["best_valid"] == pytest.approx(min(crits), rel=1e-3)
    assert "best validation crit" in log


def test_missing_criterion_term_is_a_clear_error(tmp_path):
    seed_everything(0)
    tr = Trainer(ToyModel(), toy_loss, _data(32), _data(8, split="valid"), toy_config(epochs=1),
                 tmp_path / "exp", criterion=("neg_elbo", ("recon", "kl_s")))
    with pytest.raises(UserError, match="criterion neg_elbo needs the validation term.*kl_s"):
        tr.fit()


def test_eval_train_ratio_is_logged_and_warned_about(tmp_path, caplog):
    seen = []

    def consistency(model, batch):
        seen.append(batch["x"].clone())
        return torch.tensor(3.0), torch.tensor(2.0)

    valid = _data(8, split="valid")
    seed_everything(0)
    tr = Trainer(ToyModel(), toy_loss, _data(32), valid, toy_config(epochs=2, batch_size=4),
                 tmp_path / "exp", consistency_fn=consistency)
    tr.fit()
    # per epoch one fixed validation batch, then one fixed training batch; the same every epoch
    assert len(seen) == 4 and all(x.shape[0] == 4 for x in seen)
    assert torch.equal(seen[0], seen[2]) and torch.equal(seen[1], seen[3]) and not torch.equal(seen[0], seen[1])
    assert any(torch.equal(seen[0][0], valid[i]["x"]) for i in range(len(valid)))
    best = ckpt.load_checkpoint(tmp_path / "exp" / "checkpoints" / ckpt.BEST)
    assert best["valid"]["eval_train_ratio"] == pytest.approx(1.5)
    assert best["valid"]["eval_train_ratio_train"] == pytest.approx(1.5)
    log = (tmp_path / "exp" / "train.log").read_text()
    assert log.count(": 1.500 on a fixed validation batch (reconstruction in eval mode 3, in train mode 2); "
                     "1.500 on a fixed training batch") == 2
    assert ("WARNING eval mode reconstructs a fixed validation batch 1.50 times and training batch 1.50 times "
            "worse than train mode") in log
    # without a validation set the check runs on the training batch only, and still reaches the checkpoint
    seed_everything(0)
    tr = Trainer(ToyModel(), toy_loss, _data(32), None, toy_config(epochs=1, batch_size=4), tmp_path / "novalid",
                 consistency_fn=consistency)
    tr.fit()
    _, state = ckpt.load_latest(tmp_path / "novalid" / "checkpoints")
    assert state["valid"]["eval_train_ratio"] == pytest.approx(1.5) and state["best_valid"] is None
    assert "eval_train_ratio_train" not in state["valid"]
    assert "a fixed training batch 1.50 times worse" in (tmp_path / "novalid" / "train.log").read_text()


def test_the_eval_train_check_does_not_change_training(tmp_path):
    seed_everything(0)
    plain = Trainer(ToyModel(), lambda m, b, g: toy_loss(m, b, g, noisy=True), _data(32), _data(8, split="valid"),
                    toy_config(epochs=2), tmp_path / "a")
    plain.fit()
    seed_everything(0)
    checked = Trainer(ToyModel(), lambda m, b, g: toy_loss(m, b, g, noisy=True), _data(32), _data(8, split="valid"),
                      toy_config(epochs=2), tmp_path / "b",
                      consistency_fn=lambda m, b: (torch.rand(()) + 1, torch.tensor(1.0)))
    checked.fit()
    for k, v in _final_params(tmp_path / "a").items():
        assert torch.equal(v, _final_params(tmp_path / "b")[k]), k


def test_resuming_a_run_chosen_on_another_criterion_starts_the_choice_afresh(tmp_path):
    out = tmp_path / "exp"
    _trainer(out, epochs=1).fit()  # best.pt on the validation loss
    seed_everything(0)
    tr = Trainer(ToyModel(), toy_loss, _data(32), _data(8, split="valid"), toy_config(epochs=2), out,
                 criterion=("recon_only", ("recon",)))
    tr.fit()
    log = (out / "train.log").read_text()
    assert "chose its best checkpoint on validation loss, this run chooses on recon_only" in log
    best = ckpt.load_checkpoint(out / "checkpoints" / ckpt.BEST)
    assert best["criterion"] == "recon_only" and best["progress"]["epoch"] == 2
