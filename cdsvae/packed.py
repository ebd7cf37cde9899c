"""A packed model: one trained experiment as a self-contained directory (and tarball) for use
outside the recipe.

``write_packed(expdir, outdir)`` copies what inference needs out of ``exp/<tag>/``:

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

``read_packed(path)`` reads such a directory or its ``.tar.gz`` back. The weights are loaded
with ``torch.load(weights_only=True)`` and the CMVN with ``numpy.load(allow_pickle=False)``, so
a packed model from an unknown source cannot run code: a pickled object is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdsvae.errors import UserError
from cdsvae.io import atomic_write_text

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


def _fbank_source(expdir: Path, cfg: dict[str, Any]) -> Path | None:
    """The fbank.yaml of the training features, else of the features stage 5 embedded."""
    candidates = []
    for key in ("train_feats", "valid_feats", "test_feats"):
        if cfg["data"].get(key):
            candidates.append(Path(cfg["data"][key]) / FBANK)
    for meta in sorted(expdir.glob("emb_*/meta.json")):
        try:
            candidates.append(Path(json.loads(meta.read_text(encoding="utf-8"))["feats"]) / FBANK)
        except (ValueError, KeyError, OSError):
            continue
    return next((p for p in candidates if p.is_file()), None)


def _training_command(expdir: Path) -> str | None:
    """The command line a job log records on its first line (``# command``), if any."""
    log = expdir / "train.log"
    if not log.is_file():
        return None
    with open(log, encoding="utf-8", errors="replace") as f:
        first = f.readline().strip()
    return first[1:].strip() if first.startswith("#") else None


def _results_section(expdir: Path) -> str:
    """The experiment's RESULTS.md (headings demoted), else its score files as a table."""
    results = expdir / "RESULTS.md"
    if results.is_file():
        text = results.read_text(encoding="utf-8").strip()
        return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
    rows = []
    for path in sorted(expdir.glob("score_*/results.json")):
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
            rows.append(f"| {path.parent.name[len('score_'):]} | {100 * r['s']['eer']:.2f} | {100 * r['z']['eer']:.2f} |")
        except (ValueError, KeyError, TypeError, OSError):
            continue
    if rows:
        return "| set | EER of s (%) | EER of z (%) |\n|---|---|---|\n" + "\n".join(rows)
    if (expdir / "judge_results.json").is_file():
        return "Judge results of the recipe: `judge_results.json` of the experiment (not packed)."
    return "No results were found in the experiment directory when it was packed."


def _readme(tag: str, manifest: dict[str, Any], results: str, command: str | None) -> str:
    ckpt = manifest["checkpoint"]
    at = [f"{k} {ckpt[k]}" for k in ("step", "epoch") if ckpt.get(k) is not None]
    where = f" ({', '.join(at)})" if at else ""
    kind = "speech" if manifest["modality"] == "speech" else "video"
    use = ("from cdsvae import Disentangler\n"
           "model = Disentangler.from_packed(\"packed\")\n")
    use += ("s, z = model.encode(\"utterance.wav\")\n" if kind == "speech" else "s, z = model.encode(frames)  # (T, C, H, W)\n")
    lines = [
        f"# Packed C-DSVAE model: {tag}", "",
        f"A {kind} model packed from `{manifest['expdir']}` by `{manifest['pack_command']}`.", "",
        f"Weights: `{ckpt.get('file')}`{where}: {ckpt.get('why')}.", "",
    ]
    if command:
        lines += ["Trained with:", "", "```sh", command, "```", ""]
    lines += ["## Results", "", results, "", "## Use", "", "```python", use.rstrip(), "```", ""]
    return "\n".join(lines)


def write_packed(expdir: str | os.PathLike, outdir: str | os.PathLike | None = None,
                 fbank: str | os.PathLike | None = None, tarball: bool = True) -> Path:
    """Pack ``expdir`` into ``outdir`` (default ``<expdir>/packed``) and ``<outdir>.tar.gz``."""
    import numpy as np
    import torch

    from cdsvae.data.feats import CMVNStats
    from cdsvae.fbank import load_fbank_config
    from cdsvae.train.config import dump_config, to_plain
    from cdsvae.train.task import choose_checkpoint, checkpoint_summary, load_config_file

    expdir = Path(expdir)
    outdir = Path(outdir) if outdir is not None else expdir / "packed"
    cfg = load_config_file(expdir)
    modality = "video" if cfg["model"]["frame"] == "conv64" else "speech"
    path, state, why = choose_checkpoint(expdir)
    fbank_cfg = None
    if modality == "speech":
        fbank_path = Path(fbank) if fbank is not None else _fbank_source(expdir, cfg)
        if fbank_path is None or not fbank_path.is_file():
            raise UserError(f"{expdir}: cannot find the fbank.yaml of the training features "
                            "(data.train_feats, emb_*/meta.json); give it with --fbank_config")
        fbank_cfg = load_fbank_config(fbank_path)
    tmp = Path(tempfile.mkdtemp(prefix=".packing-", dir=outdir.parent if outdir.parent.exists() else None))
    try:
        cmvn_src = cfg["data"].get("cmvn")
        if cmvn_src is not None:
            stats = CMVNStats.load(cmvn_src)
            with open(tmp / CMVN, "wb") as f:
                np.savez(f, sum=stats.sum, sum_sq=stats.sum_sq, count=np.int64(stats.count),
                         mean=stats.mean, std=stats.std)
            cfg["data"]["cmvn"] = CMVN
        dump_config(cfg, tmp / CONFIG)
        torch.save({"format": PACKED_FORMAT, "model": {k: v.detach().cpu() for k, v in state["model"].items()}},
                   tmp / WEIGHTS)
        if fbank_cfg is not None:
            import yaml

            (tmp / FBANK).write_text(yaml.safe_dump(fbank_cfg, sort_keys=False), encoding="utf-8")
        from cdsvae.data.speech import SPEECH_DATA_DEFAULTS

        manifest = {
            "format": PACKED_FORMAT, "version": 1, "modality": modality, "tag": expdir.resolve().name,
            "expdir": str(expdir), "checkpoint": to_plain(checkpoint_summary(path, state, why)),
            "segment_frames": int(cfg["data"].get("segment_frames") or SPEECH_DATA_DEFAULTS["segment_frames"])
            if modality == "speech" else None,
            "pack_command": f"python -m cdsvae.bin.pack --expdir {expdir}"
                            + (f" --out {outdir}" if outdir != expdir / "packed" else ""),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        atomic_write_text(tmp / "README.md", _readme(manifest["tag"], manifest, _results_section(expdir),
                                                     _training_command(expdir)))
        outdir.parent.mkdir(parents=True, exist_ok=True)
        if outdir.exists():
            shutil.rmtree(outdir)
        os.replace(tmp, outdir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if tarball:
        write_tarball(outdir, Path(f"{outdir}.tar.gz"))
    return outdir


def write_tarball(packed_dir: Path, out: Path) -> Path:
    """``out`` (.tar.gz) holding ``packed_dir``'s files under one top directory, written atomically."""
    from cdsvae.io import atomic_open

    with atomic_open(out, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        for p in sorted(packed_dir.iterdir()):
            tar.add(p, arcname=f"{packed_dir.name}/{p.name}", recursive=False)
    return out


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

    from cdsvae.data.feats import CMVNStats
    from cdsvae.fbank import load_fbank_config
    from cdsvae.train.config import read_yaml
    from cdsvae.train.task import check_config

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
