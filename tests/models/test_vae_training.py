"""Short CPU trainings: the model can fit, and C-DSVAE separates static from dynamic factors."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from cdsvae.experiment.loss import content_order
from cdsvae.models import build_model
from cdsvae.objectives import LossWeights, cdsvae_loss


def _train(model, batches, weights, steps, lr, dataset_size):
    opt = torch.optim.Adam(model.parameters(), lr)
    history = []
    for step in range(steps):
        x, x_content, x_motion, order = batches(step)
        loss, terms = cdsvae_loss(model, x, x_content, x_motion, weights, dataset_size, content_index=order)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(terms["recon"].item())
    return history


def _mean_frame_error(x):
    """Squared error per sequence of predicting every frame by the data's mean frame."""
    return ((x - x.mean(dim=(0, 1), keepdim=True)) ** 2).sum().item() / x.shape[0]


@pytest.mark.parametrize("frame,factor_start,factor_mean", [("mlp", 10, 10), ("conv64", 50, 5)])
def test_overfit_a_few_sequences(frame, factor_start, factor_mean):
    """DSVAE objective on 3-4 fixed sequences. Measured on this CPU: mlp recon 52 -> 2.0
    in 300 steps (mean-frame error 50); conv64 (1 x 64 x 64 Gaussian blobs) 3763 -> 20 in
    200 steps (mean-frame error 219). Asserted: recon falls by factor_start from step 0
    and ends factor_mean below the mean-frame error (eval mode, posterior means)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if frame == "mlp":
        model = build_model(dict(frame="mlp", feat_dim=10, s_dim=8, z_dim=4, hidden_dim=32, g_dim=16,
                                 frame_hidden=32))
        x = torch.randn(4, 6, 10, generator=g)
        steps, lr = 300, 1e-2
    else:
        model = build_model(dict(frame="conv64", in_channels=1, s_dim=8, z_dim=4, hidden_dim=16, g_dim=16,
                                 conv_width=8))
        rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        centre = torch.rand(3, 4, 2, generator=g) * 40 + 12
        dist2 = (rows - centre[..., 0, None, None]) ** 2 + (cols - centre[..., 1, None, None]) ** 2
        x = torch.exp(-dist2 / 50.0)[:, :, None]
        steps, lr = 200, 3e-3
    weights = LossWeights(con_s=0, con_z=0, mi_sz=0)
    history = _train(model, lambda step: (x, None, None, None), weights, steps, lr, len(x))
    model.eval()
    with torch.no_grad():
        final = ((model(x).recon - x) ** 2).sum().item() / x.shape[0]
    baseline = _mean_frame_error(x)
    assert history[-1] < history[0] / factor_start, f"recon {history[0]:.1f} -> {history[-1]:.1f}"
    assert final < baseline / factor_mean, f"eval recon {final:.1f} vs mean-frame error {baseline:.1f}"


K_STATIC, K_DYNAMIC, T, F = 4, 4, 8, 12


def _factors(n, g):
    static = torch.randint(K_STATIC, (n,), generator=g)
    start = torch.randint(K_DYNAMIC, (n,), generator=g)
    direction = torch.randint(2, (n,), generator=g) * 2 - 1
    dynamic = (start[:, None] + direction[:, None] * torch.arange(T)) % K_DYNAMIC
    return static, dynamic


def _render(static, dynamic, codes, g):
    static_codes, dynamic_codes = codes
    noise = 0.1 * torch.randn(static.shape[0], T, F, generator=g)
    return static_codes[static][:, None] + dynamic_codes[dynamic] + noise


def _probe(train_x, train_y, test_x, test_y):
    return LogisticRegression(max_iter=2000).fit(train_x, train_y.numpy()).score(test_x, test_y.numpy())


def test_disentanglement_on_synthetic_factors():
    """x_t = u[static] + w[dynamic_t] + noise: u a per-sequence constant (4 classes), w a
    per-step code moving +-1 through 4 classes. The motion view re-renders the sequence
    with another static class, the content view shuffles frames. After 400 C-DSVAE steps
    (B=32, ~10 s on one core), logistic-regression probes on held-out sequences measured:
    static from s 1.00, from z_t 0.27 (chance 0.25); dynamic from z_t 1.00, from s 0.25.
    With the authors' N(0, 0.01) init this tiny MLP model often collapses z (kl_z -> 0) in
    the first few hundred steps, so the test uses PyTorch's default init."""
    g = torch.Generator().manual_seed(0)
    codes = (torch.randn(K_STATIC, F, generator=g), torch.randn(K_DYNAMIC, F, generator=g))
    train_static, train_dynamic = _factors(512, g)
    test_static, test_dynamic = _factors(256, g)
    x_train = _render(train_static, train_dynamic, codes, g)
    x_test = _render(test_static, test_dynamic, codes, g)
    torch.manual_seed(0)
    model = build_model(dict(frame="mlp", feat_dim=F, s_dim=8, z_dim=4, hidden_dim=32, g_dim=16,
                             frame_hidden=32, init="default"))
    batch = 32

    def batches(step):
        idx = torch.randint(len(x_train), (batch,), generator=g)
        other = (train_static[idx] + torch.randint(1, K_STATIC, (batch,), generator=g)) % K_STATIC
        x_motion = _render(other, train_dynamic[idx], codes, g)
        return x_train[idx], None, x_motion, content_order(batch, T, g)

    _train(model, batches, LossWeights(), 400, 3e-3, len(x_train))
    model.eval()
    with torch.no_grad():
        enc_train, enc_test = model.encode(x_train), model.encode(x_test)

    def per_step(enc):
        z = enc.z_mean.reshape(-1, enc.z_mean.shape[-1]).numpy()
        return z, np.repeat(enc.s_mean.numpy(), T, axis=0)

    z_train, s_rep_train = per_step(enc_train)
    z_test, s_rep_test = per_step(enc_test)
    static_from_s = _probe(enc_train.s_mean.numpy(), train_static, enc_test.s_mean.numpy(), test_static)
    static_from_z = _probe(z_train, train_static.repeat_interleave(T), z_test, test_static.repeat_interleave(T))
    dynamic_from_z = _probe(z_train, train_dynamic.reshape(-1), z_test, test_dynamic.reshape(-1))
    dynamic_from_s = _probe(s_rep_train, train_dynamic.reshape(-1), s_rep_test, test_dynamic.reshape(-1))
    report = (f"static: s {static_from_s:.2f} z {static_from_z:.2f}; "
              f"dynamic: z {dynamic_from_z:.2f} s {dynamic_from_s:.2f}")
    assert static_from_s >= 0.95 and static_from_z <= 0.5, report
    assert dynamic_from_z >= 0.95 and dynamic_from_s <= 0.4, report
