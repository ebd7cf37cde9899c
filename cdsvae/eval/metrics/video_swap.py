"""The video judge's swap protocols A (keep z, resample s) and B (keep s, resample z) on a trained model.

``evaluate_swap_protocols`` decodes swapped or resampled factors of a labelled test set and asks the
judge (:mod:`cdsvae.eval.judges.video`) what it sees: per dynamic factor the accuracy, IS, H(y|x) and
H(y), per static factor the accuracy, each as mean and std over seeded draws.
"""

from __future__ import annotations

import inspect
import math
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cdsvae.eval.judges.video import (JudgeClassifier, _labels_of, accuracy, balanced_indices, conditional_entropy,
                                      inception_score, marginal_entropy)
from cdsvae.io import UserError


def _field(obj, name: str):
    v = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    if v is None:
        raise UserError(f"judge protocols: the model's encode() output has no field '{name}'")
    return v


def _as_tensor(v, what: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    raise UserError(f"judge protocols: model.{what} returned {type(v).__name__}, expected a tensor")


def _seeded(seed: int, device) -> torch.Generator:
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def sample_with(fn, generator: torch.Generator, *args):
    """Call a model sampler with ``generator=`` when it takes one, else under a seeded global RNG."""
    if "generator" in inspect.signature(fn).parameters:
        return fn(*args, generator=generator)
    torch.manual_seed(generator.initial_seed())
    return fn(*args)


def _mean_std(values: Sequence[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "draws": [float(v) for v in a]}


def _judged_draws(model, judge: JudgeClassifier, dataset: Dataset, dyn: list[str], sta: list[str], n_draws: int,
                  batch_size: int, seed: int, device: torch.device, progress: bool) -> dict:
    """The judge's class probabilities of every test batch: on the real sequences, their reconstructions and,
    per draw, protocol A's (dynamic factors) and B's (static factors) decodings; the true labels."""
    names = dyn + sta
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)

    def judge_probs(x):
        logits = judge(x)
        return {n: F.softmax(logits[n].float(), dim=1).cpu() for n in names}

    truth: dict[str, list] = {n: [] for n in names}
    real: dict[str, list] = {n: [] for n in names}
    recon: dict[str, list] = {n: [] for n in names}
    proto_a = [{n: [] for n in dyn} for _ in range(n_draws)]
    proto_b = [{n: [] for n in sta} for _ in range(n_draws)]
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="judge protocols", leave=False, disable=None)
    for bi, batch in enumerate(batches):
        x = batch["x"].to(device)
        B, T = x.shape[:2]
        labels = _labels_of(batch, names, "cpu")
        for n in names:
            truth[n].append(labels[n])
        enc = model.encode(x)
        s_mean, z_mean = _field(enc, "s_mean"), _field(enc, "z_mean")
        for n, p in judge_probs(x).items():
            real[n].append(p)
        for n, p in judge_probs(model.decode(s_mean, z_mean)).items():
            recon[n].append(p)
        for d in range(n_draws):
            # One seed per (draw, batch): a draw is reproducible on its own.
            gen = _seeded(seed + 1_000_003 * d + bi, device)
            if dyn:
                s = _as_tensor(sample_with(model.sample_s, gen, B), "sample_s(n)").to(device)
                p = judge_probs(model.decode(s, z_mean))
                for n in dyn:
                    proto_a[d][n].append(p[n])
            if sta:
                z = _as_tensor(sample_with(model.sample_z_prior, gen, B, T), "sample_z_prior(n, T)").to(device)
                p = judge_probs(model.decode(s_mean, z))
                for n in sta:
                    proto_b[d][n].append(p[n])
    return {"truth": truth, "real": real, "recon": recon, "A": proto_a, "B": proto_b}


@torch.no_grad()
def evaluate_swap_protocols(model, judge: JudgeClassifier, dataset: Dataset, *, n_draws: int = 5,
                            batch_size: int = 64, seed: int = 0, balanced: bool = True,
                            device: str | torch.device = "cpu", progress: bool = False) -> dict:
    """The judge's view of a trained sequential VAE on a labelled test set.

    - protocol A: keep the posterior mean of z_1:T, draw s ~ N(0, I), decode; classify every dynamic
      factor: accuracy against the true label, and IS, H(y|x), H(y) (on a class-balanced subset of the
      true labels when ``balanced``);
    - protocol B: keep the posterior mean of s, draw z_1:T from the learned prior, decode; accuracy of
      every static factor.
    Draws are seeded from ``seed`` (per draw and batch, passed to the model's samplers as a
    torch.Generator); results are the mean and std (ddof=1) over draws. The judge's accuracy on the real sequences and on plain
    reconstructions (s and z posterior means) is reported as the ceiling.
    """
    if n_draws < 1:
        raise UserError(f"judge protocols: n_draws must be >= 1, got {n_draws}")
    device = torch.device(device)
    model.eval()
    judge.eval()
    dyn = [f.name for f in judge.factors if f.kind == "dynamic"]
    sta = [f.name for f in judge.factors if f.kind == "static"]
    names = dyn + sta
    probs = _judged_draws(model, judge, dataset, dyn, sta, n_draws, batch_size, seed, device, progress)
    truth, real, recon, proto_a, proto_b = (probs[k] for k in ("truth", "real", "recon", "A", "B"))
    if not truth[names[0]]:
        raise UserError("judge protocols: empty test set")
    y = {n: torch.cat(v) for n, v in truth.items()}
    result: dict = {
        "n_sequences": int(y[names[0]].shape[0]),
        "n_draws": n_draws,
        "seed": seed,
        "balanced": balanced,
        "reference": {
            "real": {n: accuracy(torch.cat(real[n]), y[n]) for n in names},
            "recon": {n: accuracy(torch.cat(recon[n]), y[n]) for n in names},
        },
        "protocol_A": {},
        "protocol_B": {},
    }
    for n in dyn:
        idx = balanced_indices(y[n]) if balanced else torch.arange(y[n].shape[0])
        acc, is_, hyx, hy = [], [], [], []
        for d in range(n_draws):
            p = torch.cat(proto_a[d][n])
            acc.append(accuracy(p, y[n]))
            is_.append(inception_score(p[idx]))
            hyx.append(conditional_entropy(p[idx]))
            hy.append(marginal_entropy(p[idx]))
        result["protocol_A"][n] = {"acc": _mean_std(acc), "is": _mean_std(is_), "h_yx": _mean_std(hyx),
                                   "h_y": _mean_std(hy), "num_classes": judge.heads[n].out_features,
                                   "max_is": judge.heads[n].out_features,
                                   "max_h_y": math.log(judge.heads[n].out_features)}
    for n in sta:
        acc = [accuracy(torch.cat(proto_b[d][n]), y[n]) for d in range(n_draws)]
        result["protocol_B"][n] = {"acc": _mean_std(acc), "num_classes": judge.heads[n].out_features}
    return result
