"""The judge: a supervised video classifier that scores generated sequences, and its metrics.

Disentanglement of a video model is measured by decoding swapped or resampled factors and asking a
separately trained classifier what it sees (protocols A and B, :mod:`cdsvae.eval.metrics.video_swap`). The
classifier mirrors the model's 64x64 frame encoder followed by a bidirectional LSTM, with one
softmax head per labelled factor.

Metrics on a matrix of predicted class probabilities p (N, K), natural logarithms:

- ``inception_score``: exp E_x[KL(p(y|x) || p(y))], p(y) the mean prediction; 1 (uninformative) .. K;
- ``conditional_entropy`` H(y|x): mean entropy of the rows (low: confident predictions);
- ``marginal_entropy`` H(y): entropy of the mean row (ln K: all classes produced equally).

Note log IS = H(y) - H(y|x).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cdsvae.data.video import Factor, parse_factors
from cdsvae.io import UserError, atomic_open
from cdsvae.train.steploop import EpochCheckpoint, EpochRun, StepLoop

JUDGE_FILE = "judge.pt"


def _check_probs(p: torch.Tensor, name: str = "probabilities") -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64)
    if p.dim() != 2 or p.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty (N, K) matrix, got shape {tuple(p.shape)}")
    if (p < 0).any() or not torch.allclose(p.sum(dim=1), torch.ones(p.shape[0], dtype=p.dtype), atol=1e-4):
        raise ValueError(f"{name}: rows must be non-negative and sum to 1")
    return p


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of correct predictions; ``pred`` is (N, K) scores/probabilities or (N,) classes."""
    pred = torch.as_tensor(pred)
    labels = torch.as_tensor(labels).long().view(-1)
    if pred.dim() == 2:
        pred = pred.argmax(dim=1)
    if pred.shape != labels.shape or labels.numel() == 0:
        raise ValueError(f"accuracy: {tuple(pred.shape)} predictions for {tuple(labels.shape)} labels")
    return float((pred.long() == labels).double().mean())


def conditional_entropy(p: torch.Tensor) -> float:
    """H(y|x) = mean over rows of -sum_y p log p (0 log 0 = 0)."""
    p = _check_probs(p)
    return float(-torch.special.xlogy(p, p).sum(dim=1).mean())


def marginal_entropy(p: torch.Tensor) -> float:
    """H(y) of the mean prediction p(y) = mean over rows."""
    p = _check_probs(p)
    m = p.mean(dim=0)
    return float(-torch.special.xlogy(m, m).sum())


def inception_score(p: torch.Tensor) -> float:
    """exp of the mean over rows of KL(p(y|x) || p(y))."""
    p = _check_probs(p)
    m = p.mean(dim=0, keepdim=True)
    # Where p(y|x) > 0, p(y) > 0 too, so the log ratio is finite wherever it is weighted.
    kl = (torch.special.xlogy(p, p) - torch.special.xlogy(p, m.expand_as(p))).sum(dim=1)
    return float(torch.exp(kl.mean()))


def balanced_indices(labels: torch.Tensor) -> torch.Tensor:
    """The first n items of every class present, n the smallest class count (sorted indices).

    IS and H(y) depend on the class balance of the evaluated set, so they are computed on an equal
    number of sequences per true class.
    """
    labels = torch.as_tensor(labels).long().view(-1)
    classes, counts = torch.unique(labels, return_counts=True)
    n = int(counts.min())
    idx = [torch.nonzero(labels == c).view(-1)[:n] for c in classes]
    return torch.sort(torch.cat(idx)).values


class FrameEncoder(nn.Module):
    """DCGAN-style stack: [conv 4x4 stride 2, BatchNorm, LeakyReLU 0.2] per width, then a 4x4 conv to
    ``out_dim`` with BatchNorm and tanh (64x64 frames end at 4x4 before the last conv)."""

    def __init__(self, in_channels: int, channels: Sequence[int], out_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            layers += [nn.Conv2d(prev, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)]
            prev = c
        layers += [nn.AdaptiveAvgPool2d(4), nn.Conv2d(prev, out_dim, 4, 1, 0, bias=False),
                   nn.BatchNorm2d(out_dim), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames).flatten(1)


class JudgeClassifier(nn.Module):
    """Frames -> per-frame embedding -> BiLSTM -> one linear head per factor.

    Every head reads the sequence summary [last forward state, first backward state, mean output]:
    static factors need the whole sequence, and so does a per-sequence motion class.
    """

    def __init__(self, factors: Sequence[Factor | Mapping], in_channels: int = 3,
                 channels: Sequence[int] = (32, 64, 128, 256), g_dim: int = 128, hidden_dim: int = 128):
        super().__init__()
        self.factors = parse_factors(list(factors), "judge factors")
        self.config = {
            "factors": [f.as_dict() for f in self.factors],
            "in_channels": int(in_channels),
            "channels": [int(c) for c in channels],
            "g_dim": int(g_dim),
            "hidden_dim": int(hidden_dim),
        }
        self.encoder = FrameEncoder(in_channels, channels, g_dim)
        self.rnn = nn.LSTM(g_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.heads = nn.ModuleDict({f.name: nn.Linear(4 * hidden_dim, f.num_classes) for f in self.factors})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 5 or x.shape[2] != self.config["in_channels"]:
            raise UserError(
                f"judge: expected (B, T, {self.config['in_channels']}, H, W) frames, got shape {tuple(x.shape)}"
            )
        B, T = x.shape[:2]
        g = self.encoder(x.reshape(B * T, *x.shape[2:])).view(B, T, -1)
        out, _ = self.rnn(g)
        H = out.shape[-1] // 2
        summary = torch.cat([out[:, -1, :H], out[:, 0, H:], out.mean(dim=1)], dim=1)
        return {name: head(summary) for name, head in self.heads.items()}


def _labels_of(batch: Mapping, names: Sequence[str], device) -> dict[str, torch.Tensor]:
    labels = batch.get("labels")
    if not isinstance(labels, Mapping):
        raise UserError("judge: the dataset items carry no 'labels' dict")
    missing = [n for n in names if n not in labels]
    if missing:
        raise UserError(f"judge: the dataset has no labels for factors {missing}")
    return {n: labels[n].to(device) for n in names}


def train_judge(model: JudgeClassifier, train_set: Dataset, *, epochs: int = 5, batch_size: int = 64,
                lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
                log: Callable[[str], None] | None = None, progress: bool = False,
                workdir: str | os.PathLike | None = None, stamp: Mapping | None = None) -> list[float]:
    """Adam on the sum of the heads' cross-entropies; returns the mean training loss per epoch. With
    ``workdir``, resumable (``cdsvae.train.steploop.EpochCheckpoint``, ``stamp`` naming the data)."""
    model.to(device).train()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=gen, drop_last=False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    names = [f.name for f in model.factors]

    def step(batch):
        x, labels = batch["x"].to(device), _labels_of(batch, names, device)
        logits = model(x)
        return sum(F.cross_entropy(logits[n], labels[n]) for n in names), x.shape[0], {}
    ckpt = EpochCheckpoint(workdir, {"stamp": stamp, "model": model.config, "lr": lr, "batch_size": batch_size,
                                     "seed": seed, "n": len(train_set)}, {"model": model, "opt": opt}, {"loader": gen})
    start, history = ckpt.resume(epochs)
    run = EpochRun(StepLoop(model.parameters(), opt), "judge", epochs, start, len(loader), progress=progress,
                   logdir=workdir, checkpoint=ckpt.path)
    try:
        for epoch in range(start, epochs):
            history.append(run.run_epoch(epoch, loader, step)["loss"])
            run.end_epoch({"loss": history[-1]})
            ckpt.save(epoch + 1, history)
            if log:
                log(f"judge epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}")
    finally:
        run.close()
    model.eval()
    return history


@torch.no_grad()
def predict_probs(model: JudgeClassifier, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Softmax of every head on a tensor of sequences (B, T, C, H, W), on CPU."""
    model.eval()
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {f.name: [] for f in model.factors}
    for i in range(0, x.shape[0], batch_size):
        logits = model(x[i:i + batch_size].to(device))
        for n, v in logits.items():
            parts[n].append(F.softmax(v.float(), dim=1).cpu())
    return {n: torch.cat(v) for n, v in parts.items()}


@torch.no_grad()
def evaluate_judge(model: JudgeClassifier, dataset: Dataset, batch_size: int = 128) -> dict[str, float]:
    """Accuracy of every head on a labelled dataset."""
    model.eval()
    device = next(model.parameters()).device
    names = [f.name for f in model.factors]
    correct = {n: 0 for n in names}
    count = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        logits = model(batch["x"].to(device))
        labels = _labels_of(batch, names, device)
        for n in names:
            correct[n] += int((logits[n].argmax(dim=1) == labels[n]).sum())
        count += batch["x"].shape[0]
    if count == 0:
        raise UserError("judge: empty evaluation set")
    return {n: correct[n] / count for n in names}


def save_judge(directory: str | os.PathLike, model: JudgeClassifier, extra: Mapping | None = None) -> Path:
    """Write ``directory/judge.pt`` atomically (plain tensors and built-in types only, so it loads
    with ``weights_only=True``)."""
    path = Path(directory) / JUDGE_FILE
    state = {
        "config": model.config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    return path


def load_judge_with_extra(directory: str | os.PathLike,
                          device: str | torch.device = "cpu") -> tuple[JudgeClassifier, dict]:
    """The judge saved in ``directory/judge.pt`` on ``device``, and the ``extra`` it was saved with.

    A missing, truncated or foreign file, or a device the judge cannot be moved to, is a
    UserError naming the file."""
    path = Path(directory) / JUDGE_FILE
    if not path.is_file():
        raise UserError(f"{path}: no trained judge (run the judge training stage first)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        cfg = state["config"]
        model = JudgeClassifier(cfg["factors"], cfg["in_channels"], cfg["channels"], cfg["g_dim"], cfg["hidden_dim"])
        model.load_state_dict(state["state_dict"])
        extra = dict(state.get("extra") or {})
    except UserError:
        raise
    except Exception as e:  # a truncated or foreign file: say which one
        raise UserError(f"{path}: not a readable judge checkpoint ({e.__class__.__name__}: {_first_line(e)})") from None
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as e:  # no such device, no driver, torch built without it
        raise UserError(f"{path}: cannot move the judge to device {device!r}: {_first_line(e)}") from None
    return model.eval(), extra


def load_judge(directory: str | os.PathLike, device: str | torch.device = "cpu") -> JudgeClassifier:
    return load_judge_with_extra(directory, device)[0]


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else e.__class__.__name__
