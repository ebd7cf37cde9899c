"""What a training run reads and learnt from: its datasets, and the record that keeps anything from
reusing it on other data.

Datasets (:func:`build_dataset`): the builder of each ``data.type``, and the check that the data's
frames fit the model config (:func:`check_frames`). Each data module is imported only for its own
``data.type``, so a run reads only the code of its own data (speech reads the feature code; video,
images).

A run's data paths are made absolute before its ``config.yaml`` is written (:func:`absolute_data_paths`),
so the experiment does not depend on the directory it is used from, and its CMVN statistics are
copied into the experiment (``cmvn.npz``, or ``cmvn.<ext>`` for other formats; see
:func:`copy_cmvn`), which :func:`cdsvae.experiment.load.load_config_file` then points ``data.cmvn`` at.

``inputs.json`` holds a fingerprint of the run's inputs (:func:`fingerprint`): the config sections
that define the model and its data (``model``, ``loss``, ``optim``, ``augment``, ``data``; the
``train`` section may change on resume, e.g. more epochs) and the SHA-256 of each input file:

- speech: ``feats.scp``, ``utt2num_frames``, ``utt2spk`` and ``fbank.yaml`` of every feature dir
  (``<split>_feats``, every motion copy) and the CMVN file;
- video: the frames, labels and factors files of the training and validation splits (a file over
  256 MiB is fingerprinted by its size and its first and last 16 MiB).

Training refuses a directory with checkpoints whose recorded inputs differ from the current
ones (:func:`check_resume`); the evaluation stages check that the recorded files are unchanged
and that the features they read were made with the training features' options
(:func:`check_experiment`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from cdsvae.config import to_plain
from cdsvae.io import UserError, atomic_open, atomic_write_text

if TYPE_CHECKING:  # stages 5-7 check experiments with this module: no torch import there
    import torch


def build_dataset(data_cfg: Mapping[str, Any], split: str, content_segment: bool = False):
    """The dataset of ``split`` from the ``data`` section of a checked config; ``content_segment``
    gives each speech item a content segment (``x_content``)."""
    kind = data_cfg["type"]
    if kind == "synthetic":
        from cdsvae.data.synthetic import build_synthetic_dataset
        return build_synthetic_dataset(data_cfg, split)
    if kind == "speech":
        from cdsvae.data.speech import build_speech_dataset
        return build_speech_dataset(dict(data_cfg), split, content_segment=content_segment)
    if kind == "video":
        from cdsvae.data.video import build_video_dataset
        return build_video_dataset(dict(data_cfg), split)
    from cdsvae.experiment.schema import DATA_TYPES
    raise UserError(f"data.type must be one of {', '.join(DATA_TYPES)}, got {kind!r}")


def check_frames(model_cfg: Mapping[str, Any], x: torch.Tensor, source: str = "data") -> None:
    """Fail early, naming the keys, when the data's frames do not fit the model config."""
    frame = model_cfg["frame"]
    if frame == "conv64":
        expected = (model_cfg["in_channels"], 64, 64)
        if tuple(x.shape[1:]) != expected:
            raise UserError(f"{source}: sequences have frames of shape {tuple(x.shape[1:])}, but model.frame "
                            f"conv64 with model.in_channels {model_cfg['in_channels']} expects {expected}")
    elif x.dim() != 2 or x.shape[1] != model_cfg["feat_dim"]:
        raise UserError(f"{source}: sequences have frames of shape {tuple(x.shape[1:])}, but model.frame "
                        f"{frame} expects ({model_cfg['feat_dim']},) (model.feat_dim)")


INPUTS_FILE = "inputs.json"
CONFIG_SECTIONS = ("model", "loss", "optim", "augment", "data")
FEATS_DIR_FILES = ("feats.scp", "utt2num_frames", "utt2spk", "fbank.yaml")
FEATURE_CONFIG = "fbank.yaml"
_WHOLE_FILE_LIMIT = 256 << 20
_EDGE_BYTES = 16 << 20


def _absolute(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.path.abspath(os.path.expanduser(os.fspath(value)))
    if isinstance(value, Mapping):
        return {k: _absolute(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_absolute(v) for v in value]
    return value


def _is_path_key(key: str) -> bool:
    return key.endswith("_feats") or key in ("cmvn", "root")


def absolute_data_paths(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with every path of its ``data`` section absolute (relative to the current directory)."""
    out = dict(cfg)
    data = dict(cfg.get("data") or {})
    if data.get("type") == "video":
        from cdsvae.data.video import VIDEO_DATA  # the data module of data.type only
        defaults = VIDEO_DATA.defaults()
        data.setdefault("root", defaults["root"])
        frames = data.get("frames", defaults["frames"])
        for key in ("train_split", "valid_split"):  # a split may be a directory of its own
            split = data.get(key)
            if isinstance(split, str) and (Path(split) / frames).is_file():
                data[key] = _absolute(split)
    out["data"] = {k: (_absolute(v) if _is_path_key(k) else v) for k, v in data.items()}
    return out


def file_digest(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file (size and edges for a file over 256 MiB); None when it does not exist."""
    path = Path(path)
    try:
        size = path.stat().st_size
        h = hashlib.sha256()
        with path.open("rb") as f:
            if size <= _WHOLE_FILE_LIMIT:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
                return h.hexdigest()
            h.update(f"size {size}".encode())
            h.update(f.read(_EDGE_BYTES))
            f.seek(size - _EDGE_BYTES)
            h.update(f.read(_EDGE_BYTES))
            return "edges:" + h.hexdigest()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None


def _speech_files(data: Mapping[str, Any]) -> list[Path]:
    from cdsvae.data.speech import _motion_dirs  # the data module of data.type only
    dirs = [Path(data[k]) for k in sorted(data) if k.endswith("_feats") and k != "motion_feats"
            and isinstance(data[k], (str, os.PathLike))]
    motion = data.get("motion_feats")
    specs = list(motion.values()) if isinstance(motion, Mapping) else [motion]
    for spec in specs:
        if spec is not None:
            dirs.extend(_motion_dirs(spec))
    files = [d / name for d in dirs for name in FEATS_DIR_FILES]
    if data.get("cmvn") is not None:
        files.append(Path(data["cmvn"]))
    return files


def _video_files(data: Mapping[str, Any]) -> list[Path]:
    # the data module of data.type only
    from cdsvae.data.video import FACTORS_FILE, LABELS_FILE, VIDEO_DATA, resolve_split_dir
    cfg = {**VIDEO_DATA.defaults(), **data}
    files = []
    for split in (data.get("train_split"), data.get("valid_split")):
        if split:
            d = resolve_split_dir(cfg, split)
            files.extend(d / name for name in (cfg["frames"], LABELS_FILE, FACTORS_FILE))
    return files


def input_files(cfg: Mapping[str, Any]) -> list[Path]:
    """The files a config trains on (see the module docstring), in a fixed order."""
    data = cfg.get("data") or {}
    kind = data.get("type")
    if kind == "speech":
        return _speech_files(data)
    if kind == "video":
        return _video_files(data)
    return []


def fingerprint(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``{"config": {section: ...}, "files": {path: sha256 or None}, "feature_config": path or None}``."""
    config = {sec: to_plain(cfg.get(sec)) for sec in CONFIG_SECTIONS}
    files = {str(p): file_digest(p) for p in input_files(cfg)}
    feature_config = None
    data = cfg.get("data") or {}
    if data.get("type") == "speech" and isinstance(data.get("train_feats"), str):
        feature_config = str(Path(data["train_feats"]) / FEATURE_CONFIG)
    return {"config": config, "files": files, "feature_config": feature_config}


def read_inputs(exp_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The recorded fingerprint of a training directory, or None when it has none."""
    path = Path(exp_dir) / INPUTS_FILE
    if not path.is_file():
        return None
    try:
        with path.open(encoding="utf-8") as f:
            stored = json.load(f)
        if not isinstance(stored, dict) or not isinstance(stored.get("files"), dict):
            raise ValueError("not a fingerprint")
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable fingerprint of the training inputs ({e})") from None
    return stored


def write_inputs(exp_dir: str | os.PathLike, fp: Mapping[str, Any]) -> None:
    atomic_write_text(Path(exp_dir) / INPUTS_FILE, json.dumps(fp, indent=1, sort_keys=True) + "\n")


def _display(path: str) -> str:
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd().resolve()) else path
    except (ValueError, OSError):
        return path


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any],
                   sections: Sequence[str] = CONFIG_SECTIONS, defaults: Mapping[str, Any] | None = None) -> list[str]:
    """``"section.key: old -> new"`` for every key of ``sections`` that differs between two configs.

    ``defaults`` holds the declared defaults by section: a key the old config does not hold (it was
    recorded before the option existed) counts as having its default, so adding an option whose
    default keeps the old behaviour does not make older runs look changed.
    """
    a = _flat({sec: old.get(sec) or {} for sec in sections}, "")
    b = _flat({sec: new.get(sec) or {} for sec in sections}, "")
    for key, value in _flat({sec: (defaults or {}).get(sec) or {} for sec in sections}, "").items():
        a.setdefault(key, value)
    return [f"{key}: {a.get(key)!r} -> {b.get(key)!r}" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def changes(old: Mapping[str, Any], new: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> list[str]:
    """What differs between two fingerprints, one short phrase each (config keys first); ``defaults``
    as in :func:`config_changes`."""
    out = config_changes(old.get("config") or {}, new.get("config") or {}, defaults=defaults)
    fa, fb = old.get("files") or {}, new.get("files") or {}
    for path in sorted(set(fa) | set(fb)):
        if fa.get(path) == fb.get(path):
            continue
        if path not in fa or fa[path] is None:
            what = "new"
        elif path not in fb or fb[path] is None:
            what = "missing now"
        else:
            what = "changed"
        out.append(f"{_display(path)} {what}")
    return out


def summarise(items: Sequence[str], limit: int = 3) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def restart_hint(exp_dir: str | os.PathLike) -> str:
    """The way on after a refusal, the last part of its message (recipes put their own options there)."""
    return f"train into a new --outdir or move {exp_dir} aside"


def check_resume(exp_dir: str | os.PathLike, fp: Mapping[str, Any], has_checkpoints: bool,
                 defaults: Mapping[str, Any] | None = None) -> None:
    """Refuse to continue a run whose checkpoints were trained on other inputs than ``fp``
    (``defaults``: as in :func:`config_changes`)."""
    if not has_checkpoints:
        return
    stored = read_inputs(exp_dir)
    if stored is None:
        raise UserError(f"{exp_dir} holds checkpoints but no record of the inputs they were trained on "
                        f"({INPUTS_FILE}); {restart_hint(exp_dir)}")
    diff = changes(stored, fp, defaults)
    if diff:
        raise UserError(f"{exp_dir} was trained on other inputs: {summarise(diff)}; {restart_hint(exp_dir)}")


def check_experiment(exp_dir: str | os.PathLike, feats_dirs: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Check a trained experiment against the files now on disk; returns its recorded fingerprint.

    The recorded input files must be unchanged, and each of ``feats_dirs`` (features to evaluate)
    must hold the same feature options (``fbank.yaml``) as the training features.
    """
    exp_dir = Path(exp_dir)
    stored = read_inputs(exp_dir)
    if stored is None:
        raise UserError(f"{exp_dir}: no record of its training inputs ({INPUTS_FILE}); it was not trained "
                        f"by cdsvae.bin.train, or training never started")
    diff = []
    for path, digest in sorted(stored["files"].items()):
        now = file_digest(path)
        if now != digest:
            diff.append(f"{_display(path)} {'missing now' if now is None else 'changed'}")
    if diff:
        raise UserError(f"{exp_dir} was trained on other inputs: {summarise(diff)}")
    feature_config = stored.get("feature_config")
    expected = stored["files"].get(feature_config) if feature_config else None
    if expected is not None:  # training features without fbank.yaml: nothing to compare with
        for d in feats_dirs:
            path = Path(d) / FEATURE_CONFIG
            now = file_digest(path)
            if now is None:
                raise UserError(f"{path}: missing; the features in {d} were not made by make_fbank")
            if now != expected:
                raise UserError(f"{exp_dir} was trained on features with other options than {_display(str(path))} "
                                f"(compare with {_display(feature_config)})")
    return stored


def cmvn_copy_path(exp_dir: str | os.PathLike, source: str | os.PathLike) -> Path:
    """Where the experiment keeps its copy of the CMVN statistics ``source``."""
    suffix = Path(source).suffix or ".npz"
    return Path(exp_dir) / f"cmvn{suffix}"


def copy_cmvn(exp_dir: str | os.PathLike, data_cfg: Mapping[str, Any]) -> Path | None:
    """Copy ``data.cmvn`` into the experiment (atomically); returns the copy, or None without CMVN."""
    source = data_cfg.get("cmvn")
    if source is None:
        return None
    dest = cmvn_copy_path(exp_dir, source)
    if not Path(source).is_file():
        raise UserError(f"{source}: no such CMVN statistics file (data.cmvn)")
    if file_digest(dest) == file_digest(source):
        return dest
    with open(source, "rb") as src, atomic_open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
    return dest


def experiment_cmvn(exp_dir: str | os.PathLike, data_cfg: Mapping[str, Any]) -> str | None:
    """The CMVN statistics an experiment's evaluation applies: its own copy when it has one."""
    source = data_cfg.get("cmvn")
    if source is None:
        return None
    copy = cmvn_copy_path(exp_dir, source)
    return str(copy) if copy.is_file() else source
