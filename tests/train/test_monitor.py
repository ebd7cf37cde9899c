"""cdsvae.train.monitor: validation order, the selection criterion and the eval/train consistency check;
reports of a run (durations, DIR/progress)."""

import re

import pytest
import torch

from _toy import final_params, new_trainer, toy_config, toy_data, toy_loss, toy_trainer
from cdsvae import checkpoint as ckpt
from cdsvae.io import UserError
from cdsvae.train.monitor import Monitor, format_duration


def _recon_only(model, batch, generator):
    """A loss whose total is ranked differently from its 'recon' term: it rewards large weights."""
    x = batch["x"]
    recon = (model(x) - x).pow(2).sum(dim=(1, 2)).mean()
    bonus = -1e-2 * sum(p.pow(2).sum() for p in model.parameters())
    return recon + bonus, {"recon": recon.detach(), "bonus": bonus.detach()}


def test_validation_order_is_shuffled_and_the_same_for_every_seed(tmp_path):
    """Validation batches mix items (not consecutive segments of one utterance) and do not depend
    on train.seed, so every system and seed is validated and selected on the same batches."""
    a = toy_trainer(tmp_path / "a", seed=1)
    b = toy_trainer(tmp_path / "b", seed=7)
    order = a.validation.valid_order()
    assert sorted(order.tolist()) == list(range(8)) and order.tolist() != list(range(8))
    assert order.tolist() == b.validation.valid_order().tolist()
    assert a.validate() == pytest.approx(a.validate())  # deterministic between calls


def test_best_checkpoint_follows_the_criterion_not_the_loss(tmp_path):
    tr = new_trainer(tmp_path / "exp", _recon_only, toy_data(32), toy_data(8, split="valid"), toy_config(epochs=4),
                     criterion=("crit", ("recon",)))
    summary = tr.fit()
    best = ckpt.load_checkpoint(tmp_path / "exp" / "checkpoints" / ckpt.BEST)
    assert best["criterion"] == "crit" and best["valid"]["crit"] == best["valid"]["recon"]
    log = (tmp_path / "exp" / "train.log").read_text()
    crits = [float(ln.split(" crit ")[1].split()[0]) for ln in log.splitlines() if "validation at step" in ln]
    assert summary["best_valid"] == pytest.approx(min(crits), rel=1e-3)
    assert "best validation crit" in log


def test_missing_criterion_term_is_a_clear_error(tmp_path):
    tr = new_trainer(tmp_path / "exp", toy_loss, toy_data(32), toy_data(8, split="valid"), toy_config(epochs=1),
                     criterion=("neg_elbo", ("recon", "kl_s")))
    with pytest.raises(UserError, match="criterion neg_elbo needs the validation term.*kl_s"):
        tr.fit()


def test_eval_train_ratio_is_logged_and_warned_about(tmp_path, caplog):
    seen = []

    def consistency(model, batch):
        seen.append(batch["x"].clone())
        return torch.tensor(3.0), torch.tensor(2.0)

    valid = toy_data(8, split="valid")
    tr = new_trainer(tmp_path / "exp", toy_loss, toy_data(32), valid, toy_config(epochs=2, batch_size=4),
                     consistency_fn=consistency)
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
    tr = new_trainer(tmp_path / "novalid", toy_loss, toy_data(32), None, toy_config(epochs=1, batch_size=4),
                     consistency_fn=consistency)
    tr.fit()
    _, state = ckpt.load_latest(tmp_path / "novalid" / "checkpoints")
    assert state["valid"]["eval_train_ratio"] == pytest.approx(1.5) and state["best_valid"] is None
    assert "eval_train_ratio_train" not in state["valid"]
    assert "a fixed training batch 1.50 times worse" in (tmp_path / "novalid" / "train.log").read_text()


def test_the_eval_train_check_does_not_change_training(tmp_path):
    noisy = lambda m, b, g: toy_loss(m, b, g, noisy=True)  # noqa: E731
    plain = new_trainer(tmp_path / "a", noisy, toy_data(32), toy_data(8, split="valid"), toy_config(epochs=2))
    plain.fit()
    checked = new_trainer(tmp_path / "b", noisy, toy_data(32), toy_data(8, split="valid"), toy_config(epochs=2),
                          consistency_fn=lambda m, b: (torch.rand(()) + 1, torch.tensor(1.0)))
    checked.fit()
    for k, v in final_params(tmp_path / "a").items():
        assert torch.equal(v, final_params(tmp_path / "b")[k]), k


def test_format_duration_known_values():
    assert [format_duration(s) for s in (0, 5, 59.4, 59.6, 65, 3599, 3600, 3725, 36000 + 59 * 60 + 59)] == \
        ["0s", "5s", "59s", "1m00s", "1m05s", "59m59s", "1h00m", "1h02m", "10h59m"]
    assert format_duration(-3) == "0s"


def test_progress_file_follows_training_and_says_finished(tmp_path, monkeypatch):
    lines = []
    write = Monitor.write_progress
    monkeypatch.setattr(Monitor, "write_progress", lambda self, line: (lines.append(line), write(self, line))[1])
    out = tmp_path / "exp"
    toy_trainer(out, epochs=2, log_every=3).fit()  # 32 sequences, batch 4: 8 steps per epoch
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
