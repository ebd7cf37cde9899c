"""Fixed-length segments of log-mel features (feats.scp) for training and evaluation.

Segments are cut here, not on disk: the training split draws ``segments_per_utt``
random segments per utterance per epoch (a pure function of seed, epoch and item
index, so any number of workers or processes sees the same data), the other splits
enumerate every non-overlapping segment from the first frame (a remainder shorter than
a segment is dropped, as in embedding extraction).  Features are read lazily with
kaldiio from the arks the scp points into, through a per-process cache of open files;
``in_memory: true`` loads them all once instead.

``data_cfg`` keys (``type``, ``train_split`` and ``valid_split`` belong to the trainer
and are ignored here):

``train_feats``, ``valid_feats`` (alias ``dev_feats``), ``test_feats`` or ``<split>_feats``
    feature dirs written by ``make_fbank``: feats.scp, utt2num_frames, utt2spk.
``motion_feats``
    voice-converted copies for the training split's motion view: a list of feature
    dirs, or one dir whose ``copy*`` subdirs are the copies (as ``world_vc`` writes
    them); or a mapping ``{split: dirs}`` to give other splits copies too.
``cmvn``
    global stats file from ``compute_cmvn_stats`` (npz or Kaldi matrix) applied to
    every split; null for none.
``segment_frames``
    frames per segment (see ``SPEECH_DATA``).
``segments_per_utt``
    random segments per utterance in one training epoch.
``seed``, ``skip_bad``, ``in_memory``
    segment draws; skip (and count) utterances shorter than a segment instead of
    failing; load all features into memory.

Items: ``{"x": (T, F) float32, "x_motion": (T, F) float32 (when copies are configured),
"utt": id, "spk": speaker index (sorted speaker ids of the split), "start": first frame}``,
plus ``"x_content"`` (T, F), another segment of the same utterance, with ``content_segment``
(the ``segment`` content view): in training a random one that does not overlap x where the
utterance is long enough (two segments), in the other splits the next segment of the
utterance (cyclically; x itself when the utterance has only one).

``item_groups()`` gives the utterance index of every item, which the trainer uses to keep
two segments of one utterance out of the same batch (``train.unique_utts_per_batch``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cdsvae.config import Field, Section, validate
from cdsvae.data.datadir import read_scp
from cdsvae.data.feats import CMVNStats, read_utt2num_frames
from cdsvae.io import UserError

log = logging.getLogger(__name__)

# The keys of ``data`` for ``data.type: speech``, declared once, here (besides the common ones of
# cdsvae.experiment.schema); any ``<split>_feats`` names the feature dir of that split.
SPEECH_DATA = Section({
    "train_feats": Field(None, "any"),
    "valid_feats": Field(None, "any"),
    "test_feats": Field(None, "any"),
    "motion_feats": Field(None, "any"),  # a dir, a list of dirs, or a mapping split -> dir(s)
    "cmvn": Field(None, "any"),
    # 20 frames = 200 ms at a 10 ms hop, the segment length DSVAE and FHVAE used for speech:
    # long enough to hold two or three phones (so z has dynamics to model and s hears the
    # speaker), short enough for many segments per utterance and cheap batches.
    "segment_frames": Field(20, "int", minimum=1),
    "segments_per_utt": Field(1, "int", minimum=1),
    "seed": Field(0, "int"),
    "skip_bad": Field(False, "bool"),
    "in_memory": Field(False, "bool"),
}, open=True)
_TRAINER_KEYS = {"type", "train_split", "valid_split"}
_ALIASES = {"dev": "valid", "valid": "dev"}


def _read_table(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise UserError(f"{path}: missing")
    return {key: value.strip() for key, value in read_scp(path).items()}


class FeatureSet:
    """A feature dir (feats.scp + utt2num_frames) read lazily with kaldiio, safely across worker processes."""

    def __init__(self, path: str | os.PathLike, in_memory: bool = False):
        self.path = Path(path)
        if not self.path.is_dir():
            raise UserError(f"feature dir not found: {self.path}")
        self.scp = _read_table(self.path / "feats.scp")
        self.num_frames = read_utt2num_frames(self.path / "utt2num_frames") \
            if (self.path / "utt2num_frames").is_file() else None
        if self.num_frames is None:
            raise UserError(f"{self.path / 'utt2num_frames'}: missing (make_fbank writes it)")
        missing = [u for u in self.scp if u not in self.num_frames]
        if missing:
            raise UserError(f"{self.path / 'utt2num_frames'}: no entry for {len(missing)} utterance(s) of "
                            f"feats.scp, e.g. {missing[0]}")
        self._fds: dict = {}
        self._pid = None
        self._cache: dict[str, np.ndarray] | None = None
        if in_memory:
            self._cache = {u: self._read(u) for u in self.scp}

    def _read(self, utt: str) -> np.ndarray:
        import kaldiio

        if self._pid != os.getpid():  # never share open files (and their offsets) with a forked parent
            self._fds, self._pid = {}, os.getpid()
        try:
            mat = kaldiio.load_mat(self.scp[utt], fd_dict=self._fds)
        except KeyError:
            raise UserError(f"{self.path / 'feats.scp'}: no utterance '{utt}'") from None
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read features of '{utt}' from {self.scp[utt]} ({self.path / 'feats.scp'}): "
                            f"{e}") from None
        return np.asarray(mat, dtype=np.float32)

    def load(self, utt: str) -> np.ndarray:
        if self._cache is not None:
            return self._cache[utt]
        return self._read(utt)

    def close(self) -> None:
        for f in self._fds.values():
            f.close()
        self._fds = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fds"], state["_pid"] = {}, None
        return state


def _motion_dirs(spec: Any) -> list[Path]:
    if spec is None:
        return []
    if isinstance(spec, (str, os.PathLike)):
        root = Path(spec)
        if (root / "feats.scp").is_file():
            return [root]
        copies = sorted((d for d in root.glob("copy*") if (d / "feats.scp").is_file()),
                        key=lambda d: (len(d.name), d.name))
        if not copies:
            raise UserError(f"motion_feats: {root} holds neither feats.scp nor copy*/feats.scp")
        return copies
    if isinstance(spec, Sequence):
        return [Path(p) for p in spec]
    raise UserError(f"motion_feats: expected a dir, a list of dirs or a mapping split -> dirs, got {spec!r}")


def _other_start(rng: np.random.Generator, num_frames: int, seg: int, start: int) -> int:
    """A random first frame of a segment that does not overlap [start, start + seg), if one fits."""
    before = max(0, start - seg + 1)  # starts 0 .. start - seg
    after = max(0, num_frames - seg - (start + seg) + 1)  # starts start + seg .. num_frames - seg
    if before + after == 0:
        return int(rng.integers(0, num_frames - seg + 1))
    k = int(rng.integers(0, before + after))
    return k if k < before else start + seg + (k - before)


def _mix(*values: int | str) -> int:
    text = "\x00".join(str(v) for v in values).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


class SpeechSegmentDataset(Dataset):
    """Fixed-length segments of one split; see the module docstring."""

    def __init__(self, feats_dir: str | os.PathLike, segment_frames: int = 20, train: bool = False,
                 segments_per_utt: int = 1, motion_dirs: Sequence[str | os.PathLike] = (),
                 cmvn: str | os.PathLike | None = None, seed: int = 0, skip_bad: bool = False,
                 in_memory: bool = False, content_segment: bool = False):
        if int(segment_frames) < 1:
            raise UserError(f"segment_frames must be >= 1, got {segment_frames}")
        if int(segments_per_utt) < 1:
            raise UserError(f"segments_per_utt must be >= 1, got {segments_per_utt}")
        self.segment_frames = int(segment_frames)
        self.segments_per_utt = int(segments_per_utt)
        self.train = bool(train)
        self.content_segment = bool(content_segment)
        self.seed = int(seed)
        self.epoch = 0
        self.feats = FeatureSet(feats_dir, in_memory)
        self.motion = [FeatureSet(d, in_memory) for d in motion_dirs]
        self.cmvn = CMVNStats.load(cmvn) if cmvn is not None else None
        utt2spk = _read_table(self.feats.path / "utt2spk")

        self.skipped: list[str] = []
        utts = []
        for utt in sorted(self.feats.scp, key=lambda u: u.encode("utf-8")):
            problem = None
            n = self.feats.num_frames[utt]
            if utt not in utt2spk:
                raise UserError(f"{self.feats.path / 'utt2spk'}: no speaker for utterance '{utt}'")
            if n < self.segment_frames:
                problem = f"{n} frames, shorter than one segment of {self.segment_frames}"
            for m in self.motion:
                if problem is None and m.num_frames.get(utt) != n:
                    problem = (f"has {m.num_frames.get(utt, 'no')} frames in the converted copy {m.path}, "
                               f"{n} in the original")
            if problem is not None:
                if not skip_bad:
                    raise UserError(f"utterance {utt} of {self.feats.path / 'feats.scp'}: {problem} "
                                    f"(skip_bad: true skips such utterances)")
                self.skipped.append(utt)
                continue
            utts.append(utt)
        if self.skipped:
            log.warning("%s: skipped %d of %d utterances (shorter than %d frames or without converted copies)",
                        self.feats.path, len(self.skipped), len(self.feats.scp), self.segment_frames)
        if not utts:
            raise UserError(f"{self.feats.path}: no utterance with at least {self.segment_frames} frames")
        self.utts = utts
        self.speakers = sorted({utt2spk[u] for u in utts}, key=lambda s: s.encode("utf-8"))
        index = {s: k for k, s in enumerate(self.speakers)}
        self.spk = np.array([index[utt2spk[u]] for u in utts], dtype=np.int64)
        self.utt2spk = {u: utt2spk[u] for u in utts}
        if not self.train:
            # every non-overlapping segment, in utterance order
            counts = np.array([self.feats.num_frames[u] // self.segment_frames for u in utts])
            self._seg_utt = np.repeat(np.arange(len(utts)), counts)
            self._seg_start = np.concatenate([np.arange(c) * self.segment_frames for c in counts])
            self._seg_count = counts

        if self.cmvn is not None:
            dim = self.feats.load(utts[0]).shape[1]
            if dim != self.cmvn.sum.size:
                raise UserError(f"cmvn stats {cmvn} have dim {self.cmvn.sum.size}, "
                                f"features in {self.feats.path} have {dim}")

    def set_epoch(self, epoch: int) -> None:
        """Select the random segments of ``epoch`` (training split).

        Worker processes copy the dataset when they start, so with ``persistent_workers``
        the new epoch would not reach them: use non-persistent workers (the default).
        """
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.train:
            return len(self.utts) * self.segments_per_utt
        return int(self._seg_utt.size)

    def item_groups(self) -> np.ndarray:
        """The utterance index of every item (int64, one per item)."""
        if self.train:
            return np.repeat(np.arange(len(self.utts), dtype=np.int64), self.segments_per_utt)
        return self._seg_utt.astype(np.int64)

    def locate(self, index: int) -> tuple[int, int, int]:
        """(utterance index, first frame, motion copy) of item ``index``."""
        u, start, copy, _ = self._locate(index)
        return u, start, copy

    def content_start(self, index: int) -> int:
        """First frame of item ``index``'s content segment (see the module docstring)."""
        return self._locate(index)[3]

    def _locate(self, index: int) -> tuple[int, int, int, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        seg = self.segment_frames
        if self.train:
            u = index // self.segments_per_utt
            rng = np.random.default_rng(_mix(self.seed, self.epoch, index))
            n = self.feats.num_frames[self.utts[u]]
            start = int(rng.integers(0, n - seg + 1))
            copy = int(rng.integers(0, len(self.motion))) if self.motion else -1
            # drawn after x's own draws, so x and its motion view do not depend on content_segment
            other = _other_start(rng, n, seg, start) if self.content_segment else start
            return u, start, copy, other
        u = int(self._seg_utt[index])
        start = int(self._seg_start[index])
        copy = index % len(self.motion) if self.motion else -1
        count = int(self._seg_count[u])
        other = ((start // seg + 1) % count) * seg
        return u, start, copy, other

    def _segment(self, fs: FeatureSet, utt: str, start: int) -> torch.Tensor:
        mat = fs.load(utt)
        seg = mat[start:start + self.segment_frames]
        if seg.shape[0] != self.segment_frames:
            raise UserError(f"features of '{utt}' in {fs.path} have {mat.shape[0]} frames, "
                            f"utt2num_frames says {fs.num_frames[utt]}")
        if self.cmvn is not None:
            seg = self.cmvn.apply(seg)
        return torch.from_numpy(np.array(seg, dtype=np.float32))  # a writable copy of just the segment

    def __getitem__(self, index: int) -> dict[str, Any]:
        u, start, copy, other = self._locate(int(index))
        utt = self.utts[u]
        item = {"x": self._segment(self.feats, utt, start), "utt": utt, "spk": int(self.spk[u]), "start": start}
        if copy >= 0:
            item["x_motion"] = self._segment(self.motion[copy], utt, start)
        if self.content_segment:
            item["x_content"] = self._segment(self.feats, utt, other)
        return item


def _split_value(data_cfg: Mapping[str, Any], split: str) -> Any:
    for name in (split, _ALIASES.get(split)):
        if name and data_cfg.get(f"{name}_feats") is not None:
            return data_cfg[f"{name}_feats"]
    raise UserError(f"data: no feature dir for split '{split}': set data.{split}_feats")


def build_speech_dataset(data_cfg: Mapping[str, Any], split: str,
                         content_segment: bool = False) -> SpeechSegmentDataset:
    """The dataset of ``split`` from a recipe's ``data`` config section (keys in the module docstring).

    ``content_segment`` adds each item's content segment (``x_content``).
    """
    unknown = sorted(k for k in data_cfg if k not in SPEECH_DATA.fields and k not in _TRAINER_KEYS
                     and not k.endswith("_feats"))
    if unknown:
        raise UserError(f"data: unknown key(s) {', '.join(unknown)}; valid keys: "
                        f"{', '.join(list(SPEECH_DATA.fields) + ['<split>_feats'])}")
    cfg = validate({"data": data_cfg}, {"data": SPEECH_DATA}, "data (speech)")["data"]
    train_split = cfg.get("train_split") or "train"
    motion = cfg["motion_feats"]
    if isinstance(motion, Mapping):
        motion = motion.get(split, motion.get(_ALIASES.get(split, ""), None))
    elif split != train_split:
        motion = None
    return SpeechSegmentDataset(
        _split_value(cfg, split),
        segment_frames=cfg["segment_frames"],
        train=split == train_split,
        segments_per_utt=cfg["segments_per_utt"],
        motion_dirs=_motion_dirs(motion),
        cmvn=cfg["cmvn"],
        seed=cfg["seed"],
        skip_bad=bool(cfg["skip_bad"]),
        in_memory=bool(cfg["in_memory"]),
        content_segment=content_segment,
    )


def feature_normaliser(data_cfg: Mapping[str, Any]):
    """The CMVN the datasets apply, as a function of a (frames, dim) matrix (identity without ``cmvn``)."""
    path = data_cfg.get("cmvn")
    if path is None:
        return lambda feats: np.asarray(feats, dtype=np.float32)
    return CMVNStats.load(path).apply
