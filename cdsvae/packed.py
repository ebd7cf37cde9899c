"""The packed-model format: one trained experiment as a self-contained directory (and tarball) for
use outside the recipe, and reading one back.

:func:`cdsvae.experiment.pack.write_packed` copies what inference needs out of ``exp/<tag>/``:

``config.yaml``
    the resolved training config, with ``data.cmvn`` pointing at the packed copy;
``model.pt``
    the weights stages 5-7 used (``best.pt``, else the newest step checkpoint), weights only:
    no optimiser, no RNG state;
``cmvn.npz``
    the CMVN statistics the model was trained with (when it used CMVN);
``fbank.yaml``
    the filterbank options of the training features (speech);
``packed.json``
    the modality, the segment length, the checkpoint and why it was chosen, the source experiment;
``README.md``
    the experiment's results table and the commands that made it.

``read_packed(path)`` reads such a directory or its ``.tar.gz`` back (and
:func:`cdsvae.experiment.load.load_packed` builds its model). The weights are loaded
with ``torch.load(weights_only=True)`` and the CMVN with ``numpy.load(allow_pickle=False)``, so
a packed model from an unknown source cannot run code: a pickled object is refused.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdsvae.io import UserError

PACKED_FORMAT = "cdsvae-packed"
MANIFEST = "packed.json"
WEIGHTS = "model.pt"
CMVN = "cmvn.npz"
FBANK = "fbank.yaml"
CONFIG = "config.yaml"


@dataclass
class PackedModel:
    """The contents of a packed model, read into memory."""

    source: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    state_dict: dict[str, Any]
    cmvn: Any = None  # cdsvae.data.feats.CMVNStats or None
    fbank: dict[str, Any] | None = None

    @property
    def modality(self) -> str:
        return str(self.manifest["modality"])


def _extract(tar_path: Path, dest: Path) -> Path:
    """Extract a packed tarball's plain files (no links, no absolute or parent paths) into ``dest``."""
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            for m in members:
                name = Path(m.name).name
                if name in (MANIFEST, WEIGHTS, CMVN, FBANK, CONFIG, "README.md"):
                    src = tar.extractfile(m)
                    (dest / name).write_bytes(src.read() if src is not None else b"")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UserError(f"{tar_path}: not a readable packed model tarball ({e})") from None
    return dest


def read_packed(path: str | os.PathLike) -> PackedModel:
    """A packed directory or tarball, read into memory (weights only; nothing in it is executed)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"packed model not found: {path}")
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix="cdsvae-packed-") as tmp:
            return _read_dir(_extract(path, Path(tmp)), str(path))
    return _read_dir(path, str(path))


def _read_dir(d: Path, source: str) -> PackedModel:
    import pickle

    import torch

    from cdsvae.config import read_yaml
    from cdsvae.data.feats import CMVNStats
    from cdsvae.experiment.schema import check_config
    from cdsvae.fbank import load_fbank_config

    manifest = _manifest(d, source)
    for name in (CONFIG, WEIGHTS):
        if not (d / name).is_file():
            raise UserError(f"{source}: incomplete packed model (no {name})")
    cfg = check_config(read_yaml(d / CONFIG), f"{source}/{CONFIG}")
    try:
        state = torch.load(d / WEIGHTS, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = found.group(1) if found else "not a tensor"
        raise UserError(f"{source}/{WEIGHTS}: refusing to load: it contains a pickled Python object ({what}); "
                        "a packed model holds weights only") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise UserError(f"{source}/{WEIGHTS}: unreadable weights ({str(e).splitlines()[0] if str(e) else e})") from None
    if not isinstance(state, dict) or state.get("format") != PACKED_FORMAT or not isinstance(state.get("model"), dict):
        raise UserError(f"{source}/{WEIGHTS}: not the weights of a packed cdsvae model")
    cmvn = None
    if cfg["data"].get("cmvn") is not None:
        if not (d / CMVN).is_file():
            raise UserError(f"{source}: the config uses CMVN but the packed model has no {CMVN}")
        cmvn = CMVNStats.load(d / CMVN)
    fbank = None
    if manifest.get("modality") == "speech":
        if not (d / FBANK).is_file():
            raise UserError(f"{source}: a speech model needs {FBANK}, which is missing")
        fbank = load_fbank_config(d / FBANK)
    return PackedModel(source, manifest, cfg, state["model"], cmvn, fbank)


def packed_modality(path: str | os.PathLike) -> str:
    """The modality of a packed directory or tarball, from its manifest only (no torch)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"packed model not found: {path}")
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix="cdsvae-packed-") as tmp:
            return str(_manifest(_extract(path, Path(tmp)), str(path))["modality"])
    return str(_manifest(path, str(path))["modality"])


def _manifest(d: Path, source: str) -> dict[str, Any]:
    try:
        manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{source}: not a packed model (no readable {MANIFEST}; make one with "
                        "python -m cdsvae.bin.pack)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACKED_FORMAT:
        raise UserError(f"{source}: {MANIFEST} is not a cdsvae packed-model manifest")
    return manifest
