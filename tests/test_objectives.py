"""Known answers and brute-force twins for the C-DSVAE objective."""

import dataclasses
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from cdsvae.io import UserError
from cdsvae.models import build_model
from cdsvae.objectives import (
    LossWeights,
    cdsvae_loss,
    gaussian_log_density_matrix,
    kl_normal,
    mws_information,
    mws_mutual_info,
    nt_xent,
)

TINY = dict(frame="mlp", feat_dim=6, s_dim=5, z_dim=3, hidden_dim=8, g_dim=4, frame_hidden=8)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_kl_normal_standard_matches_torch_distributions():
    g = _gen()
    mean = torch.randn(4, 7, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 7, generator=g, dtype=torch.float64)
    ref = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum()
    assert torch.allclose(kl_normal(mean, logvar), ref, rtol=1e-12)


def test_kl_normal_general_matches_torch_distributions():
    g = _gen(1)
    mq, lq, mp, lp = (torch.randn(3, 5, 2, generator=g, dtype=torch.float64) for _ in range(4))
    ref = kl_divergence(Normal(mq, torch.exp(0.5 * lq)), Normal(mp, torch.exp(0.5 * lp))).sum()
    assert torch.allclose(kl_normal(mq, lq, mp, lp), ref, rtol=1e-12)
    # p given only in part: the missing parameter is the standard normal's
    ref_mean_only = kl_divergence(Normal(mq, torch.exp(0.5 * lq)), Normal(mp, 1.0)).sum()
    assert torch.allclose(kl_normal(mq, lq, mean_p=mp), ref_mean_only, rtol=1e-12)


def test_kl_normal_known_values():
    zero = torch.zeros(2, 3)
    assert kl_normal(zero, zero).item() == 0.0
    # KL(N(1, 1) || N(0, 1)) = 1/2 per element
    assert kl_normal(torch.ones(2, 3), zero).item() == pytest.approx(3.0)


def _nt_xent_loop(a, b, tau):
    rows = torch.cat([a, b])
    n = a.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = i + n if i < n else i - n
        sims = [torch.dot(rows[i], rows[k]) / (rows[i].norm() * rows[k].norm()) / tau for k in range(2 * n)]
        denom = sum(math.exp(sims[k].item()) for k in range(2 * n) if k != i)
        total += -(sims[pos].item() - math.log(denom))
    return total / (2 * n)


@pytest.mark.parametrize("n,tau", [(2, 0.5), (5, 0.5), (7, 0.1)])
def test_nt_xent_matches_loop(n, tau):
    g = _gen(n)
    a, b = torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randn(n, 6, generator=g, dtype=torch.float64)
    assert nt_xent(a, b, tau).item() == pytest.approx(_nt_xent_loop(a, b, tau), rel=1e-10)


def test_nt_xent_known_answer_and_scale_invariance():
    # identical, orthogonal pairs: positive sim 1/tau, the other 2n-2 rows sim 0
    n, tau = 3, 0.5
    a = torch.eye(n)
    expected = -(1 / tau) + math.log(math.exp(1 / tau) + 2 * n - 2)
    assert nt_xent(a, a, tau).item() == pytest.approx(expected, rel=1e-6)
    assert nt_xent(3 * a, 0.5 * a, tau).item() == pytest.approx(expected, rel=1e-6)


def _remedied_loop(a, b, tau, tau_plus, drop):
    """Brute force of the debiased / nearest-dropping NT-Xent, one anchor at a time (Chuang et al., eq. 5)."""
    rows = torch.nn.functional.normalize(torch.cat([a, b]), dim=1)
    n = a.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = i + n if i < n else i - n
        negs = sorted((float(rows[i] @ rows[k]) / tau for k in range(2 * n) if k not in (i, pos)), reverse=True)
        negs = negs[drop:]
        e_pos = math.exp(float(rows[i] @ rows[pos]) / tau)
        ng = sum(math.exp(v) for v in negs)
        if tau_plus > 0:
            ng = max((ng - len(negs) * tau_plus * e_pos) / (1 - tau_plus), len(negs) * math.exp(-1 / tau))
        total += -math.log(e_pos / (e_pos + ng))
    return total / (2 * n)


@pytest.mark.parametrize("n,tau,tau_plus,drop", [(5, 0.5, 0.0, 0), (5, 0.5, 0.1, 0), (6, 0.5, 0.0, 3),
                                                  (6, 0.2, 0.25, 2), (4, 0.5, 0.9, 0), (3, 0.5, 0.0, 3)])
def test_nt_xent_remedies_match_loop(n, tau, tau_plus, drop):
    g = _gen(n + drop)
    a, b = torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randn(n, 6, generator=g, dtype=torch.float64)
    assert nt_xent(a, b, tau, tau_plus, drop).item() == pytest.approx(_remedied_loop(a, b, tau, tau_plus, drop),
                                                                      rel=1e-10)


def test_nt_xent_remedies_known_answers_and_limits():
    n, tau = 3, 0.5
    a = torch.eye(n, dtype=torch.float64)
    # orthogonal negatives (e^0 = 1 each, 4 of them), positive e^(1/tau): the debiased sum is
    # (4 - 4 tau_plus e^2) / (1 - tau_plus), clamped below at 4 e^(-2)
    tp = 0.05
    ng = max((4 - 4 * tp * math.exp(2)) / (1 - tp), 4 * math.exp(-2))
    assert nt_xent(a, a, tau, tp).item() == pytest.approx(-2 + math.log(math.exp(2) + ng), rel=1e-12)
    ng = 4 * math.exp(-2)  # tau_plus 0.5: the clamp
    assert nt_xent(a, a, tau, 0.5).item() == pytest.approx(-2 + math.log(math.exp(2) + ng), rel=1e-12)
    # dropping 3 of the 4 negatives leaves one
    assert nt_xent(a, a, tau, 0.0, 3).item() == pytest.approx(-2 + math.log(math.exp(2) + 1), rel=1e-12)
    # a tiny temperature does not overflow
    g = _gen(0)
    x, y = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    assert torch.isfinite(nt_xent(x, y, 0.005, 0.1, 2))
    # gradients flow through every remedy
    x.requires_grad_(True)
    nt_xent(x, y, 0.5, 0.1, 2).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="tau_plus"):
        nt_xent(x, y, 0.5, 1.0)
    with pytest.raises(ValueError, match="drop_nearest"):
        nt_xent(x, y, 0.5, 0.0, 14)


def test_nt_xent_rejects_single_pair():
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(torch.randn(1, 4), torch.randn(1, 4))


def _log_density_broadcast(v, mean, logvar):
    """(..., B, B) by materialising (..., B, B, D): the straightforward way."""
    diff = v.unsqueeze(-2) - mean.unsqueeze(-3)
    var = torch.exp(logvar).unsqueeze(-3)
    return (-0.5 * (math.log(2 * math.pi) + logvar.unsqueeze(-3) + diff ** 2 / var)).sum(-1)


def _mws_broadcast(s, sm, sl, z, zm, zl, n_data):
    b = s.shape[0]
    ls = _log_density_broadcast(s, sm, sl)  # (B, B)
    lz = _log_density_broadcast(z.transpose(0, 1), zm.transpose(0, 1), zl.transpose(0, 1))  # (T, B, B)
    c = math.log(b * n_data)
    log_qs = torch.logsumexp(ls, -1) - c
    log_qz = torch.logsumexp(lz, -1) - c
    log_qsz = torch.logsumexp(ls + lz, -1) - c
    return torch.relu(log_qsz - log_qs - log_qz).mean()


def _posterior_batch(b, t, ds, dz, g, dtype=torch.float64, spread=1.0):
    sm = torch.randn(b, ds, generator=g, dtype=dtype) * spread
    sl = torch.randn(b, ds, generator=g, dtype=dtype) * 0.5 - 1.0
    zm = torch.randn(b, t, dz, generator=g, dtype=dtype) * spread
    zl = torch.randn(b, t, dz, generator=g, dtype=dtype) * 0.5 - 1.0
    s = sm + torch.exp(0.5 * sl) * torch.randn(b, ds, generator=g, dtype=dtype)
    z = zm + torch.exp(0.5 * zl) * torch.randn(b, t, dz, generator=g, dtype=dtype)
    return s, sm, sl, z, zm, zl


def test_log_density_matrix_matches_torch_distributions():
    g = _gen(2)
    v, mean, logvar = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    got = gaussian_log_density_matrix(v, mean, logvar)
    for i in range(4):
        for j in range(4):
            ref = Normal(mean[j], torch.exp(0.5 * logvar[j])).log_prob(v[i]).sum()
            assert got[i, j].item() == pytest.approx(ref.item(), rel=1e-10)


@pytest.mark.parametrize("b,t", [(1, 1), (2, 3), (5, 4), (9, 1)])
def test_mws_mutual_info_matches_broadcast(b, t):
    g = _gen(10 * b + t)
    # small spread so that s and z_t overlap across the batch and the ReLU is active
    args = _posterior_batch(b, t, 6, 4, g, spread=0.3)
    got = mws_mutual_info(*args, dataset_size=50)
    ref = _mws_broadcast(*args, 50)
    assert got.item() == pytest.approx(ref.item(), rel=1e-9, abs=1e-12)
    assert ref.item() > 0


def test_log_density_matrix_float32_sharp_posteriors():
    """Far from 0 with sigma ~ 0.007, expanding the square in float32 is off by ~12 nats
    (measured); centring + float64 stay within 1e-9 of the broadcast sum over the same inputs."""
    g = _gen(0)
    mean = 5 + 0.01 * torch.randn(16, 64, generator=g, dtype=torch.float64)
    logvar = -10 + 0.1 * torch.randn(16, 64, generator=g, dtype=torch.float64)
    v = mean + torch.exp(0.5 * logvar) * torch.randn(16, 64, generator=g, dtype=torch.float64)
    v, mean, logvar = v.float(), mean.float(), logvar.float()
    ref = _log_density_broadcast(v.double(), mean.double(), logvar.double())
    got = gaussian_log_density_matrix(v, mean, logvar)
    assert got.dtype == torch.float64
    assert (got - ref).abs().max().item() < 1e-9


def test_mws_mutual_info_gradients_match_broadcast():
    g = _gen(4)
    args = [a.requires_grad_() for a in _posterior_batch(6, 3, 5, 4, g, spread=0.3)]
    grads = torch.autograd.grad(mws_mutual_info(*args, dataset_size=20), args)
    ref = torch.autograd.grad(_mws_broadcast(*args, 20), args)
    for got, want in zip(grads, ref):
        assert torch.allclose(got, want, rtol=1e-8, atol=1e-12)


def test_mws_mutual_info_independent_identical_posteriors_is_log_n():
    # every posterior the same: log q(s, z) - log q(s) - log q(z) = log N exactly
    b, t = 4, 2
    s, sm, sl = torch.zeros(b, 3), torch.zeros(b, 3), torch.zeros(b, 3)
    z, zm, zl = torch.zeros(b, t, 2), torch.zeros(b, t, 2), torch.zeros(b, t, 2)
    assert mws_mutual_info(s, sm, sl, z, zm, zl, 100).item() == pytest.approx(math.log(100), rel=1e-6)


def test_mws_information_matches_loop():
    g = _gen(5)
    s, sm, sl, *_ = _posterior_batch(5, 1, 4, 1, g)
    n_data = 30
    expected = 0.0
    for i in range(5):
        logs = [Normal(sm[j], torch.exp(0.5 * sl[j])).log_prob(s[i]).sum() for j in range(5)]
        log_q = torch.logsumexp(torch.stack(logs), 0) - math.log(5 * n_data)
        expected += (logs[i] - log_q).item() / 5
    assert mws_information(s, sm, sl, n_data).item() == pytest.approx(expected, rel=1e-10)


def test_loss_weights_validation():
    with pytest.raises(UserError, match="mi_estimator"):
        LossWeights(mi_estimator="infonce")
    with pytest.raises(UserError, match="con_s"):
        LossWeights(con_s=-1)
    with pytest.raises(UserError, match="tau"):
        LossWeights(tau=0)
    with pytest.raises(UserError, match="con_s_tau_plus must be a number in"):
        LossWeights(con_s_tau_plus=1.0)


def test_loss_weights_take_their_keys_and_defaults_from_the_loss_section():
    import dataclasses

    from cdsvae.objectives import LOSS

    assert [f.name for f in dataclasses.fields(LossWeights)] == list(LOSS.fields)
    assert dataclasses.asdict(LossWeights()) == LOSS.defaults()


def _batch(b=4, t=3, seed=0):
    g = _gen(seed)
    x = torch.randn(b, t, 6, generator=g)
    return x, x.flip(1), x + 0.1 * torch.randn(b, t, 6, generator=g)


def test_cdsvae_loss_terms_and_total():
    torch.manual_seed(0)
    model = build_model(TINY)
    x, xc, xm = _batch()
    w = LossWeights(recon=1.0, kl_s=0.5, kl_z=2.0, con_s=3.0, con_z=4.0, mi_sz=0.25)
    loss, terms = cdsvae_loss(model, x, xc, xm, w, dataset_size=40)
    assert set(terms) == {"recon", "kl_s", "kl_z", "con_s", "con_z", "mi_sz", "loss"}
    assert all(v.dim() == 0 and not v.requires_grad for v in terms.values())
    total = sum(getattr(w, k) * terms[k] for k in ("recon", "kl_s", "kl_z", "con_s", "con_z", "mi_sz"))
    assert loss.item() == pytest.approx(total.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(loss.item())


def test_cdsvae_loss_terms_match_separate_eval_passes():
    """In eval mode (posterior means, running BN stats) one batched pass = three separate passes."""
    torch.manual_seed(1)
    model = build_model(TINY).eval()
    x, xc, xm = _batch(5, 4, seed=1)
    _, terms = cdsvae_loss(model, x, xc, xm, LossWeights(), dataset_size=40)
    o, oc, om = model(x), model(xc), model(xm)
    b = x.shape[0]
    assert terms["recon"].item() == pytest.approx(((o.recon - x) ** 2).sum().item() / b, rel=1e-5)
    assert terms["kl_s"].item() == pytest.approx(kl_normal(o.s_mean, o.s_logvar).item() / b, rel=1e-5)
    kl_z = kl_normal(o.z_mean, o.z_logvar, o.z_prior_mean, o.z_prior_logvar).item() / b
    assert terms["kl_z"].item() == pytest.approx(kl_z, rel=1e-5)
    assert terms["con_s"].item() == pytest.approx(nt_xent(o.s_mean, oc.s_mean).item(), rel=1e-5)
    con_z = nt_xent(o.z_mean.flatten(1), om.z_mean.flatten(1)).item()
    assert terms["con_z"].item() == pytest.approx(con_z, rel=1e-5)
    mi = _mws_broadcast(*(a.double() for a in (o.s, o.s_mean, o.s_logvar, o.z, o.z_mean, o.z_logvar)), 40)
    assert terms["mi_sz"].item() == pytest.approx(mi.item(), rel=1e-5)


def test_cdsvae_loss_remedies_match_separate_eval_passes():
    """Debiased, nearest-dropping con_s in the objective = nt_xent of separate eval passes."""
    torch.manual_seed(1)
    model = build_model(TINY).eval()
    x, xc, xm = _batch(5, 4, seed=1)
    w = LossWeights(con_s_tau_plus=0.1, con_s_drop_nearest=2)
    _, terms = cdsvae_loss(model, x, xc, xm, w, dataset_size=40)
    o, oc = model(x), model(xc)
    assert terms["con_s"].item() == pytest.approx(nt_xent(o.s_mean, oc.s_mean, 0.5, 0.1, 2).item(), rel=1e-5)
    assert terms["con_s"].item() != pytest.approx(nt_xent(o.s_mean, oc.s_mean).item(), rel=1e-3)
    with pytest.raises(UserError, match="con_s_drop_nearest 8 leaves no negative"):
        cdsvae_loss(model, x, xc, xm, dataclasses.replace(w, con_s_drop_nearest=8), dataset_size=40)
    with pytest.raises(UserError, match="con_s_tau_plus"):
        LossWeights(con_s_tau_plus=1.0)


def test_cdsvae_loss_content_index_equals_content_tensor():
    from cdsvae.experiment.loss import apply_order, content_order

    torch.manual_seed(2)
    model = build_model(TINY)
    x, _, xm = _batch(4, 5, seed=2)
    order = content_order(4, 5, _gen(7))
    torch.manual_seed(3)
    loss_a, terms_a = cdsvae_loss(model, x, apply_order(x, order), xm, LossWeights(), 40)
    torch.manual_seed(3)
    loss_b, terms_b = cdsvae_loss(model, x, None, xm, LossWeights(), 40, content_index=order)
    for k in terms_a:
        assert terms_b[k].item() == pytest.approx(terms_a[k].item(), rel=1e-5, abs=1e-6), k


def test_cdsvae_loss_dsvae_and_mws_need_no_views():
    torch.manual_seed(4)
    model = build_model(TINY)
    x, _, _ = _batch()
    loss, terms = cdsvae_loss(model, x, None, None, LossWeights(con_s=0, con_z=0, mi_sz=0), 40)
    assert set(terms) == {"recon", "kl_s", "kl_z", "mi_sz", "loss"}  # mi_sz logged, not weighted
    assert loss.item() == pytest.approx((terms["recon"] + terms["kl_s"] + terms["kl_z"]).item(), rel=1e-5)
    loss, terms = cdsvae_loss(model, x, None, None, LossWeights(mi_estimator="mws"), 40)
    assert {"con_s", "con_z"} <= set(terms)
    assert terms["con_s"].item() < 0  # negated information estimate, in nats
    loss.backward()


def test_cdsvae_loss_batch_of_one():
    model = build_model(TINY)
    x, xc, xm = _batch(1, 3)
    with pytest.raises(UserError, match="at least 2 sequences"):
        cdsvae_loss(model, x, xc, xm, LossWeights(), 40)
    loss, terms = cdsvae_loss(model, x, None, None, LossWeights(con_s=0, con_z=0), 40)
    assert torch.isfinite(loss)


def test_cdsvae_loss_missing_view_is_named():
    model = build_model(TINY)
    x, xc, _ = _batch()
    with pytest.raises(UserError, match="x_motion"):
        cdsvae_loss(model, x, xc, None, LossWeights(), 40)
    with pytest.raises(UserError, match="content"):
        cdsvae_loss(model, x, None, x, LossWeights(), 40)


@pytest.mark.parametrize("frame", ["conv64", "mlp", "conv1d"])
def test_gradients_finite_and_reach_every_parameter(frame):
    torch.manual_seed(5)
    cfg = dict(frame=frame, in_channels=1, feat_dim=12, s_dim=6, z_dim=3, hidden_dim=8, g_dim=5,
               conv_width=4, frame_hidden=16)
    model = build_model(cfg)
    shape = (3, 2, 1, 64, 64) if frame == "conv64" else (3, 2, 12)
    x = torch.rand(*shape)
    loss, terms = cdsvae_loss(model, x, x.flip(1), (x * 0.8).clamp(0, 1), LossWeights(), 30)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("estimator", ["contrastive", "mws"])
def test_kl_and_mws_terms_stay_float32_under_bf16_autocast(estimator):
    """Under autocast the model's outputs come in bfloat16; the KL and MWS terms are computed from
    them in float32 (float64 inside MWS), exactly as from the same outputs cast up outside autocast."""
    torch.manual_seed(5)
    model = build_model(TINY).eval()
    seen = []

    def recording(*args, **kw):
        out = model(*args, **kw)
        seen.append(out)
        return out

    x, xc, xm = _batch(6, 4, seed=5)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss, terms = cdsvae_loss(recording, x, xc, xm, LossWeights(mi_estimator=estimator), dataset_size=40)
    o = seen[0]
    assert o.s_mean.dtype == torch.bfloat16  # the outputs really are 16-bit: the test compares like with like
    assert loss.dtype == torch.float32 and all(v.dtype == torch.float32 for v in terms.values())
    up = {k: getattr(o, k).float() for k in ("s", "s_mean", "s_logvar", "z", "z_mean", "z_logvar",
                                              "z_prior_mean", "z_prior_logvar")}
    b = x.shape[0]
    assert torch.equal(terms["kl_s"], kl_normal(up["s_mean"], up["s_logvar"]) / b)
    assert torch.equal(terms["kl_z"], kl_normal(up["z_mean"], up["z_logvar"], up["z_prior_mean"],
                                                up["z_prior_logvar"]) / b)
    mi = mws_mutual_info(up["s"], up["s_mean"], up["s_logvar"], up["z"], up["z_mean"], up["z_logvar"], 40)
    assert torch.equal(terms["mi_sz"], mi)
    if estimator == "mws":
        assert torch.equal(terms["con_s"], -mws_information(up["s"], up["s_mean"], up["s_logvar"], 40))
