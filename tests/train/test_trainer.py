import subprocess
import sys

import pytest
import torch

from _toy import TOY, ToyModel, final_params, run_toy, toy_config, toy_env, toy_loss, toy_trainer
from cdsvae import checkpoint as ckpt
from cdsvae.experiment.schema import config_schema
from cdsvae.io import UserError
from cdsvae.train.optim import OPTIM
from cdsvae.train.optim import TRAIN, config_sections
from cdsvae.train.trainer import TrainingDiverged


def test_the_trainer_declares_its_sections_once_and_fills_left_out_keys_from_them(tmp_path):
    assert config_sections() == {"optim": OPTIM, "train": TRAIN}
    schema = config_schema()
    assert schema["optim"] is OPTIM and schema["train"] is TRAIN  # the experiment takes them as they are
    tr = toy_trainer(tmp_path, batch_size=2)  # toy_config leaves out find_unused_parameters and more
    assert tr.topt == {**TRAIN.defaults(), **toy_config(batch_size=2)["train"]}
    assert tr.oopt == toy_config()["optim"] and set(tr.oopt) == set(OPTIM.fields)
    assert set(tr.topt) == set(TRAIN.fields)


def test_training_reduces_loss_writes_log_checkpoints_and_tensorboard(tmp_path):
    out = tmp_path / "exp"
    tr = toy_trainer(out, epochs=3, ckpt_every_steps=3, keep_last=2, tensorboard=True)
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


def _nan_kl_at_call(n):
    calls = {"n": 0}

    def loss(model, batch, gen):
        total, terms = toy_loss(model, batch, gen)
        calls["n"] += 1
        kl = torch.tensor(float("nan") if calls["n"] == n else 0.0)
        return total + kl, {**terms, "kl": kl}
    return loss


def test_nonfinite_loss_is_caught_before_the_next_checkpoint_and_names_term_and_step(tmp_path):
    out = tmp_path / "exp"
    tr = toy_trainer(out, loss=_nan_kl_at_call(3), valid=False, ckpt_every_steps=1)  # log_every 2
    with pytest.raises(TrainingDiverged) as e:
        tr.fit()
    msg = str(e.value)
    assert "loss term 'kl' = nan at step 3 (epoch 1); training stopped" in msg and "read at" not in msg
    assert "step000000002.pt" in msg and "\n" not in msg
    assert isinstance(e.value, UserError)  # the entry point exits 1 with this one line
    # The diverged step is never saved: the last checkpoint is step 2's, finite and loadable.
    assert [s for s, _ in ckpt.list_step_checkpoints(out / "checkpoints")] == [1, 2]
    saved = ckpt.load_checkpoint(ckpt.step_path(out / "checkpoints", 2))["model"]
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert "non-finite" in (out / "train.log").read_text()


def test_nonfinite_loss_read_later_still_names_the_step_it_happened_at(tmp_path):
    """Steps are read every log_every steps: the divergence at step 3 is found at step 5, when every
    term has gone NaN with the parameters, and reported as what it was at step 3."""
    out = tmp_path / "exp"
    with pytest.raises(TrainingDiverged, match=r"loss term 'kl' = nan at step 3 \(epoch 1\), read at step 5; "
                                               r"training stopped .*last good checkpoint: none written yet"):
        toy_trainer(out, loss=_nan_kl_at_call(3), valid=False, log_every=5).fit()
    assert ckpt.list_step_checkpoints(out / "checkpoints") == []


def test_nonfinite_gradient_with_a_finite_loss_is_named(tmp_path):
    def loss(model, batch, gen):
        total, terms = toy_loss(model, batch, gen)
        p = next(model.parameters())
        return total + (p - p).sum().sqrt(), terms  # value 0, gradient 0 * inf = nan

    with pytest.raises(TrainingDiverged, match=r"non-finite gradient norm = nan at step 1 \(epoch 1\), read at step 2"):
        toy_trainer(tmp_path, loss=loss, valid=False).fit()


def test_nonfinite_weighted_total_is_named_when_terms_are_finite(tmp_path):
    def loss(model, batch, gen):
        total, terms = toy_loss(model, batch, gen)
        return total * float("inf"), terms

    with pytest.raises(TrainingDiverged, match=r"non-finite loss \(weighted sum of finite terms\) = inf at step 1"):
        toy_trainer(tmp_path, loss=loss, valid=False).fit()


def test_too_small_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"has 3 sequences, fewer than one global batch of 4 .*: use "
                                        r"train.batch_size 3 or less$"):
        toy_trainer(tmp_path, n=3, batch_size=4)


def test_two_process_gloo_ddp_matches_one_process_with_the_global_batch(tmp_path):
    """Per-sequence loss terms averaged over the batch, no batch statistics: the mean of the two
    processes' gradients (DDP) is the gradient of the whole global batch, so the runs agree up to
    float summation order."""
    # A constant schedule: a cosine one would depend on the number of epochs of each invocation.
    single = run_toy(["--batch_size", "8", "--num_train", "32", "--schedule", "constant"], tmp_path / "one")
    assert single.returncode == 0, single.stderr
    # The distributed run stops after epoch 1 and is resumed for epoch 2 (both ranks load rank 0's choice).
    for epochs in ("1", "2"):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", TOY,
               "--outdir", str(tmp_path / "two"), "--batch_size", "4", "--num_train", "32", "--epochs", epochs,
               "--schedule", "constant"]
        ddp = subprocess.run(cmd, env=toy_env(), capture_output=True, text=True, timeout=240)
        assert ddp.returncode == 0, ddp.stderr[-3000:]
    log = (tmp_path / "two" / "train.log").read_text()
    assert "2 process(es) (gloo), batch 4 per process, global batch 8" in log
    assert "step000000004.pt: epoch 1, step 4, 0 samples into the epoch" in log
    one, two = final_params(tmp_path / "one"), final_params(tmp_path / "two")
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
        tr = toy_trainer(tmp_path / str(workers), loss=lambda m, b, g: toy_loss(m, b, g, noisy=True), epochs=1,
                      num_workers=workers)
        tr.fit()
        results.append(tr.model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_fp16_overflows_skip_steps_and_lower_the_scale_without_stopping_training(tmp_path):
    def loss(model, batch, gen):  # large enough that float16 gradients overflow at the first scales
        total, terms = toy_loss(model, batch, gen)
        return total * 3e3, terms

    tr = toy_trainer(tmp_path, loss=loss, amp="fp16", valid=False, epochs=1, log_every=2)
    assert tr.fit()["step"] == 8
    logged = tr.history
    assert [h["amp_skipped_steps"] for h in logged] == [2, 2, 2, 2]  # every step so far overflowed ...
    assert [h["amp_scale"] for h in logged] == [2.0 ** 14, 2.0 ** 12, 2.0 ** 10, 2.0 ** 8]  # ... halving the scale
    assert all("grad_norm" not in h for h in logged)  # no step was taken, so no gradient norm is reported
    assert all(torch.isfinite(v).all() for v in tr.model.state_dict().values())


def test_stepstats_sums_a_window_on_the_device_like_a_plain_loop():
    from cdsvae.train.distributed import DistContext
    from cdsvae.train.steploop import StepStats

    g = torch.Generator().manual_seed(0)
    rows = [torch.randn(3, generator=g) for _ in range(5)]
    norms = [torch.rand(1, generator=g) for _ in range(5)]
    norms[1] = torch.tensor([float("inf")])
    for scaled in (False, True):
        stats = StepStats(["a", "b"], scaled, torch.device("cpu"), start=10)
        for r, n in zip(rows, norms):
            stats.add(r, n)
        found = stats.divergence(DistContext())
        values = stats.take(DistContext())
        assert values["loss"] == pytest.approx(sum(float(r[0]) for r in rows) / 5)
        assert values["b"] == pytest.approx(sum(float(r[2]) for r in rows) / 5)
        if scaled:  # the overflow skipped step 12: counted, left out of the norm, not a divergence
            assert found is None and values["amp_skipped_steps"] == 1
            assert values["grad_norm"] == pytest.approx(sum(float(n) for i, n in enumerate(norms) if i != 1) / 4)
        else:
            assert found.step == 12 and found.bad == {"grad_norm": float("inf")}
            assert found.describe() == "gradient norm = inf"
        assert stats.start == 15 and stats.count == 0 and float(stats.sums.abs().sum()) == 0.0


def test_a_divergence_on_one_process_stops_every_process_naming_the_step(tmp_path):
    """Rank 1 alone gets a NaN term at step 3; read at step 4 (log_every 2), both ranks stop there."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", TOY,
           "--outdir", str(tmp_path), "--nan_step", "3", "--nan_rank", "1"]
    ddp = subprocess.run(cmd, env=toy_env(), capture_output=True, text=True, timeout=240)
    assert ddp.returncode != 0
    want = "non-finite loss term 'kl' = nan at step 3 (epoch 1), read at step 4; training stopped"
    assert ddp.stderr.count(want) == 2, ddp.stderr[-3000:]  # each rank's entry point, the same verdict
    assert want in (tmp_path / "train.log").read_text()
    assert ckpt.list_step_checkpoints(tmp_path / "checkpoints") == []
