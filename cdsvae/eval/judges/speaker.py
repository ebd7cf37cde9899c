"""The speaker judge: a supervised speaker-embedding network that the speech evaluation trusts.

It serves twice: as the "supervised reference" row of the speaker-verification table (the EER
of its embeddings on the test trials) and as the ear that decides which speaker a voice-swapped
log-mel spectrogram sounds like. Every input is a raw log-mel matrix ``(T, n_mels)`` float32 as
the feature stage writes it (``cdsvae.fbank``).

Two kinds of judge share one interface (``embed(mats) -> (N, D)`` and ``name``):

* ``SpeakerJudge``, trained in the recipe by ``train_speaker_judge``: speechbrain's ECAPA-TDNN
  with its cosine ``Classifier`` and an additive angular margin (AAM) softmax, all speechbrain's
  own code. It normalises its inputs with the recipe's global CMVN statistics, which it keeps in
  ``judge.pt`` (plain tensors and Python values, read with ``weights_only=True``). Training saves
  ``checkpoint.pt`` after every epoch and resumes from it; the learning rate decays by
  ``lr_decay`` per epoch, independent of the total, and every epoch seeds the random number
  generators of all devices from (seed, epoch), so a run stopped after epoch k and resumed to n
  gives the same weights as n epochs at once, with no RNG state in the checkpoint (on the CPU
  bit for bit; on a GPU up to its non-deterministic kernels).
* ``SpeechBrainSpeakerJudge`` (``cdsvae.eval.judges.speechbrain``, re-exported here): a
  pretrained speechbrain speaker model directory (say an ECAPA trained on VoxCeleb). It listens
  to Griffin-Lim audio made from the log-mel matrices, real and converted utterances alike.

``load_speaker_judge`` picks the kind from what a path names; ``embed_feature_dir`` embeds the
utterances of a feature dir's ``feats.scp``.

ECAPA's convolutions see padded frames (only its pooling and squeeze-excitation are masked), so
``embed`` batches only utterances of equal length: a batched embedding equals the one-at-a-time one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from cdsvae.eval.judges.config import SpeakerJudgeConfig  # noqa: F401  (re-exported)
from cdsvae.eval.judges.speechbrain import (  # noqa: F401  (SpeechBrainSpeakerJudge: re-exported)
    SpeechBrainSpeakerJudge,
    check_logmel_inputs,
    equal_length_batches,
    first_line,
)
from cdsvae.io import UserError, atomic_open
from cdsvae.train.steploop import EpochRun, StepLoop, seeded_epoch

log = logging.getLogger(__name__)

JUDGE_FILE = "judge.pt"
CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "cdsvae-speaker-judge"


def _build(cfg: SpeakerJudgeConfig, input_size: int, n_speakers: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier

    ecapa = ECAPA_TDNN(
        input_size, lin_neurons=int(cfg.lin_neurons), channels=[int(c) for c in cfg.channels],
        kernel_sizes=[int(k) for k in cfg.kernel_sizes], dilations=[int(d) for d in cfg.dilations],
        attention_channels=int(cfg.attention_channels), res2net_scale=int(cfg.res2net_scale),
        se_channels=int(cfg.se_channels),
    )
    return ecapa, Classifier(int(cfg.lin_neurons), lin_neurons=int(cfg.lin_neurons), out_neurons=n_speakers)


def _cmvn_arrays(cmvn) -> tuple[np.ndarray, np.ndarray]:
    mean, std = (cmvn.mean, cmvn.std) if hasattr(cmvn, "apply") else cmvn
    mean, std = np.asarray(mean, dtype=np.float32).ravel(), np.asarray(std, dtype=np.float32).ravel()
    if mean.shape != std.shape or not (std > 0).all():
        raise UserError(f"speaker judge: CMVN mean {mean.shape} and std {std.shape} must match and std be positive")
    return mean, std


class SpeakerJudge:
    """The in-recipe ECAPA-TDNN judge: raw log-mel matrices in, speaker embeddings out."""

    def __init__(self, cfg: SpeakerJudgeConfig, ecapa: torch.nn.Module, speakers: Sequence[str],
                 cmvn_mean: np.ndarray, cmvn_std: np.ndarray, device: str | torch.device = "cpu",
                 epochs_trained: int | None = None, history: Sequence[Mapping] = ()):
        self.cfg, self.speakers = cfg, list(speakers)
        self.history = [dict(h) for h in history]  # per epoch: epoch, loss, accuracy, lr
        self.device = torch.device(device)
        self.ecapa = ecapa.to(self.device).eval()
        self.mean = torch.as_tensor(cmvn_mean, dtype=torch.float32, device=self.device)
        self.std = torch.as_tensor(cmvn_std, dtype=torch.float32, device=self.device)
        self.feat_dim = int(self.mean.numel())
        self.epochs_trained = int(cfg.epochs if epochs_trained is None else epochs_trained)

    @property
    def name(self) -> str:
        c = self.cfg
        return (f"ECAPA-TDNN speaker judge (channels {list(c.channels)}, {c.lin_neurons}-dim, AAM m={c.margin} "
                f"s={c.scale}, {len(self.speakers)} training speakers, {self.epochs_trained} epochs)")

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "SpeakerJudge":
        """A judge saved by ``train_speaker_judge``; a missing or unreadable file is a UserError naming it."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no trained speaker judge")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("format") != FORMAT:
                raise ValueError("not a speaker judge file")
            cfg = SpeakerJudgeConfig.from_dict(state["config"])
            ecapa, _ = _build(cfg, int(state["cmvn_mean"].numel()), len(state["speakers"]))
            ecapa.load_state_dict(state["embedding_model"])
            judge = cls(cfg, ecapa, state["speakers"], state["cmvn_mean"].numpy(), state["cmvn_std"].numpy(),
                        "cpu", state.get("epochs"), state.get("history", ()))
        except Exception as e:  # truncated, foreign or from another version: say which file
            raise UserError(f"{path}: not a readable speaker judge ({e.__class__.__name__}: {first_line(e)})") from None
        try:
            return judge.to(device)
        except (RuntimeError, AssertionError) as e:
            raise UserError(f"{path}: cannot move the speaker judge to device {device!r}: {first_line(e)}") from None

    def to(self, device) -> "SpeakerJudge":
        self.device = torch.device(device)
        self.ecapa.to(self.device)
        self.mean, self.std = self.mean.to(self.device), self.std.to(self.device)
        return self

    @torch.no_grad()
    def embed(self, mats: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """``(N, lin_neurons)`` embeddings of raw log-mel matrices, in input order."""
        mats = check_logmel_inputs(mats, self.feat_dim, self.cfg.min_frames())
        out = np.zeros((len(mats), int(self.cfg.lin_neurons)), dtype=np.float32)
        self.ecapa.eval()
        for idx in equal_length_batches([m.shape[0] for m in mats], batch_size):
            x = torch.from_numpy(np.stack([mats[i] for i in idx])).to(self.device)
            emb = self.ecapa((x - self.mean) / self.std)
            out[idx] = emb.squeeze(1).float().cpu().numpy()
        return out


# ---------------------------------------------------------------- training


def _fingerprint(cfg: SpeakerJudgeConfig, utts: Sequence[str], speakers: Sequence[str], mean, std) -> str:
    """What a checkpoint must agree on to be resumed: the config (bar epochs), data and CMVN."""
    d = asdict(cfg)
    d.pop("epochs")
    h = hashlib.sha256(repr(sorted(d.items())).encode())
    h.update("\n".join(utts).encode())
    h.update("\n".join(speakers).encode())
    h.update(np.ascontiguousarray(mean).tobytes() + np.ascontiguousarray(std).tobytes())
    return h.hexdigest()


def _save(obj, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def _batch(mats: list[np.ndarray], crop: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops of at most ``crop`` frames, zero-padded (zero is the CMVN mean), with relative lengths."""
    cut = []
    for m in mats:
        start = int(rng.integers(0, m.shape[0] - crop + 1)) if m.shape[0] > crop else 0
        cut.append(m[start:start + crop])
    longest = max(c.shape[0] for c in cut)
    x = np.zeros((len(cut), longest, cut[0].shape[1]), dtype=np.float32)
    for i, c in enumerate(cut):
        x[i, :c.shape[0]] = c
    lengths = torch.tensor([c.shape[0] / longest for c in cut], dtype=torch.float32)
    return torch.from_numpy(x), lengths


def train_speaker_judge(feats: Mapping[str, np.ndarray], utt2spk: Mapping[str, str], cmvn,
                        cfg: SpeakerJudgeConfig, workdir: str | os.PathLike, device: str = "cpu",
                        progress: bool = True) -> SpeakerJudge:
    """Train the judge on raw log-mel ``feats`` labelled by ``utt2spk``; write ``workdir/judge.pt``.

    ``cmvn`` is a ``CMVNStats`` or a ``(mean, std)`` pair. ``workdir/checkpoint.pt`` is written
    after each epoch and resumed from when it matches this config (``epochs`` may grow), data
    and CMVN; another one is an error. The result is deterministic for a seed on CPU. Training
    runs through :class:`cdsvae.train.steploop.EpochRun` (TensorBoard in ``workdir/tensorboard``).
    """
    workdir = Path(workdir)
    mean, std = _cmvn_arrays(cmvn)
    utts, mats, speakers, labels = _training_data(feats, utt2spk, cfg, mean, std)
    fingerprint = _fingerprint(cfg, utts, speakers, mean, std)
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        ecapa, classifier = _build(cfg, mean.size, len(speakers))
        ecapa, classifier = ecapa.to(dev), classifier.to(dev)
        history = _fit(cfg, ecapa, classifier, mats, labels, fingerprint, workdir, dev, progress)
    _save({"format": FORMAT, "config": asdict(cfg), "epochs": cfg.epochs, "speakers": speakers,
           "embedding_model": _cpu(ecapa.state_dict()), "classifier": _cpu(classifier.state_dict()),
           "cmvn_mean": torch.from_numpy(mean.copy()), "cmvn_std": torch.from_numpy(std.copy()),
           "history": history}, workdir / JUDGE_FILE)
    return SpeakerJudge(cfg, ecapa, speakers, mean, std, dev, cfg.epochs, history)


def _training_data(feats, utt2spk, cfg: SpeakerJudgeConfig, mean: np.ndarray, std: np.ndarray):
    """(utterances, their CMVN-normalised matrices, speakers, speaker index of each utterance);
    utterances shorter than the network's widest padding are left out, with a warning."""
    min_frames = cfg.min_frames()
    missing = [u for u in sorted(feats) if u not in utt2spk]
    if missing:
        raise UserError(f"speaker judge: no speaker for utterance {missing[0]}")
    data, short = [], 0
    for u in sorted(feats):
        m = np.asarray(feats[u], dtype=np.float32)
        if m.ndim != 2 or m.shape[1] != mean.size:
            raise UserError(f"speaker judge: utterance {u} has shape {m.shape}, expected (frames, {mean.size})")
        if m.shape[0] < min_frames:
            short += 1
            continue
        data.append((u, (m - mean) / std))
    if short:
        log.warning("speaker judge: %d utterance(s) shorter than %d frames left out of training", short, min_frames)
    speakers = sorted({utt2spk[u] for u, _ in data})
    if len(speakers) < 2 or len(data) < 2:
        raise UserError(f"speaker judge: training needs at least 2 speakers and 2 utterances, got {len(speakers)} and {len(data)}")
    spk_index = {s: i for i, s in enumerate(speakers)}
    labels = torch.tensor([spk_index[utt2spk[u]] for u, _ in data])
    return [u for u, _ in data], [m for _, m in data], speakers, labels


def _resume(ckpt_path: Path, fingerprint: str, cfg: SpeakerJudgeConfig, ecapa, classifier, opt) -> tuple[int, list]:
    """Load ``checkpoint.pt`` into the networks and the optimiser: (epochs done, history)."""
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        same = ckpt["fingerprint"] == fingerprint
    except Exception as e:
        raise UserError(f"{ckpt_path}: unreadable checkpoint ({first_line(e)}); remove it to start over") from None
    if not same:
        raise UserError(f"{ckpt_path}: made with another config, data or CMVN; remove it to start over")
    if ckpt["epoch"] > cfg.epochs:
        raise UserError(f"{ckpt_path}: already {ckpt['epoch']} epochs, more than the {cfg.epochs} asked")
    ecapa.load_state_dict(ckpt["embedding_model"])
    classifier.load_state_dict(ckpt["classifier"])
    opt.load_state_dict(ckpt["optimizer"])
    log.info("speaker judge: resuming from %s after epoch %d", ckpt_path, int(ckpt["epoch"]))
    return int(ckpt["epoch"]), list(ckpt["history"])


def _fit(cfg: SpeakerJudgeConfig, ecapa, classifier, mats, labels, fingerprint: str, workdir: Path,
         dev: torch.device, progress: bool) -> list[dict]:
    """The epochs not in ``workdir/checkpoint.pt`` yet, each saved there; returns the history."""
    from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

    params = list(ecapa.parameters()) + list(classifier.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = LogSoftmaxWrapper(AdditiveAngularMargin(margin=cfg.margin, scale=cfg.scale))
    ckpt_path = workdir / CHECKPOINT_FILE
    start, history = _resume(ckpt_path, fingerprint, cfg, ecapa, classifier, opt) if ckpt_path.is_file() else (0, [])
    n_batches = sum(1 for s in range(0, len(mats), cfg.batch_size) if len(mats) - s >= 2)
    run = EpochRun(StepLoop(params, opt), "speaker judge", cfg.epochs, start, n_batches, logdir=workdir,
                   progress=progress, checkpoint=ckpt_path)

    def step(idx: np.ndarray, rng: np.random.Generator):
        x, lengths = _batch([mats[i] for i in idx], cfg.crop_frames, rng)
        y = labels[idx].to(dev)
        cos = classifier(ecapa(x.to(dev), lengths.to(dev)))  # (B, 1, n_speakers)
        return loss_fn(cos, y.unsqueeze(1)), len(idx), {"accuracy": int((cos.squeeze(1).argmax(1) == y).sum())}

    try:
        for epoch in range(start, cfg.epochs):
            lr = cfg.lr * cfg.lr_decay ** epoch
            for group in opt.param_groups:
                group["lr"] = lr
            with seeded_epoch(cfg.seed, epoch, dev):  # every device's generator
                rng = np.random.default_rng([cfg.seed, epoch])
                order = rng.permutation(len(mats))
                ecapa.train(), classifier.train()
                batches = [order[s:s + cfg.batch_size] for s in range(0, len(order), cfg.batch_size)]
                figures = run.run_epoch(epoch, [b for b in batches if len(b) >= 2],  # batch norm needs two
                                        lambda idx, rng=rng: step(idx, rng))
            history.append({"epoch": epoch + 1, "loss": figures["loss"], "accuracy": figures["accuracy"], "lr": lr})
            run.end_epoch(history[-1])
            log.info("speaker judge epoch %d/%d: loss %.4f, train accuracy %.3f, lr %.2e",
                     epoch + 1, cfg.epochs, figures["loss"], figures["accuracy"], lr)
            _save({"fingerprint": fingerprint, "epoch": epoch + 1, "history": history,
                   "embedding_model": _cpu(ecapa.state_dict()), "classifier": _cpu(classifier.state_dict()),
                   "optimizer": opt.state_dict()}, ckpt_path)
    finally:
        run.close()
    return history


def _cpu(state: Mapping[str, torch.Tensor]) -> dict:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def load_speaker_judge(spec: str | os.PathLike, fbank_cfg_path=None, device: str = "cpu",
                       n_iter: int = 32):
    """A ``judge.pt`` file (or a directory holding one) -> ``SpeakerJudge``; a directory with
    ``hyperparams.yaml`` -> ``SpeechBrainSpeakerJudge`` (features described by ``fbank_cfg_path``,
    Griffin-Lim with ``n_iter`` iterations); anything else is a UserError."""
    path = Path(spec)
    if path.is_file():
        return SpeakerJudge.load(path, device)
    if path.is_dir() and (path / "hyperparams.yaml").is_file():
        return SpeechBrainSpeakerJudge(path, fbank_cfg_path, device, n_iter)
    if path.is_dir() and (path / JUDGE_FILE).is_file():
        return SpeakerJudge.load(path / JUDGE_FILE, device)
    raise UserError(f"{path}: not a speaker judge (expected a {JUDGE_FILE} file or a speechbrain model "
                    "directory with hyperparams.yaml)")


def embed_feature_dir(judge, feats_dir: str | os.PathLike, utts: Sequence[str] | None = None,
                      progress: bool = False, chunk: int = 512) -> dict[str, np.ndarray]:
    """Judge embeddings of the utterances (all, or ``utts``) of ``feats_dir/feats.scp``, in C order."""
    from cdsvae.eval.metrics.embeddings import iter_feature_matrices, read_feature_table

    feats_dir = Path(feats_dir)
    table, _ = read_feature_table(feats_dir)
    if utts is not None:
        unknown = [u for u in utts if u not in table]
        if unknown:
            raise UserError(f"{feats_dir / 'feats.scp'}: no utterance {unknown[0]}")
        table = {u: table[u] for u in utts}
    out: dict[str, np.ndarray] = {}
    ids: list[str] = []
    mats: list[np.ndarray] = []

    def flush():
        for u, e in zip(ids, judge.embed(mats)):
            out[u] = e
        bar.update(len(ids))
        ids.clear(), mats.clear()

    with tqdm(total=len(table), desc="judge embeddings", unit="utt", disable=not progress) as bar:
        for utt, mat in iter_feature_matrices(table, feats_dir / "feats.scp", judge.feat_dim):
            ids.append(utt)
            mats.append(mat)
            if len(ids) >= chunk:
                flush()
        if ids:
            flush()
    return out
