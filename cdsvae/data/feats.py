"""Feature files of a data dir: ark+scp writing, utt2num_frames, frame alignment, global CMVN.

``FeatureWriter`` is the one writer of Kaldi ark+scp pairs (feature matrices, and the
per-utterance embedding vectors of ``cdsvae.eval.metrics.embeddings``); ``CMVNStats`` accumulates,
saves (npz or a Kaldi stats matrix), loads and applies global mean/variance statistics, and
``accumulate_cmvn`` sums them over feature lists.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from cdsvae.data.datadir import iter_table_lines
from cdsvae.io import UserError, atomic_open

# kaldiio is imported where arks are read or written: it is not needed to read the text tables.


def check_finite(feats: np.ndarray, what: str) -> None:
    """Refuse NaN/Inf: they would poison every statistic computed from the feature file."""
    if not np.isfinite(feats).all():
        bad = np.argwhere(~np.isfinite(feats))[0]
        raise UserError(f"non-finite feature value at frame {bad[0]}: {what}")


class FeatureWriter:
    """Write features to ``<stem>.ark`` + ``<stem>.scp`` (+ utt2num_frames) atomically.

    The ark goes to a temporary name and is renamed when complete; the scp and
    utt2num_frames are written last, so a reader never sees an scp that points into a
    partial ark.  Every matrix is checked for NaN/Inf before it is written.  With
    ``vectors=True`` the entries are 1-D vectors of one length (Kaldi vectors), not matrices.
    """

    def __init__(self, ark: str | os.PathLike, scp: str | os.PathLike,
                 utt2num_frames: str | os.PathLike | None = None, vectors: bool = False):
        if vectors and utt2num_frames is not None:
            raise ValueError("vectors have no frames: utt2num_frames needs matrices")
        self.ark, self.scp, self.utt2num_frames = str(ark), scp, utt2num_frames
        self.vectors = vectors
        self._stack = contextlib.ExitStack()
        self._f = None
        self._entries: list[tuple[str, int, int]] = []
        self.dim: int | None = None

    def __enter__(self) -> "FeatureWriter":
        self._f = self._stack.enter_context(atomic_open(self.ark, "wb"))
        return self

    def write(self, key: str, feats: np.ndarray) -> None:
        import kaldiio

        feats = np.asarray(feats, dtype=np.float32)
        if self.vectors:
            if feats.ndim != 1 or feats.shape[0] == 0:
                raise UserError(f"vector of {key} must be non-empty and 1-D, got shape {feats.shape}")
        elif feats.ndim != 2 or feats.shape[0] == 0:
            raise UserError(f"features of {key} must be a non-empty (frames, dim) matrix, got shape {feats.shape}")
        if self.dim is not None and feats.shape[-1] != self.dim:
            raise UserError(f"features of {key} have dim {feats.shape[-1]}, earlier ones {self.dim}")
        if not key or any(c.isspace() for c in key):
            raise UserError(f"invalid utterance id {key!r}")
        check_finite(feats, f"utterance {key}")
        self.dim = feats.shape[-1]
        offset = self._f.tell() + len((key + " ").encode("utf-8"))
        kaldiio.save_ark(self._f, {key: feats})
        self._entries.append((key, offset, feats.shape[0]))

    def __exit__(self, exc_type, exc, tb) -> bool:
        failed = exc_type is not None
        self._stack.__exit__(exc_type, exc, tb)  # renames the ark on success, removes it on failure
        if not failed:
            with atomic_open(self.scp, "w", encoding="utf-8") as f:
                f.writelines(f"{k} {self.ark}:{o}\n" for k, o, _ in self._entries)
            if self.utt2num_frames is not None:
                with atomic_open(self.utt2num_frames, "w", encoding="utf-8") as f:
                    f.writelines(f"{k} {n}\n" for k, _, n in self._entries)
        return False


def read_utt2num_frames(path: str | os.PathLike) -> dict[str, int]:
    """``utt num_frames`` lines (read as every data-dir table is); a count that is not a number is an error."""
    out: dict[str, int] = {}
    for lineno, utt, value in iter_table_lines(path):
        fields = value.split() if value is not None else []
        if len(fields) != 1 or not fields[0].isdigit():
            line = utt if value is None else f"{utt} {value}"
            raise UserError(f"{path}:{lineno}: expected 'utt num_frames', got {line.strip()!r}")
        out[utt] = int(fields[0])
    return out


def match_num_frames(feats: np.ndarray, target: int, what: str, tolerance: int = 1) -> np.ndarray:
    """Trim trailing frames, or repeat the last frame, to get exactly ``target`` frames.

    Used where two feature sets must align frame by frame (a converted copy against
    its original); a difference larger than ``tolerance`` frames is an error.
    """
    n = feats.shape[0]
    if abs(n - target) > tolerance:
        raise UserError(f"{n} frames where {target} were expected (more than {tolerance} off): {what}")
    if n > target:
        return feats[:target]
    if n < target:
        return np.concatenate([feats, np.repeat(feats[-1:], target - n, axis=0)])
    return feats


class CMVNStats:
    """Global per-dimension mean and variance over a feature set, accumulated in float64."""

    def __init__(self, dim: int | None = None):
        self.count = 0
        self.sum = None if dim is None else np.zeros(dim)
        self.sum_sq = None if dim is None else np.zeros(dim)

    def accumulate(self, feats: np.ndarray) -> None:
        feats = np.asarray(feats, dtype=np.float64)
        if self.sum is None:
            self.sum, self.sum_sq = np.zeros(feats.shape[1]), np.zeros(feats.shape[1])
        if feats.shape[1] != self.sum.size:
            raise UserError(f"feature dim {feats.shape[1]} differs from the earlier {self.sum.size}")
        self.count += feats.shape[0]
        self.sum += feats.sum(axis=0)
        self.sum_sq += np.square(feats).sum(axis=0)

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.count

    @property
    def std(self) -> np.ndarray:
        var = self.sum_sq / self.count - np.square(self.mean)
        return np.sqrt(np.maximum(var, 1e-10))

    def save(self, path: str | os.PathLike) -> None:
        """``.npz`` (sum, sum_sq, count, mean, std) or else a Kaldi global stats matrix (2 x dim+1)."""
        if not self.count:
            raise UserError(f"no frames accumulated for {path}")
        if str(path).endswith(".npz"):
            with atomic_open(path, "wb") as f:
                np.savez(f, sum=self.sum, sum_sq=self.sum_sq, count=np.int64(self.count),
                         mean=self.mean, std=self.std)
        else:
            import kaldiio

            stats = np.zeros((2, self.sum.size + 1))
            stats[0, :-1], stats[0, -1], stats[1, :-1] = self.sum, self.count, self.sum_sq
            with atomic_open(path, "wb") as f:
                kaldiio.save_mat(f, stats)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CMVNStats:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"CMVN stats file not found: {path}")
        out = cls()
        try:
            if path.suffix == ".npz":
                with np.load(path) as z:
                    out.sum, out.sum_sq, out.count = z["sum"], z["sum_sq"], int(z["count"])
            else:
                import kaldiio

                stats = np.asarray(kaldiio.load_mat(str(path)), dtype=np.float64)
                if stats.ndim != 2 or stats.shape[0] != 2:
                    raise ValueError(f"expected a 2 x (dim+1) matrix, got shape {stats.shape}")
                out.sum, out.count, out.sum_sq = stats[0, :-1], int(round(stats[0, -1])), stats[1, :-1]
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f"cannot read CMVN stats {path}: {e}") from None
        if out.count <= 0:
            raise UserError(f"CMVN stats {path} count no frames")
        return out

    def apply(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - self.mean) / self.std).astype(np.float32)


def accumulate_cmvn(scps: Sequence[str | os.PathLike]) -> CMVNStats:
    """Global statistics of every utterance of the feature lists (a dir stands for its feats.scp), summed."""
    import kaldiio
    from tqdm import tqdm

    stats = CMVNStats()
    for scp in scps:
        scp = Path(scp)
        if scp.is_dir():
            scp = scp / "feats.scp"
        if not scp.is_file():
            raise UserError(f"feature list not found: {scp}")
        try:
            # delay: a job done within a few seconds leaves no empty bar ("cmvn: 0utt [00:00, ?utt/s]").
            for utt, feats in tqdm(kaldiio.load_scp_sequential(str(scp)), desc="cmvn", unit="utt",
                                   mininterval=10, delay=5, file=sys.stderr):
                check_finite(feats, f"utterance {utt} of {scp}")
                stats.accumulate(feats)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read features listed in {scp}: {e}") from None
    if not stats.count:
        raise UserError(f"no frames in {', '.join(map(str, scps))}")
    return stats
