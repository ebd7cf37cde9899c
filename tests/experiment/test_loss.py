"""The per-step loss of an experiment: its views (content views reorder each sequence's frames and nothing
else), and the eval/train reconstruction check."""

import pytest
import torch

from _tiny import TINY, tiny_config as _cfg
from cdsvae.experiment.loss import apply_order, content_order, content_view, make_loss_fn
from cdsvae.experiment.schema import check_config
from cdsvae.io import UserError


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(5, 7, 3, 4, 4), (3, 6, 10)])
def test_shuffle_matches_loop_and_keeps_each_sequences_frames(shape):
    x = torch.randn(*shape)
    order = content_order(shape[0], shape[1], _gen(0))
    view = content_view(x, _gen(0))
    for b in range(shape[0]):
        assert sorted(order[b].tolist()) == list(range(shape[1]))
        for t in range(shape[1]):
            assert torch.equal(view[b, t], x[b, order[b, t]])


def test_shuffle_is_deterministic_and_per_sequence():
    x = torch.arange(64 * 8, dtype=torch.float32).view(64, 8)
    a, b = content_view(x, _gen(1)), content_view(x, _gen(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, content_view(x, _gen(2)))
    orders = content_order(64, 8, _gen(1))
    assert len({tuple(o.tolist()) for o in orders}) > 50  # not one permutation for the batch


def test_reverse_is_flip_and_ignores_generator():
    x = torch.randn(3, 5, 2)
    assert torch.equal(content_view(x, None, mode="reverse"), x.flip(1))


def test_single_frame_is_unchanged():
    x = torch.randn(4, 1, 3)
    assert torch.equal(content_view(x, _gen(0)), x)


def test_bad_mode_and_order_shape():
    with pytest.raises(UserError, match="shuffle, reverse"):
        content_view(torch.randn(2, 3, 4), _gen(0), mode="rotate")
    with pytest.raises(ValueError, match="order must have shape"):
        apply_order(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


class _Copies(torch.utils._python_dispatch.TorchDispatchMode):
    """Records each copy between devices with its non_blocking flag."""

    def __init__(self):
        super().__init__()
        self.copies = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and "device" in kwargs:
            self.copies.append((args[0].device.type, torch.device(kwargs["device"]).type,
                                bool(kwargs.get("non_blocking", False))))
        return func(*args, **kwargs)


@pytest.mark.parametrize("mode", ["shuffle", "reverse"])
def test_the_order_for_another_device_is_copied_without_blocking_the_host(mode, monkeypatch):
    """The meta device stands in for a GPU: the order is drawn on the CPU (the same numbers as for
    the CPU) and copied once, non_blocking; with CUDA present the copy comes from pinned memory."""
    want = content_order(4, 6, _gen(3), mode)
    with _Copies() as seen:
        order = content_order(4, 6, _gen(3), mode, device=torch.device("meta"))
    assert order.device.type == "meta" and order.shape == want.shape and order.dtype == torch.int64
    assert seen.copies == [("cpu", "meta", True)]
    pinned = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: (pinned.append(t.clone()), t)[1])
    content_order(4, 6, _gen(3), mode, device=torch.device("meta"))
    assert len(pinned) == 1 and torch.equal(pinned[0], want)
    # on the CPU nothing is copied or pinned
    with _Copies() as seen:
        assert torch.equal(content_order(4, 6, _gen(3), mode, device=torch.device("cpu")), want)
    assert seen.copies == [] and len(pinned) == 1


def test_dsvae_needs_no_views_and_speech_without_motion_views_is_an_error(tmp_path):
    from cdsvae.models import build_model

    model = build_model(TINY)
    batch = {"x": torch.rand(4, 6, 12)}
    gen = torch.Generator().manual_seed(0)
    dsvae = check_config(_cfg(loss__con_s=0, loss__con_z=0, loss__mi_sz=0, data__type="speech"))
    loss, terms = make_loss_fn(dsvae, 100)(model, batch, gen)
    assert torch.isfinite(loss) and "loss" not in terms and {"recon", "kl_s", "kl_z", "mi_sz"} <= set(terms)
    cdsvae = check_config(_cfg(data__type="speech"))
    with pytest.raises(UserError, match="needs motion views"):
        make_loss_fn(cdsvae, 100)(model, batch, gen)
    with torch.no_grad():  # validation: scored without the term it cannot compute
        loss, terms = make_loss_fn(cdsvae, 100)(model, batch, gen)
    assert torch.isfinite(loss) and "con_z" not in terms and "con_s" in terms
    # A dataset-provided view is used as is.
    loss, terms = make_loss_fn(cdsvae, 100)(model, {**batch, "x_motion": torch.rand(4, 6, 12)}, gen)
    assert {"con_s", "con_z"} <= set(terms)


def test_segment_content_view_uses_the_datasets_segment_and_needs_speech():
    from cdsvae.models import build_model
    from cdsvae.objectives import nt_xent

    with pytest.raises(UserError, match="content_view: segment' needs several segments"):
        check_config(_cfg(augment__content_view="segment"))
    cfg = check_config(_cfg(data__type="speech", augment__content_view="segment"))
    assert cfg["train"]["unique_utts_per_batch"] is True  # resolved: a contrastive term is on
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    x, xc, xm = torch.rand(4, 6, 12), torch.rand(4, 6, 12), torch.rand(4, 6, 12)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(UserError, match="no 'x_content'"):
        make_loss_fn(cfg, 100)(model, {"x": x, "x_motion": xm}, gen)
    with torch.no_grad():
        _, terms = make_loss_fn(cfg, 100)(model, {"x": x, "x_motion": xm, "x_content": xc}, gen)
        # con_s pairs x with its content segment (eval mode: batch norm does not mix the views)
        want = nt_xent(model.encode(x).s_mean, model.encode(xc).s_mean)
    assert terms["con_s"].item() == pytest.approx(want.item(), rel=1e-5)
    # no contrastive term: no unique-utterance batches unless asked for
    dsvae = check_config(_cfg(loss__con_s=0, loss__con_z=0, loss__mi_sz=0))
    assert dsvae["train"]["unique_utts_per_batch"] is False
    mws = check_config(_cfg(loss__mi_estimator="mws"))
    assert mws["train"]["unique_utts_per_batch"] is False
    assert check_config(_cfg(train__unique_utts_per_batch=False))["train"]["unique_utts_per_batch"] is False


def test_video_motion_views_are_made_on_the_fly_from_the_step_generator():
    from cdsvae.models import build_model

    cfg = check_config({"data": {"type": "video"}, "model": {"frame": "conv64", "conv_width": 4, "g_dim": 8,
                                                             "s_dim": 4, "z_dim": 2, "hidden_dim": 8}})
    torch.manual_seed(0)
    model = build_model(cfg["model"])
    batch = {"x": torch.rand(3, 2, 3, 64, 64)}
    loss_fn = make_loss_fn(cfg, 10)

    def run(seed):
        torch.manual_seed(1)  # the model's own sampling
        return loss_fn(model, batch, torch.Generator().manual_seed(seed))[1]

    a, b, c = run(5), run(5), run(6)
    assert a["con_z"] == b["con_z"] and a["con_s"] == b["con_s"]  # deterministic under the generator
    assert a["con_z"] != c["con_z"]  # another draw, other views


def test_recon_consistency_compares_modes_without_side_effects():
    from _recon import fit_reconstruction

    from cdsvae.experiment.loss import recon_consistency
    from cdsvae.models import build_model

    torch.manual_seed(0)
    model = build_model(dict(TINY, init="default"))
    x = torch.randn(16, 6, 12)
    fit_reconstruction(model, x, 150)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    eval_err, train_err = recon_consistency(model, {"x": x})
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running statistics and counters untouched
    with torch.no_grad():
        want_eval = ((model(x, sample=False).recon - x) ** 2).sum() / 16
    assert eval_err == pytest.approx(want_eval.item(), rel=1e-6)
    assert 0.8 < eval_err / train_err < 1.25
    # Running averages that lag behind the weights (the failure this check exists for) are caught.
    with torch.no_grad():
        for bn in model.frame_encoder.layers:
            if isinstance(bn, torch.nn.BatchNorm1d):
                bn.running_mean += 3.0 * bn.running_var.sqrt()
    eval_bad, train_same = recon_consistency(model, {"x": x})
    assert train_same == pytest.approx(train_err.item(), rel=1e-5)
    assert eval_bad / train_same > 1.25
