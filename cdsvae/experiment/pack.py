"""Packing an experiment: what inference needs, copied out of ``exp/<tag>/`` into a packed model
(the format of :mod:`cdsvae.packed`) and its ``.tar.gz``.

The weights are the ones stages 5-7 used (:func:`cdsvae.experiment.load.choose_checkpoint`), weights
only; the README holds the experiment's results table and the commands that made it.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from cdsvae.config import dump_config, to_plain
from cdsvae.data.feats import CMVNStats
from cdsvae.data.speech import SPEECH_DATA
from cdsvae.experiment.load import checkpoint_summary, choose_checkpoint, load_config_file
from cdsvae.fbank import load_fbank_config
from cdsvae.io import UserError, atomic_open, atomic_write_text
from cdsvae.packed import CMVN, CONFIG, FBANK, MANIFEST, PACKED_FORMAT, WEIGHTS


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
            (tmp / FBANK).write_text(yaml.safe_dump(fbank_cfg, sort_keys=False), encoding="utf-8")
        manifest = {
            "format": PACKED_FORMAT, "version": 1, "modality": modality, "tag": expdir.resolve().name,
            "expdir": str(expdir), "checkpoint": to_plain(checkpoint_summary(path, state, why)),
            "segment_frames": int(cfg["data"].get("segment_frames") or SPEECH_DATA.fields["segment_frames"].default)
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
    with atomic_open(out, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        for p in sorted(packed_dir.iterdir()):
            tar.add(p, arcname=f"{packed_dir.name}/{p.name}", recursive=False)
    return out
