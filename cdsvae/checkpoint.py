"""Checkpoints that are safe to load and safe to be killed while writing.

Files are written to a temporary name and renamed, so a kill leaves either the previous file
or the complete new one. They hold tensors and plain Python values only (RNG states are stored
as tensors), which is what ``torch.load(weights_only=True)`` accepts: a checkpoint carrying
arbitrary pickled objects is refused rather than executed.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from cdsvae.io import UserError, atomic_open

log = logging.getLogger("cdsvae.train")

FORMAT = "cdsvae-checkpoint"
VERSION = 1
_STEP_RE = re.compile(r"^step(\d+)\.pt$")
BEST = "best.pt"


class CheckpointError(UserError):
    """A checkpoint that cannot be read (truncated, corrupt, not ours)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that holds pickled Python objects: refused, never executed."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` atomically; a reader never sees a partial file."""
    state = {"format": FORMAT, "version": VERSION, **state}
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``; raise UnsafeCheckpointError or CheckpointError with the path."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise UnsafeCheckpointError(
                f"{path}: refusing to load: it contains a pickled Python object ({found.group(1)}); "
                f"checkpoints may hold only tensors and plain values") from None
        raise CheckpointError(f"{path}: corrupt checkpoint (not a readable torch file)") from None
    except (RuntimeError, EOFError, UnicodeDecodeError, ValueError, OSError, IndexError, KeyError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cdsvae checkpoint (no '{FORMAT}' marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not supported "
                              f"(expected {VERSION})")
    return state


def step_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    return Path(ckpt_dir) / f"step{step:09d}.pt"


def list_step_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every step checkpoint, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = _STEP_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def load_latest(ckpt_dir: str | os.PathLike, map_location: Any = "cpu",
                required_keys: Iterable[str] = ()) -> tuple[Path, dict[str, Any]] | None:
    """Newest readable step checkpoint; a corrupt newer one is reported and skipped.

    An unsafe (pickled-object) checkpoint stops the search with an error: it was not written
    by this trainer, and silently training on from an older file would hide that.
    """
    bad: list[Path] = []
    for _, path in reversed(list_step_checkpoints(ckpt_dir)):
        try:
            state = load_checkpoint(path, map_location)
            missing = [k for k in required_keys if k not in state]
            if missing:
                raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
        except UnsafeCheckpointError:
            raise
        except CheckpointError as e:
            log.warning("%s; trying the previous checkpoint", e)
            bad.append(path)
            continue
        if bad:
            log.warning("using %s instead of unreadable %s", path, ", ".join(str(b) for b in bad))
        return path, state
    if bad:
        raise CheckpointError(f"no readable checkpoint in {ckpt_dir}: {', '.join(str(b) for b in bad)} "
                              f"are corrupt; remove them to start again")
    return None


def prune(ckpt_dir: str | os.PathLike, keep_last: int) -> None:
    """Keep the newest ``keep_last`` step checkpoints (best.pt is separate and always kept)."""
    if keep_last <= 0:
        return
    for _, path in list_step_checkpoints(ckpt_dir)[:-keep_last]:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def capture_rng(generators: dict[str, torch.Generator] | None = None,
                device: torch.device | None = None) -> dict[str, Any]:
    """All RNG states of this process as tensors and plain values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)  # this process's GPU only
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None,
                device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"].cpu())
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    for name, gen in (generators or {}).items():
        if name in state["generators"]:
            gen.set_state(state["generators"][name].cpu())
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
