"""The C-DSVAE objective (equation 6 with the contrastive estimates of equation 8).

Terms: reconstruction, analytic KL of s to N(0, I) and of z_t to the learned prior,
NT-Xent estimates of I(x; s) and I(x; z_1:T) on content and motion views (or their
minibatch-weighted-sampling estimates, the ablation), and the MWS estimate of
I(s; z_t). DSVAE is the same objective with con_s = con_z = mi_sz = 0.

The MWS estimators need log N(v_i; mu_j, sigma_j^2) summed over dimensions for every
pair (i, j) of the batch. Expanding the square makes that sum a quadratic form:
    sum_d (v_id - mu_jd)^2 / sigma_jd^2 = (v_i^2) . p_j - 2 v_i . (mu_j p_j) + mu_j^2 . p_j
with p = exp(-logvar), i.e. three matrix products, so memory is O(T B^2), never the
O(T B^2 D) of broadcasting (T, B, B, D). It is computed in float64 after centring on the
batch mean, because the expansion cancels large terms when variances are small.
"""

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cdsvae.config import Field, Section, validate
from cdsvae.io import UserError

LOG_2PI = math.log(2.0 * math.pi)
TERMS = ("recon", "kl_s", "kl_z", "con_s", "con_z", "mi_sz")


def kl_normal(mean_q, logvar_q, mean_p=None, logvar_p=None):
    """KL(N(mean_q, exp(logvar_q)) || N(mean_p, exp(logvar_p))) summed over every element.

    p is the standard normal where ``mean_p``/``logvar_p`` are None. The caller divides
    by the batch size.
    """
    if mean_p is None and logvar_p is None:
        kl = torch.exp(logvar_q) + mean_q.pow(2) - 1.0 - logvar_q
    else:
        if mean_p is None:
            mean_p = torch.zeros_like(mean_q)
        if logvar_p is None:
            logvar_p = torch.zeros_like(logvar_q)
        kl = (logvar_p - logvar_q - 1.0
              + (torch.exp(logvar_q) + (mean_q - mean_p).pow(2)) * torch.exp(-logvar_p))
    return 0.5 * kl.sum()


def nt_xent(a, b, tau=0.5, tau_plus=0.0, drop_nearest=0):
    """SimCLR's NT-Xent over the 2B rows of cat(a, b), a and b of shape (B, D).

    Cosine similarity / tau; row i's positive is its paired row (i + B or i - B); the
    denominator runs over every row but i itself. Returns the mean over the 2B rows.
    Needs B >= 2: with a single pair the loss is identically 0 and teaches nothing.

    Two label-free remedies for negatives that are really positives (another utterance of
    the anchor's speaker), both off by default:

    ``tau_plus`` > 0: the debiased loss of Chuang et al. (NeurIPS 2020). ``tau_plus`` is the
    prior probability that a negative shares the anchor's class (about 1 / number of speakers);
    the sum over the N = 2B - 2 negatives is replaced by
    max((sum_neg - N tau_plus e_pos) / (1 - tau_plus), N e^(-1/tau)).

    ``drop_nearest`` = k > 0: false-negative cancellation by similarity. Each row's k negatives
    most similar to it are left out of its denominator (needs k <= 2B - 3).
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f"nt_xent expects two tensors of equal shape (B, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    n = a.shape[0]
    if n < 2:
        raise ValueError(f"nt_xent needs a batch of at least 2 pairs, got {n}")
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}")
    num_neg = 2 * n - 2
    if not 0 <= drop_nearest <= num_neg - 1:
        raise ValueError(f"drop_nearest must be in [0, {num_neg - 1}] for a batch of {n} pairs, got {drop_nearest}")
    h = F.normalize(torch.cat([a, b]), dim=1)
    sim = (h @ h.t()) / tau
    idx = torch.arange(n, device=sim.device)
    pos_col = torch.cat([idx + n, idx])
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=sim.device)
    if tau_plus == 0.0 and drop_nearest == 0:
        return F.cross_entropy(sim.masked_fill(self_mask, float("-inf")), pos_col)
    rows = torch.arange(2 * n, device=sim.device)
    pos_mask = torch.zeros_like(self_mask)
    pos_mask[rows, pos_col] = True
    neg_mask = ~(self_mask | pos_mask)
    if drop_nearest > 0:
        nearest = sim.detach().masked_fill(~neg_mask, float("-inf")).topk(drop_nearest, dim=1).indices
        neg_mask = neg_mask.clone()
        neg_mask[rows[:, None], nearest] = False
        num_neg -= drop_nearest
    # Shifted by the largest possible logit 1/tau so that no exponential overflows.
    shift = 1.0 / tau
    pos = sim[rows, pos_col] - shift
    neg_exp = torch.exp(sim - shift).masked_fill(~neg_mask, 0.0).sum(dim=1)
    if tau_plus > 0.0:
        neg_exp = (neg_exp - num_neg * tau_plus * torch.exp(pos)) / (1.0 - tau_plus)
        neg_exp = torch.clamp(neg_exp, min=num_neg * math.exp(-1.0 / tau - shift))
    return (torch.logaddexp(pos, torch.log(neg_exp)) - pos).mean()


def gaussian_log_density_matrix(v, mean, logvar):
    """L[..., i, j] = sum_d log N(v[..., i, d]; mean[..., j, d], exp(logvar[..., j, d])), in float64.

    v, mean, logvar: (..., B, D) -> (..., B, B), via matmuls (see the module docstring).
    """
    v, mean, logvar = v.double(), mean.double(), logvar.double()
    centre = mean.mean(dim=-2, keepdim=True).detach()  # cancels exactly; shrinks the squares
    v, mean = v - centre, mean - centre
    prec = torch.exp(-logvar)
    quad = (v * v) @ prec.transpose(-1, -2)
    quad = quad - 2.0 * (v @ (mean * prec).transpose(-1, -2))
    quad = quad + (mean * mean * prec).sum(-1).unsqueeze(-2)
    const = logvar.sum(-1).unsqueeze(-2) + v.shape[-1] * LOG_2PI
    return -0.5 * (quad + const)


def _check_dataset_size(dataset_size):
    if isinstance(dataset_size, bool) or not isinstance(dataset_size, int) or dataset_size < 1:
        raise ValueError(f"dataset_size must be a positive integer, got {dataset_size!r}")


def mws_mutual_info(s, s_mean, s_logvar, z, z_mean, z_logvar, dataset_size):
    """Minibatch-weighted-sampling estimate of I(s; z_t), averaged over samples and steps.

    s, s_mean, s_logvar: (B, Ds); z, z_mean, z_logvar: (B, T, Dz). For each t,
    log q(v_i) = logsumexp_j log N(v_i; mean_j, exp(logvar_j)) - log(B * dataset_size)
    for v = s, z_t and the pair (s, z_t); returns the mean over i and t of
    ReLU(log q(s, z_t) - log q(s) - log q(z_t)).
    """
    _check_dataset_size(dataset_size)
    if s.dim() != 2 or z.dim() != 3 or s.shape[0] != z.shape[0]:
        raise ValueError(
            f"mws_mutual_info expects s (B, Ds) and z (B, T, Dz), got {tuple(s.shape)} and {tuple(z.shape)}")
    log_norm = math.log(s.shape[0] * dataset_size)
    ls = gaussian_log_density_matrix(s, s_mean, s_logvar)  # (B, B)
    lz = gaussian_log_density_matrix(z.transpose(0, 1), z_mean.transpose(0, 1),
                                     z_logvar.transpose(0, 1))  # (T, B, B)
    log_qs = torch.logsumexp(ls, dim=-1)
    log_qz = torch.logsumexp(lz, dim=-1)
    log_qsz = torch.logsumexp(lz + ls, dim=-1)
    mi = F.relu(log_qsz - log_qs - log_qz + log_norm)
    return mi.mean().to(torch.promote_types(s.dtype, torch.float32))


def mws_information(v, mean, logvar, dataset_size):
    """MWS estimate of I(x; v) = E[log q(v|x) - log q(v)] for samples v (B, D) of q(v|x_i).

    log q(v_i) is estimated as in :func:`mws_mutual_info`. For a trajectory z_1:T pass
    the flattened (B, T * Dz) tensors: q(z_1:T | x) factorises over t given x.
    """
    _check_dataset_size(dataset_size)
    log_norm = math.log(v.shape[0] * dataset_size)
    lv = gaussian_log_density_matrix(v, mean, logvar)
    info = torch.diagonal(lv) - torch.logsumexp(lv, dim=-1) + log_norm
    return info.mean().to(torch.promote_types(v.dtype, torch.float32))


MI_ESTIMATORS = ("contrastive", "mws")

# The ``loss`` config section, declared once, here: the keys, their defaults (the authors':
# KL 1, MI 1, contrastive 10) and their types. :class:`LossWeights` takes its fields from it.
LOSS = Section({
    "recon": Field(1.0, "float", minimum=0.0),  # the weights of TERMS
    "kl_s": Field(1.0, "float", minimum=0.0),
    "kl_z": Field(1.0, "float", minimum=0.0),
    "con_s": Field(10.0, "float", minimum=0.0),
    "con_z": Field(10.0, "float", minimum=0.0),
    "mi_sz": Field(1.0, "float", minimum=0.0),
    # how I(x; s) and I(x; z) are estimated for con_s/con_z: NT-Xent on views (C-DSVAE) or MWS (no views)
    "mi_estimator": Field("contrastive", "str", choices=MI_ESTIMATORS),
    "tau": Field(0.5, "float", minimum=0.0),  # > 0
    # Label-free remedies for same-speaker negatives in con_s (see nt_xent); 0 = off.
    "con_s_tau_plus": Field(0.0, "float", minimum=0.0),  # < 1
    "con_s_drop_nearest": Field(0, "int", minimum=0),
})
_DEFAULT = LOSS.defaults()


@dataclass
class LossWeights:
    """The ``loss`` section as the objective reads it: its keys and defaults are :data:`LOSS`'s,
    and it is checked against it (plus ``tau`` > 0 and ``con_s_tau_plus`` < 1).

    ``mi_estimator`` chooses how I(x; s) and I(x; z) are estimated for con_s/con_z:
    "contrastive" (NT-Xent on views, C-DSVAE) or "mws" (the ablation; no views needed).
    """

    recon: float = _DEFAULT["recon"]
    kl_s: float = _DEFAULT["kl_s"]
    kl_z: float = _DEFAULT["kl_z"]
    con_s: float = _DEFAULT["con_s"]
    con_z: float = _DEFAULT["con_z"]
    mi_sz: float = _DEFAULT["mi_sz"]
    mi_estimator: str = _DEFAULT["mi_estimator"]
    tau: float = _DEFAULT["tau"]
    con_s_tau_plus: float = _DEFAULT["con_s_tau_plus"]
    con_s_drop_nearest: int = _DEFAULT["con_s_drop_nearest"]

    def __post_init__(self):
        validate({"loss": dataclasses.asdict(self)}, {"loss": LOSS}, "loss weights")
        if not self.tau > 0:
            raise UserError(f"loss.tau must be a positive number, got {self.tau!r}")
        if not self.con_s_tau_plus < 1:
            raise UserError(f"loss.con_s_tau_plus must be a number in [0, 1), got {self.con_s_tau_plus!r}")


def cdsvae_loss(model, x, x_content, x_motion, weights, dataset_size, *, content_index=None):
    """The objective on one batch: (loss, terms).

    ``terms`` maps each of recon, kl_s, kl_z, con_s, con_z, mi_sz and "loss" (the
    weighted total) to a detached scalar, all per sequence (sums over time and
    dimensions, averaged over the batch), so a non-finite loss can be traced to its
    term. con_s/con_z are the quantities minimised: NT-Xent losses, or with
    mi_estimator="mws" the negated MWS estimates of I(x; s) and I(x; z_1:T). A
    zero-weight term costs no gradient: mi_sz and the MWS terms are still logged, while
    zero-weight contrastive terms are left out together with their views.

    Only x is decoded. The views go through the frame encoder in one call with x,
    with batch-norm statistics from x's frames alone. ``content_index`` (B, T), the
    frame order of the content view (see cdsvae.experiment.loss.content_order), can
    replace ``x_content``; the frame encoder then skips the content view entirely.
    ``model`` may be wrapped (e.g. DistributedDataParallel): it is only called.
    """
    if not isinstance(weights, LossWeights):
        raise TypeError(f"weights must be a LossWeights, got {type(weights).__name__}")
    _check_dataset_size(dataset_size)
    batch = x.shape[0]
    contrastive = weights.mi_estimator == "contrastive"
    use_content = contrastive and weights.con_s > 0
    use_motion = contrastive and weights.con_z > 0
    if (use_content or use_motion) and batch < 2:
        raise UserError("the contrastive terms (con_s, con_z > 0) need a batch of at least 2 sequences, "
                        "got 1; raise the batch size or set con_s = con_z = 0")
    if use_content and x_content is None and content_index is None:
        raise UserError("con_s > 0 needs the content view: pass x_content or content_index")
    if use_motion and x_motion is None:
        raise UserError("con_z > 0 needs the motion view x_motion")
    out = model(x,
                x_content=x_content if use_content else None,
                x_motion=x_motion if use_motion else None,
                content_index=content_index if use_content else None)
    terms = {"recon": F.mse_loss(out.recon, x, reduction="sum") / batch}  # keeps no (recon - x) for backward
    # Under autocast the KL and MWS terms are computed in float32 (MWS in float64 inside), whatever
    # precision the model's outputs come in: sums of exponentials over a batch lose too much in 16 bits.
    with torch.autocast(device_type=x.device.type, enabled=False):
        terms["kl_s"] = kl_normal(out.s_mean.float(), out.s_logvar.float()) / batch
        terms["kl_z"] = kl_normal(out.z_mean.float(), out.z_logvar.float(), out.z_prior_mean.float(),
                                  out.z_prior_logvar.float()) / batch
    if use_content:
        if weights.con_s_drop_nearest > 2 * batch - 3:
            raise UserError(f"loss.con_s_drop_nearest {weights.con_s_drop_nearest} leaves no negative in a batch "
                            f"of {batch} (at most {2 * batch - 3})")
        terms["con_s"] = nt_xent(out.s_mean, out.s_mean_content, weights.tau, weights.con_s_tau_plus,
                                 weights.con_s_drop_nearest)
    if use_motion:
        terms["con_z"] = nt_xent(out.z_mean.flatten(1), out.z_mean_motion.flatten(1), weights.tau)
    with torch.autocast(device_type=x.device.type, enabled=False):
        if not contrastive:
            with torch.set_grad_enabled(torch.is_grad_enabled() and weights.con_s > 0):
                terms["con_s"] = -mws_information(out.s, out.s_mean, out.s_logvar, dataset_size)
            with torch.set_grad_enabled(torch.is_grad_enabled() and weights.con_z > 0):
                terms["con_z"] = -mws_information(out.z.flatten(1), out.z_mean.flatten(1),
                                                  out.z_logvar.flatten(1), dataset_size)
        with torch.set_grad_enabled(torch.is_grad_enabled() and weights.mi_sz > 0):
            terms["mi_sz"] = mws_mutual_info(out.s, out.s_mean, out.s_logvar, out.z, out.z_mean,
                                             out.z_logvar, dataset_size)
    loss = sum((getattr(weights, name) * value.float() for name, value in terms.items()
                if getattr(weights, name) > 0), x.new_zeros((), dtype=torch.float32))
    terms = {name: value.detach() for name, value in terms.items()}
    terms["loss"] = loss.detach()
    return loss, terms
