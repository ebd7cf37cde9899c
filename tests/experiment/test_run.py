"""Training an experiment: the real (tiny) SequentialVAE and objective, trained, resumed and refused."""


import pytest
import torch
import yaml

from _tiny import tiny_config as _cfg
from cdsvae import checkpoint as ckpt
from cdsvae.experiment.load import load_model
from cdsvae.experiment.run import train
from cdsvae.experiment.schema import check_config, load_train_config
from cdsvae.io import UserError


def test_real_model_trains_on_synthetic_data_and_load_model_returns_best(tmp_path):
    out = tmp_path / "exp"
    summary = train(check_config(_cfg()), out)
    assert summary["step"] == 12 and summary["epoch"] == 3

    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written == check_config(_cfg())  # the resolved config: later stages need only DIR
    assert written["loss"]["con_s"] == 10.0 and written["optim"]["lr"] == 1e-3

    log = (out / "train.log").read_text()
    for term in ("recon", "kl_s", "kl_z", "con_s", "con_z", "mi_sz"):
        assert f" {term} " in log
    valid = [float(ln.split(" loss ")[1].split()[0]) for ln in log.splitlines() if "validation at step" in ln]
    assert len(valid) == 3 and valid[-1] < valid[0]

    model, cfg = load_model(out)
    assert not model.training and cfg == written
    best = ckpt.load_checkpoint(out / "checkpoints" / ckpt.BEST)
    # best.pt is chosen on the negative ELBO (recon + KL), not on the C-DSVAE loss
    assert best["criterion"] == "neg_elbo" and best["valid"]["neg_elbo"] == summary["best_valid"]
    v = best["valid"]
    assert v["neg_elbo"] == pytest.approx(v["recon"] + v["kl_s"] + v["kl_z"]) and v["loss"] > v["neg_elbo"]
    assert 0.5 < v["eval_train_ratio"] < 1.25 and "eval/train ratio" in log
    for k, v in model.state_dict().items():
        assert torch.equal(v, best["model"][k]), k
    x = torch.rand(2, 6, 12)
    assert model(x).recon.shape == x.shape


def test_rerun_with_another_model_config_is_refused_but_more_epochs_continue(tmp_path, caplog):
    out = tmp_path / "exp"
    train(check_config(_cfg(train__epochs=1)), out)
    with pytest.raises(UserError, match=r"holds a run with another config \(model.z_dim: 4 -> 5\)"):
        train(check_config(_cfg(train__epochs=1, model__z_dim=5)), out)
    summary = train(check_config(_cfg(train__epochs=2)), out)
    assert summary["epoch"] == 2 and summary["step"] == 8
    log = (out / "train.log").read_text()
    assert "resuming with changed train options: train.epochs: 1 -> 2" in log
    assert "resumed from" in log


def test_a_run_recorded_before_an_option_existed_resumes_when_the_option_keeps_its_default(tmp_path):
    import json

    from cdsvae.experiment.inputs import INPUTS_FILE

    out = tmp_path / "exp"
    train(check_config(_cfg(train__epochs=1)), out)
    # as written by a version without model.postnet_layers: the key is absent from both records
    for name in ("config.yaml", INPUTS_FILE):
        path = out / name
        rec = yaml.safe_load(path.read_text()) if name.endswith(".yaml") else json.loads(path.read_text())
        (rec["config"] if "config" in rec and "files" in rec else rec)["model"].pop("postnet_layers")
        path.write_text(yaml.safe_dump(rec) if name.endswith(".yaml") else json.dumps(rec))
    with pytest.raises(UserError, match=r"another config \(model.postnet_layers: 0 -> 2\)"):
        train(check_config(_cfg(train__epochs=2, model__postnet_layers=2)), out)
    summary = train(check_config(_cfg(train__epochs=2)), out)
    assert summary["epoch"] == 2 and "resumed from" in (out / "train.log").read_text()


def test_load_train_config_reads_overrides_validates_and_checks_once(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(_cfg()))
    cfg = load_train_config(path, ["--train.epochs", "2", "--loss.con_s", "0"])
    assert cfg == check_config(_cfg(train__epochs=2, loss__con_s=0))
    assert cfg["train"]["unique_utts_per_batch"] is True  # resolved by the experiment: con_z is still on
    with pytest.raises(UserError, match=rf"^{path}: 'augment.content_view: segment' needs several segments"):
        load_train_config(path, ["--augment.content_view", "segment"])
    with pytest.raises(UserError, match=rf"^{path}: unknown key 'train.epoch'"):
        load_train_config(path, {"train": {"epoch": 2}})
    with pytest.raises(UserError, match=r"^config: 'data.type' is required"):
        load_train_config(None)


@pytest.mark.parametrize("frame", ["mlp", "conv64"])
def test_training_steps_read_nothing_back_from_the_device_between_log_points(tmp_path, frame):
    """A profile of 10 C-DSVAE training steps: values are read from tensors once per window of
    train.log_every steps (the non-finite check), never per step (tests/_syncs.py says what is
    counted). Video draws one seed per step from the step's CPU generator for its on-the-fly motion
    views: a read of a CPU tensor, no device sync."""
    from _syncs import host_reads

    from cdsvae.experiment.run import build_trainer
    from cdsvae.train.distributed import shutdown
    from cdsvae.train.trainer import setup_process

    if frame == "mlp":
        cfg = _cfg(data__num_train=40, data__valid_split=None, train__batch_size=4)
    else:
        cfg = {"model": {"frame": "conv64", "conv_width": 2, "g_dim": 4, "s_dim": 4, "z_dim": 2, "hidden_dim": 4},
               "data": {"type": "synthetic", "frame_shape": [3, 64, 64], "num_train": 20, "seq_len": 2,
                        "valid_split": None},
               "train": {"batch_size": 2, "tensorboard": False}}
    per_step = 0 if frame == "mlp" else 1
    cfg["train"].update(epochs=1, max_steps=10, log_every=5)
    cfg = check_config(cfg)
    ctx = setup_process(cfg["train"], tmp_path)
    try:
        tr = build_trainer(cfg, tmp_path, ctx)
        reads, _, _ = host_reads(tr._train_epoch)
    finally:
        shutdown(ctx)
    assert tr.step == 10
    # one when the epoch's loader starts (its base seed, drawn on the host), one per window of 5 steps
    assert reads == 1 + 2 + 10 * per_step


def test_channels_last_stores_4d_weights_channels_last_and_trains_the_same(tmp_path):
    """train.channels_last (default: on CUDA only) run on the CPU: the same steps up to rounding,
    and its checkpoints load into a model in the default layout."""
    from cdsvae.experiment.run import build_trainer
    from cdsvae.train.distributed import shutdown
    from cdsvae.train.trainer import setup_process

    losses, models = {}, {}
    for layout in (False, True):
        cfg = check_config({"model": {"frame": "conv64", "conv_width": 2, "g_dim": 4, "s_dim": 4, "z_dim": 2,
                                      "hidden_dim": 4},
                            "data": {"type": "synthetic", "frame_shape": [3, 64, 64], "num_train": 8, "seq_len": 2,
                                     "valid_split": None},
                            "train": {"batch_size": 2, "tensorboard": False, "epochs": 1, "max_steps": 3,
                                      "log_every": 1, "channels_last": layout}})
        out = tmp_path / str(layout)
        ctx = setup_process(cfg["train"], out)
        try:
            tr = build_trainer(cfg, out, ctx)
            tr.fit()
        finally:
            shutdown(ctx)
        convs = [p for p in tr.model.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) == layout for p in convs)
        losses[layout] = [h["loss"] for h in tr.history]
        models[layout] = load_model(out)[0]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    x = torch.rand(2, 2, 3, 64, 64)
    assert torch.allclose(models[True](x).recon, models[False](x).recon, atol=1e-4)


def _fused_cuda_adam_accepts(optimizer) -> list[str]:
    """What CUDA's fused Adam would refuse: its params, grads and moments must share dtype, device,
    sizes and strides (check_fast_path_restrictions); the CPU kernels check none of it."""
    bad = []
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            for key in ("exp_avg", "exp_avg_sq"):
                v = optimizer.state.get(p, {}).get(key)
                if v is not None and (v.stride() != p.stride() or v.dtype != p.dtype or v.device != p.device):
                    bad.append(f"param {i} ({tuple(p.shape)}, strides {p.stride()}): {key} strides {v.stride()}")
    return bad


@pytest.mark.parametrize("first,then", [(False, True), (True, False)])
def test_a_run_resumed_in_another_memory_layout_gives_adam_its_parameters_layout(tmp_path, first, then):
    """A conv64 run checkpointed on the CPU (channels_last false) and resumed on CUDA (channels-last
    weights), or the other way round: Adam's moments take the parameters' layout on resume."""
    from cdsvae.experiment.run import build_trainer
    from cdsvae.train.distributed import shutdown
    from cdsvae.train.trainer import setup_process

    def run(layout, steps):
        cfg = check_config({"model": {"frame": "conv64", "conv_width": 2, "g_dim": 4, "s_dim": 4, "z_dim": 2,
                                      "hidden_dim": 4},
                            "data": {"type": "synthetic", "frame_shape": [3, 64, 64], "num_train": 8, "seq_len": 2,
                                     "valid_split": None},
                            "train": {"batch_size": 2, "tensorboard": False, "epochs": 2, "max_steps": steps,
                                      "log_every": 1, "channels_last": layout}})
        ctx = setup_process(cfg["train"], tmp_path)
        try:
            tr = build_trainer(cfg, tmp_path, ctx)
            if steps == 2:
                tr.fit()
                return tr, []
            assert tr.resume()
            bad = _fused_cuda_adam_accepts(tr.optimizer)
            tr.fit()
            return tr, bad
        finally:
            shutdown(ctx)

    run(first, 2)
    tr, bad = run(then, 3)
    assert not bad, bad
    assert tr.step == 3
    convs = [p for p in tr.model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) == then for p in convs)
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
