"""The result files of a scored speech experiment, read into table rows.

``load_experiment`` reads ``config.yaml``, ``score_<set>/results.json`` and ``emb_<set>/meta.json``
of one experiment into an :class:`ExperimentResult`; every number in a speech report comes from
such a row. Reading only: nothing is rescored here.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from cdsvae.eval.report.experiment import load_config, system_label
from cdsvae.io import UserError

@dataclass(frozen=True)
class Scores:
    """EER (fractions) and minDCF of s and of z under one scoring."""

    eer_s: float
    eer_z: float
    min_dcf_s: float
    min_dcf_z: float

    @property
    def gap(self) -> float:
        return self.eer_z - self.eer_s


@dataclass(frozen=True)
class ExperimentResult:
    """One row of a results table: raw cosine scores, and optionally mean-normalised ones.

    ``group`` is the tag without its ``_seed<N>`` suffix, so the seeds of one config share it;
    ``checkpoint`` is what the extraction recorded about the weights it used.
    """

    expdir: Path
    tag: str
    system: str
    eer_s: float
    eer_z: float
    min_dcf_s: float
    min_dcf_z: float
    n_target: int
    n_nontarget: int
    mean_norm: Scores | None = None
    seed: int | None = None
    checkpoint: Mapping[str, Any] | None = None
    n_utts: int | None = None  # utterances of the test set (utt2spk), None when not recorded
    without_embedding: Sequence[str] = ()  # of them, left out of the trials (skipped in an earlier stage)

    @property
    def gap(self) -> float:
        """EER(z) - EER(s) as a fraction: large when s carries the speaker and z does not."""
        return self.scores().gap

    @property
    def n_trials(self) -> int:
        return self.n_target + self.n_nontarget

    @property
    def group(self) -> str:
        return SEED_SUFFIX.sub("", self.tag)

    def scores(self, scoring: str = "cosine") -> Scores | None:
        """The figures of one scoring: "cosine" (raw) or "mean_norm" (None when not scored)."""
        if scoring == "cosine":
            return Scores(self.eer_s, self.eer_z, self.min_dcf_s, self.min_dcf_z)
        if scoring == "mean_norm":
            return self.mean_norm
        raise ValueError(f"unknown scoring {scoring!r}; expected cosine or mean_norm")


SEED_SUFFIX = re.compile(r"_seed\d+$")
SCORINGS = {"cosine": "cosine", "mean_norm": "cosine after subtracting the training-set mean embedding"}


def _scores(entry: Mapping[str, Any]) -> Scores:
    return Scores(float(entry["s"]["eer"]), float(entry["z"]["eer"]),
                  float(entry["s"]["min_dcf"]), float(entry["z"]["min_dcf"]))


def load_experiment(expdir: str | os.PathLike, test_set: str = "test") -> ExperimentResult:
    """The table row of ``expdir`` from its config.yaml, ``score_<set>/results.json`` and ``emb_<set>/meta.json``."""
    expdir = Path(expdir)
    cfg = load_config(expdir)
    path = expdir / f"score_{test_set}" / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: results not found (run the scoring stage first)")
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
        cosine = _scores(res)
        mean_norm = _scores(res["mean_norm"]) if "mean_norm" in res else None
        n_target, n_nontarget = int(res["n_target"]), int(res["n_nontarget"])
        n_utts = int(res["n_utts"]) if "n_utts" in res else None
        without = [str(u) for u in res.get("without_embedding", [])]
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except (KeyError, TypeError) as e:
        raise UserError(f"{path}: missing or malformed entry {e}") from None
    checkpoint = None
    meta = expdir / f"emb_{test_set}" / "meta.json"
    if meta.is_file():
        try:
            checkpoint = json.loads(meta.read_text(encoding="utf-8")).get("checkpoint")
        except (json.JSONDecodeError, AttributeError):
            raise UserError(f"{meta}: not a valid embeddings meta.json") from None
    seed = (cfg.get("train") or {}).get("seed")
    return ExperimentResult(expdir=expdir, tag=expdir.name, system=system_label(cfg), eer_s=cosine.eer_s,
                            eer_z=cosine.eer_z, min_dcf_s=cosine.min_dcf_s, min_dcf_z=cosine.min_dcf_z,
                            n_target=n_target, n_nontarget=n_nontarget, mean_norm=mean_norm,
                            seed=None if seed is None else int(seed), checkpoint=checkpoint, n_utts=n_utts,
                            without_embedding=without)
