"""The step loop shared by the trainer and the judges: a step is backward, clip and step (known
answers, bit-identical to the plain calls without clipping), epochs are weighted means, a non-finite
loss or gradient stops training before the step, naming it, TensorBoard gets the scalars, and a
killed video judge training resumes to the weights of an uninterrupted one."""

import math

import numpy as np
import pytest
import torch

from cdsvae.io import UserError
from cdsvae.train.steploop import EpochRun, StepLoop, TrainingDiverged, seeded_epoch
from cdsvae.train.trainer import TrainingDiverged as TrainerDiverged


def test_step_clips_to_the_norm_and_reports_the_norm_before():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    steps = StepLoop([w], torch.optim.SGD([w], lr=0.5), grad_clip=1.0)
    gnorm = steps.step((w * torch.tensor([3.0, 4.0])).sum())  # gradient (3, 4): norm 5, clipped to (0.6, 0.8)
    assert gnorm.shape == (1,) and float(gnorm) == pytest.approx(5.0)
    torch.testing.assert_close(w.detach(), torch.tensor([3.0 - 0.3, 4.0 - 0.4]))
    assert w.grad is None  # zeroed (set to None) after the step


def test_without_clipping_a_step_is_the_plain_step_bit_for_bit():
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = torch.optim.Adam(a.parameters(), lr=0.1), torch.optim.Adam(b.parameters(), lr=0.1)
    steps = StepLoop(b.parameters(), opt_b, grad_clip=0)
    for k in range(3):
        x = torch.randn(4, 5)
        loss = a(x).pow(2).sum()
        opt_a.zero_grad()
        loss.backward()
        opt_a.step()
        steps.step(b(x).pow(2).sum())
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_the_trainer_raises_the_same_divergence_error():
    assert TrainerDiverged is TrainingDiverged


def toy(tmp_path=None, **kw):
    w = torch.nn.Parameter(torch.tensor([1.0]))
    run = EpochRun(StepLoop([w], torch.optim.SGD([w], lr=0.1)), "toy", 3, 0, 2, logdir=tmp_path, **kw)
    return w, run


def test_epoch_figures_are_means_weighted_by_the_batches():
    w, run = toy()
    batches = [(torch.tensor([2.0]), 1, 1), (torch.tensor([5.0]), 3, 2)]
    out = run.run_epoch(0, batches, lambda b: ((w * b[0]).sum(), b[1], {"hits": b[2]}))
    run.close()
    # losses 1*2 = 2 (weight 1), then w = 1 - 0.1*2 = 0.8: 0.8*5 = 4 (weight 3)
    assert out["loss"] == pytest.approx((2.0 * 1 + 4.0 * 3) / 4) and out["hits"] == pytest.approx(3 / 4)


def test_a_non_finite_loss_stops_before_the_optimiser_step():
    w, run = toy()
    batches = [torch.tensor([1.0]), torch.tensor([math.nan]), torch.tensor([1.0])]
    run.run_epoch(0, batches[:1], lambda x: ((w * x).sum(), 1, {}))  # one good step: w = 0.9
    with pytest.raises(TrainingDiverged, match=r"^toy: non-finite loss = nan at step 3 \(epoch 2\); training "
                                               r"stopped without saving the steps since, last good checkpoint: none$"):
        run.run_epoch(1, batches, lambda x: ((w * x).sum(), 1, {}))
    assert w.item() == pytest.approx(0.8)  # the steps of batch 1 of both epochs, not the nan one


def test_a_non_finite_gradient_norm_stops_naming_it(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"x")
    w = torch.nn.Parameter(torch.tensor([1.0]))
    run = EpochRun(StepLoop([w], torch.optim.SGD([w], lr=0.1)), "toy", 1, 0, 1, checkpoint=ckpt)
    with pytest.raises(TrainingDiverged, match=rf"non-finite gradient norm = inf at step 1 \(epoch 1\).*: {ckpt}$"):
        # value 0, gradient d sqrt(u)/du at u = 0: infinite
        run.run_epoch(0, [None], lambda _: (torch.sqrt(w - w.detach()).sum(), 1, {}))


def test_tensorboard_gets_the_step_and_epoch_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    w, run = toy(tmp_path)
    for epoch in range(2):
        out = run.run_epoch(epoch, [torch.tensor([1.0])] * 2, lambda x: ((w * x).sum(), 1, {}))
        run.end_epoch({"epoch": epoch + 1, "loss": out["loss"]})
    run.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([1.0, 0.9, 0.8, 0.7])
    assert [e.step for e in events.Scalars("epoch/loss")] == [2, 4]
    assert {"train/grad_norm", "epoch/epoch"} <= set(events.Tags()["scalars"])


def test_seeded_epoch_is_a_function_of_seed_and_epoch_and_restores_the_caller():
    torch.manual_seed(7)
    with seeded_epoch(1, 3, "cpu"):
        a = torch.rand(3)
    after = torch.rand(1)
    torch.manual_seed(7)
    assert torch.equal(after, torch.rand(1))  # the caller's stream went on as if nothing happened
    with seeded_epoch(1, 3, "cpu"):
        assert torch.equal(a, torch.rand(3))
    with seeded_epoch(1, 4, "cpu"):
        assert not torch.equal(a, torch.rand(3))


def test_the_judges_stop_on_a_diverging_loss(tmp_path):
    """An infinite learning rate makes the weights non-finite after the first step: the second loss is nan."""
    from cdsvae.data.video import Factor
    from cdsvae.eval.judges.ctc import CTCConfig, train_ctc
    from cdsvae.eval.judges.video import JudgeClassifier, train_judge

    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(12, 4)).astype(np.float32) for _ in range(6)]
    with pytest.raises(UserError, match="'ctc.lr' must be a number >= 0, got inf"):
        CTCConfig(lr=math.inf)  # a config cannot ask for it: set on the object to make training diverge
    cfg = CTCConfig(hidden=4, layers=1, proj=4, epochs=2, batch_size=2)
    cfg.lr = math.inf
    with pytest.raises(TrainingDiverged, match=r"^ctc: non-finite loss = nan at step 2 \(epoch 1\)"):
        train_ctc(xs, [[1, 2]] * 6, 2, cfg, workdir=tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()

    judge = JudgeClassifier([Factor("colour", 2, "static")], channels=(4,), g_dim=4, hidden_dim=4)
    data = [{"x": torch.rand(3, 3, 8, 8), "labels": {"colour": torch.tensor(k % 2)}} for k in range(4)]
    with pytest.raises(TrainingDiverged, match=r"^judge: non-finite loss = nan at step 2 "):
        train_judge(judge, data, epochs=1, batch_size=2, lr=math.inf)


def test_a_killed_video_judge_training_resumes_to_the_uninterrupted_weights(tmp_path):
    from cdsvae.data.video import Factor
    from cdsvae.eval.judges.video import JudgeClassifier, train_judge

    def load_checkpoint(path):
        return torch.load(path, weights_only=True)

    g = torch.Generator().manual_seed(0)
    data = [{"x": torch.rand(3, 3, 8, 8, generator=g), "labels": {"colour": torch.tensor(k % 2)}} for k in range(10)]

    def fit(epochs, workdir=None, stamp=None):
        torch.manual_seed(0)
        judge = JudgeClassifier([Factor("colour", 2, "static")], channels=(4,), g_dim=4, hidden_dim=4)
        hist = train_judge(judge, data, epochs=epochs, batch_size=3, lr=1e-2, workdir=workdir, stamp=stamp)
        return judge.state_dict(), hist

    whole, hist = fit(3)
    fit(1, tmp_path, {"data": "a"})  # killed after its first epoch
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    resumed, resumed_hist = fit(3, tmp_path, {"data": "a"})
    assert resumed_hist == hist and all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert list((tmp_path / "tensorboard").iterdir())
    # another stamp, or fewer epochs than the checkpoint holds: trained afresh (same weights from scratch)
    for epochs, stamp in ((3, {"data": "b"}), (2, {"data": "b"})):
        again, again_hist = fit(epochs, tmp_path, stamp)
        assert again_hist == hist[:epochs] and load_checkpoint(tmp_path / "checkpoint.pt")["stamp"]["stamp"] == stamp
    assert all(torch.equal(fit(2)[0][k], again[k]) for k in again)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=f"^{tmp_path / 'checkpoint.pt'}: unreadable checkpoint .*remove it"):
        fit(3, tmp_path, {"data": "b"})
