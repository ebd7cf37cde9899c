"""The two judges of a speech recipe, trained once per recipe and shared by every experiment.

* The **speaker judge** (:mod:`cdsvae.eval.judges.speaker`): an ECAPA-TDNN trained with an
  additive angular margin over the training speakers, or a pretrained speechbrain model given
  by the user. Its EER on the test trials is the "supervised reference" of the
  speaker-verification table.
* The **content judge** (:mod:`cdsvae.eval.judges.ctc`): a CTC recogniser of the corpus units
  (``data/<set>/units``: phones, or sentencepiece pieces) from the same log-mel. Its unit error
  rate on the test audio is the reference of the content columns.

Both take raw log-mel as the feature stage writes it and normalise it themselves, so they judge
real features and model-decoded ones alike. Each lives in ``<judge dir>/{speaker,content}/``:
``judge.json`` records what it was trained on (a stamp of the options and the content of its
inputs), where its weights are, and its test figures; a judge whose stamp matches is not
trained again, and an interrupted training resumes from its per-epoch checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from cdsvae.config import check_section
from cdsvae.eval.judges.config import SWAP, SwapConfig  # noqa: F401  (SwapConfig: re-exported)
from cdsvae.io import UserError, atomic_write_text, read_yaml

log = logging.getLogger(__name__)

SECTIONS = ("speaker", "content", "probe", "swap", "gate")
GATE_KEYS = ("max_speaker_eer", "max_content_error")
JUDGE_FILE = "judge.json"


def read_judge_config(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The sections of a judge config (``speaker``, ``content``, ``probe``, ``swap``, ``gate``);
    an unknown section or gate key is a one-line error naming the file."""
    cfg = read_yaml(path)
    for key, value in cfg.items():
        if key not in SECTIONS:
            raise UserError(f"{path}: unknown section '{key}' (expected: {', '.join(SECTIONS)})")
        if not isinstance(value, dict):
            raise UserError(f"{path}: section '{key}' must be a mapping")
    for key in cfg.get("gate", {}):
        if key not in GATE_KEYS:
            raise UserError(f"{path}: unknown gate key '{key}' (expected: {', '.join(GATE_KEYS)})")
    out = {name: dict(cfg.get(name) or {}) for name in SECTIONS}
    _check_sections(path, out)
    return out


def _check_sections(path, cfg: Mapping[str, Mapping[str, Any]]) -> None:
    """Every section's keys and values are checked against its declaration
    (:mod:`cdsvae.eval.judges.config`), then by the class that uses it, naming the file."""
    from cdsvae.eval.judges.config import CTC, SPEAKER_JUDGE, CTCConfig, SpeakerJudgeConfig

    limit = cfg["probe"].get("max_train_utts")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UserError(f"{path}: section probe: max_train_utts must be a positive integer, got {limit!r}")
    probe = {k: v for k, v in cfg["probe"].items() if k != "max_train_utts"}
    for name, values, section in (("speaker", cfg["speaker"], SPEAKER_JUDGE), ("content", cfg["content"], CTC),
                                  ("probe", probe, CTC), ("swap", cfg["swap"], SWAP)):
        check_section(name, values, section, str(path))
    checks = (("speaker", lambda: SpeakerJudgeConfig.from_dict(cfg["speaker"])),
              ("content", lambda: CTCConfig.from_dict(cfg["content"])),
              ("probe", lambda: CTCConfig.from_dict(probe)))
    for name, check in checks:
        try:
            check()
        except (UserError, TypeError, ValueError) as e:
            raise UserError(f"{path}: section {name}: {e}") from None


def read_transcripts(data_dir: str | os.PathLike) -> dict[str, list[str]]:
    """``<data_dir>/units``: the unit transcript of each utterance that has one."""
    from cdsvae.eval.judges.units import read_units

    path = Path(data_dir) / "units"
    if not path.is_file():
        raise UserError(f"{path}: not found: the content judge needs unit transcripts, which the recipe's "
                        "data preparation (local/data.sh) writes")
    return read_units(path)


def read_features(feats_dir: str | os.PathLike, utts: Sequence[str] | None = None,
                  feat_dim: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Raw log-mel matrices of a feature dir (or of ``utts`` of it) and its utt2spk."""
    from cdsvae.eval.metrics.embeddings import iter_feature_matrices, read_feature_table

    feats_dir = Path(feats_dir)
    table, utt2spk = read_feature_table(feats_dir)
    if utts is not None:
        missing = [u for u in utts if u not in table]
        if missing:
            raise UserError(f"{feats_dir / 'feats.scp'}: no features for utterance {missing[0]}")
        table = {u: table[u] for u in utts}
    return dict(iter_feature_matrices(table, feats_dir / "feats.scp", feat_dim)), utt2spk


class ContentJudge:
    """A trained CTC recogniser and its units: ``transcribe(mats)`` gives unit sequences."""

    def __init__(self, model, units, description: str = "", batch_size: int = 32):
        self.model, self.units, self.description, self.batch_size = model, units, description, batch_size

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "ContentJudge":
        from cdsvae.eval.judges.ctc import load_recogniser

        model, units, extra = load_recogniser(path, device)
        return cls(model, units, str(extra.get("description", "")))

    def transcribe(self, mats: Sequence[np.ndarray]) -> list[list[str]]:
        from cdsvae.eval.judges.ctc import recognise

        return recognise(self.model, list(mats), self.units, self.batch_size)


def fit_recogniser(inputs: Mapping[str, np.ndarray], transcripts: Mapping[str, Sequence[str]],
                   cfg: Mapping[str, Any], workdir: str | os.PathLike, device: str = "cpu",
                   progress: bool = False, what: str = "recogniser") -> ContentJudge:
    """Train a CTC recogniser on the utterances of ``inputs`` that have a transcript; the units
    are those of the training transcripts. Saved to ``workdir/model.pt`` (resumable in ``workdir``)."""
    from cdsvae.eval.judges.ctc import CTCConfig, save_recogniser, train_ctc
    from cdsvae.eval.judges.units import Units

    workdir = Path(workdir)
    utts = sorted(u for u in inputs if u in transcripts and len(transcripts[u]) > 0)
    if not utts:
        raise UserError(f"{what}: no training utterance has a unit transcript")
    units = Units.from_transcripts({u: transcripts[u] for u in utts})
    ctc_cfg = CTCConfig.from_dict(cfg)
    workdir.mkdir(parents=True, exist_ok=True)
    targets = [units.encode(transcripts[u], where=u) for u in utts]
    model = train_ctc([inputs[u] for u in utts], targets, len(units), ctc_cfg, workdir=workdir, device=device,
                      progress=progress)
    description = (f"CTC {ctc_cfg.frontend} front-end + {ctc_cfg.layers}x{ctc_cfg.hidden} BiLSTM, {len(units)} units, "
                   f"{len(utts)} training utterances")
    save_recogniser(workdir / "model.pt", model, units, {"description": description, "what": what})
    return ContentJudge(model, units, description)


def judge_record(judge_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``judge.json`` of a judge dir, or None when there is none (or it cannot be read)."""
    path = Path(judge_dir) / JUDGE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_judge_record(judge_dir: str | os.PathLike, record: Mapping[str, Any]) -> None:
    atomic_write_text(Path(judge_dir) / JUDGE_FILE, json.dumps(record, indent=2) + "\n")


def prepare_training(workdir: Path, stamp: Mapping[str, Any]) -> bool:
    """True when ``workdir`` holds a finished judge with this stamp. Otherwise the dir is made
    ready to (re)train: a checkpoint left by a training with another stamp is removed (it was
    trained on other data or options), one with this stamp is kept and resumed."""
    record = judge_record(workdir)
    if record is not None and record.get("stamp") == stamp and record.get("complete"):
        return True
    progress_path = workdir / "training.json"
    try:
        previous = json.loads(progress_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        previous = None
    if previous != json.loads(json.dumps(stamp)):
        for name in ("checkpoint", "checkpoint.pt"):
            target = workdir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(progress_path, json.dumps(stamp, indent=2) + "\n")
    return False


def load_speaker_judge_of(judge_dir: str | os.PathLike, device: str = "cpu"):
    """The speaker judge that stage 5 trained (or was given) in ``judge_dir``."""
    from cdsvae.eval.judges.speaker import load_speaker_judge

    record = judge_record(judge_dir)
    if record is None or not record.get("complete"):
        raise UserError(f"{Path(judge_dir) / JUDGE_FILE}: no finished speaker judge (run stage 5)")
    spec = record["model"] if record.get("external") else Path(judge_dir) / record["model"]
    return load_speaker_judge(spec, record.get("fbank_config"), device)


def judge_embeddings(judge_dir: str | os.PathLike, test_set: str) -> dict[str, np.ndarray]:
    """The speaker judge's embeddings of the test utterances, written by stage 5 (``emb_<set>/spk.scp``)."""
    import kaldiio

    scp = Path(judge_dir) / f"emb_{test_set}" / "spk.scp"
    if not scp.is_file():
        raise UserError(f"{scp}: not found: the speaker judge has not embedded {test_set} (run stage 5)")
    return {u: np.asarray(v) for u, v in kaldiio.load_scp(str(scp)).items()}


def load_content_judge_of(judge_dir: str | os.PathLike, device: str = "cpu") -> ContentJudge:
    """The content judge that stage 5 trained in ``judge_dir``."""
    record = judge_record(judge_dir)
    if record is None or not record.get("complete"):
        raise UserError(f"{Path(judge_dir) / JUDGE_FILE}: no finished content judge (run stage 5)")
    return ContentJudge.load(Path(judge_dir) / record["model"], device)


def smaller_config(config_path: str | os.PathLike) -> Path | None:
    """``tuning/judges_cpu.yaml`` beside a recipe's judge config, when there is one: the judges
    sized for a CPU run or a small subset, which a gate's error names."""
    path = Path(config_path).parent / "tuning" / "judges_cpu.yaml"
    return path if path.is_file() else None


def judge_label(kind: str, description: str) -> str:
    """``speaker judge (<description>)``, or the description alone when it already says what it is."""
    if f"{kind} judge" in description:
        return description
    return f"{kind} judge ({description})" if description else f"{kind} judge"


def check_gates(judge_root: str | os.PathLike, gate: Mapping[str, Any], test_set: str,
                config_path: str | os.PathLike, emit: Callable[[str], None] | None = None,
                kinds: Sequence[str] = ("speaker", "content")) -> list[str]:
    """One line per judge of ``kinds`` with its test figure and gate; a judge above its gate is a
    UserError. ``emit`` gets each line as it is made, so the figures of every judge checked are
    shown before the error of one that missed its gate."""
    lines = []
    checks = (("speaker", "eer", "max_speaker_eer", "EER"), ("content", "error_rate", "max_content_error",
                                                            "unit error rate"))
    for kind, key, gate_key, label in (c for c in checks if c[0] in kinds):
        record = judge_record(Path(judge_root) / kind)
        if record is None or test_set not in record.get("eval", {}):
            raise UserError(f"{Path(judge_root) / kind / JUDGE_FILE}: no {kind} judge figures on {test_set} (run stage 5)")
        value = 100 * float(record["eval"][test_set][key])
        limit = gate.get(gate_key)
        bound = "no gate" if limit is None else f"gate: at most {float(limit):g}%"
        lines.append(f"{judge_label(kind, str(record.get('description', '')))}: {label} {value:.2f}% on {test_set} "
                     f"({bound})")
        if emit is not None:
            emit(lines[-1])
        if limit is not None and value > float(limit):
            smaller = smaller_config(config_path)
            sized = f"; for a CPU run or a small subset, --judge_conf {smaller}" if smaller else ""
            raise UserError(f"{Path(judge_root) / kind}: the {kind} judge's {label} on {test_set} is {value:.2f}%, "
                            f"above the gate of {float(limit):g}% ({config_path}: gate.{gate_key}); train it longer "
                            f"or larger (section {kind}{sized}) or check its data")
    return lines
