"""The CTC recogniser network, best-path decoding, batched recognition and the saved-model file.

``CTCRecogniser``: per-dimension input normalisation (mean/std buffers), masking of the padding,
optional frame stacking (subsampling by ``subsample``), a linear or kernel-3 convolutional
front-end, a packed BiLSTM and a linear layer over the blank (id 0) and the units. Padding has
no effect on the valid frames: the padded frames are zeroed after normalisation, the convolution
sees zeros past the end exactly as it does for a lone utterance, and the backward LSTM of each
layer reads every sequence reversed within its own length (``BiLSTM``).

The training loop, the configuration and the scores are in ``cdsvae.eval.judges.ctc``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from cdsvae.eval.judges.units import Units
from cdsvae.io import UserError, atomic_open

FORMAT = "cdsvae-ctc-recogniser"
FRONTENDS = ("linear", "conv")


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, F) with frames 0..len-1 of each row reversed and the padding left in place."""
    B, T = x.shape[:2]
    t = torch.arange(T).unsqueeze(0).expand(B, T)
    n = lengths.unsqueeze(1)
    idx = torch.where(t < n, n - 1 - t, t).to(x.device)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


class BiLSTM(nn.Module):
    """A stacked bidirectional LSTM over padded batches, one unidirectional LSTM per direction and
    layer. The backward one runs on the sequences reversed within their lengths, so the valid
    outputs never see padding. Same result as ``nn.LSTM(bidirectional=True)`` on a packed batch,
    but on the dense CPU kernels, which are several times faster than the packed path there."""

    def __init__(self, input_size: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        sizes = [input_size] + [2 * hidden] * (layers - 1)
        self.fwd = nn.ModuleList(nn.LSTM(n, hidden, batch_first=True) for n in sizes)
        self.bwd = nn.ModuleList(nn.LSTM(n, hidden, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for k, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd)):
            if k:
                x = self.dropout(x)
            forward_out, _ = fwd(x)
            backward_out, _ = bwd(reverse_within(x, lengths))
            x = torch.cat([forward_out, reverse_within(backward_out, lengths)], dim=-1)
        return x


class CTCRecogniser(nn.Module):
    """(B, T, input_dim) features -> (B, ceil(T / subsample), n_classes) log-probabilities."""

    def __init__(self, input_dim: int, n_classes: int, hidden: int = 128, layers: int = 2,
                 dropout: float = 0.1, proj: int = 128, subsample: int = 1, frontend: str = "conv"):
        super().__init__()
        if frontend not in FRONTENDS:
            raise UserError(f"ctc frontend must be one of {FRONTENDS}, got {frontend!r}")
        if input_dim < 1 or n_classes < 2 or subsample < 1 or hidden < 1 or layers < 1 or proj < 1:
            raise UserError(f"ctc recogniser: invalid sizes (input_dim={input_dim}, n_classes={n_classes}, "
                            f"hidden={hidden}, layers={layers}, proj={proj}, subsample={subsample})")
        self.config = {"input_dim": int(input_dim), "n_classes": int(n_classes), "hidden": int(hidden),
                       "layers": int(layers), "dropout": float(dropout), "proj": int(proj),
                       "subsample": int(subsample), "frontend": frontend}
        self.subsample = int(subsample)
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("std", torch.ones(input_dim))
        stacked = input_dim * self.subsample
        if frontend == "conv":
            self.front = nn.Conv1d(stacked, proj, kernel_size=3, padding=1)
        else:
            self.front = nn.Linear(stacked, proj)
        self.front_dropout = nn.Dropout(dropout)
        self.lstm = BiLSTM(proj, hidden, layers, dropout)
        self.out_dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, n_classes)

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).clamp_min(1e-5))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.subsample - 1, self.subsample, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor,
                mask_fn=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities (B, T', n_classes) and their lengths T' (CPU int64). ``mask_fn``, if
        given, is applied to the normalised, padding-zeroed features (SpecAugment in training)."""
        lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu()
        B, T, D = x.shape
        valid = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).to(x.device)
        x = (x - self.mean) / self.std * valid.unsqueeze(-1).to(x.dtype)
        if mask_fn is not None:
            x = mask_fn(x, lengths)
        s = self.subsample
        if s > 1:
            pad = (-T) % s
            if pad:
                x = torch.nn.functional.pad(x, (0, 0, 0, pad))
            x = x.reshape(B, (T + pad) // s, D * s)
        if isinstance(self.front, nn.Conv1d):
            h = self.front(x.transpose(1, 2)).transpose(1, 2)
        else:
            h = self.front(x)
        h = self.front_dropout(torch.relu(h))
        out_lengths = self.output_lengths(lengths)
        y = self.lstm(h, out_lengths)
        return self.out(self.out_dropout(y)).log_softmax(dim=-1), out_lengths


def greedy_decode(log_probs: torch.Tensor, lengths: Sequence[int] | torch.Tensor) -> list[list[int]]:
    """Best-path decoding of (B, T, C) scores: the argmax per frame over the first ``lengths[b]``
    frames, repeats collapsed, then blanks (id 0) dropped ("a a _ a" -> "a a")."""
    best = torch.as_tensor(log_probs).argmax(dim=-1).cpu()
    out = []
    for b, n in enumerate(torch.as_tensor(lengths).tolist()):
        path = best[b, :int(n)]
        if path.numel() == 0:
            out.append([])
            continue
        collapsed = torch.unique_consecutive(path)
        out.append([int(i) for i in collapsed.tolist() if i != 0])
    return out


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (longest first) cut into batches of ``batch_size``."""
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def pad_batch(inputs: Sequence[np.ndarray], idx: Sequence[int],
              device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, T_max, D) float32 tensor of ``inputs[idx]`` and their lengths."""
    arrays = [np.asarray(inputs[i], dtype=np.float32) for i in idx]
    lengths = torch.tensor([a.shape[0] for a in arrays], dtype=torch.int64)
    x = torch.zeros(len(arrays), int(lengths.max()), arrays[0].shape[1])
    for b, a in enumerate(arrays):
        x[b, :a.shape[0]] = torch.tensor(a)  # a copy: inputs may be read-only views (e.g. memory-mapped)
    return x.to(device), lengths


def check_inputs(inputs: Sequence[np.ndarray], input_dim: int | None = None) -> int:
    """The common feature dimension of (T, D) arrays with T >= 1; anything else is a UserError."""
    if len(inputs) == 0:
        raise UserError("ctc: no input sequences")
    for i, a in enumerate(inputs):
        shape = np.shape(a)
        if len(shape) != 2 or shape[0] < 1:
            raise UserError(f"ctc: input {i} has shape {shape}, expected (frames >= 1, dim)")
        if input_dim is None:
            input_dim = shape[1]
        elif shape[1] != input_dim:
            raise UserError(f"ctc: input {i} has dimension {shape[1]}, expected {input_dim}")
    return int(input_dim)


@torch.no_grad()
def recognise_ids(model: CTCRecogniser, inputs: Sequence[np.ndarray], batch_size: int = 32) -> list[list[int]]:
    """Best-path class ids of every input, in input order (batched by length, eval mode)."""
    check_inputs(inputs, model.config["input_dim"])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hyps: list[list[int]] = [[] for _ in inputs]
    try:
        for idx in length_batches([np.shape(a)[0] for a in inputs], max(1, int(batch_size))):
            x, lengths = pad_batch(inputs, idx, device)
            log_probs, out_lengths = model(x, lengths)
            for i, hyp in zip(idx, greedy_decode(log_probs, out_lengths)):
                hyps[i] = hyp
    finally:
        model.train(was_training)
    return hyps


def recognise(model: CTCRecogniser, inputs: Sequence[np.ndarray], units: Units,
              batch_size: int = 32) -> list[list[str]]:
    """The recognised unit sequence of every input, in input order."""
    return [units.decode(h) for h in recognise_ids(model, inputs, batch_size)]


def save_recogniser(path: str | os.PathLike, model: CTCRecogniser, units: Units,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write the model (config, weights, units) atomically; it loads with ``weights_only=True``.
    ``extra`` must hold plain values (numbers, strings, lists, dicts, tensors)."""
    if units.n_classes != model.config["n_classes"]:
        raise UserError(f"{path}: {len(units)} units do not fit a recogniser with "
                        f"{model.config['n_classes']} output classes")
    state = {"format": FORMAT, "config": dict(model.config), "units": units.to_list(),
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "extra": dict(extra or {})}
    path = Path(path)
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    return path


def load_recogniser(path: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> tuple[CTCRecogniser, Units, dict[str, Any]]:
    """(model in eval mode on ``device``, its units, the ``extra`` it was saved with); a missing,
    corrupt or foreign file is a one-line UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such recogniser file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise UserError(f"{path}: not a CTC recogniser file (no '{FORMAT}' marker)")
        model = CTCRecogniser(**state["config"])
        model.load_state_dict(state["state_dict"])
        units = Units.from_list(state["units"])
        extra = dict(state.get("extra") or {})
    except UserError as e:
        msg = str(e)
        raise UserError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except Exception as e:  # truncated, corrupt or foreign: say which file
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(f"{path}: not a readable CTC recogniser ({type(e).__name__}: {first})") from None
    if units.n_classes != model.config["n_classes"]:
        raise UserError(f"{path}: {len(units)} units for {model.config['n_classes']} output classes")
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as e:
        raise UserError(f"{path}: cannot move the recogniser to device {device!r}: {e}") from None
    return model.eval(), units, extra
