"""Disentanglement metrics of a speech model, the speech twin of the video judge metrics.

Two kinds of measurement on a frozen model (all factors are posterior means):

* **Probes.** A CTC recogniser (:mod:`cdsvae.eval.judges.ctc`) is trained on the training set to read
  the unit transcript from z_1:T, and the same recogniser from s repeated at every frame, then
  scored on the test set. z should read the content (a low error); s should not (near the
  error of a recogniser that ignores its input).
* **Swaps.** For ``n_pairs`` test pairs (A, B) of different speakers, log-mel is decoded from
  chosen factors and given to the two judges of the recipe (:mod:`cdsvae.eval.judges.speech`):

  ========== ============== ======================================= ===============================
  variant    decoded from   speaker score                           content error
  ========== ============== ======================================= ===============================
  swap       (s_A, z_B)     closer to A's speaker than B's (want 1)  against B's transcript (want low)
  random_s   (s ~ p(s), z_B) closer to B's speaker than A's (want    against B's transcript (want low)
                            about 0.5: z_B does not carry B's voice)
  random_z   (s_A, z ~ p(z)) closer to A's speaker than B's (want 1)  against B's transcript (want high)
  ========== ============== ======================================= ===============================

  next to the references: the content judge on B's own input frames and on B's reconstruction
  (s_B, z_B), the speaker judge on A's own input, and on B's reconstruction (closer to B's
  speaker than to A's: what the decoder keeps of the voice when nothing is swapped). Each of ``n_draws`` draws takes other
  pairs and other prior samples; figures are reported as mean ± std over the draws.

Speakers are represented by the mean judge embedding of their other test utterances
(:func:`cdsvae.eval.metrics.swap.swap_speaker_score`). Without a content judge (a corpus without
transcripts) the swaps are judged for the speaker only: every speaker score is kept and no
content error is recorded.

:class:`DisentangleStage` is the whole measurement of one experiment as the recipe runs it
(``cdsvae.bin.disentangle``): it encodes the sets, runs both and writes ``results.json``, stamped so
that a rerun on the same model, judges, data and options does nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from cdsvae.eval.judges.speech import SwapConfig, fit_recogniser
from cdsvae.eval.metrics.factors import Denormaliser, UtteranceFactors, decode_frames, kept_frames
from cdsvae.eval.metrics.per import ErrorCounts, align_counts, fold_units
from cdsvae.eval.metrics.swap import different_speaker_pairs, swap_speaker_score
from cdsvae.io import UserError

log = logging.getLogger(__name__)

VARIANTS = ("swap", "random_s", "random_z")


def counts_dict(c: ErrorCounts) -> dict[str, Any]:
    """An :class:`ErrorCounts` as plain JSON values, with its rate."""
    return {**asdict(c), "rate": c.rate}


def content_errors(judge, mats: Mapping[Any, np.ndarray], refs: Mapping[Any, Sequence[str]],
                   unit_map: Mapping[str, str | None] | None) -> ErrorCounts:
    """The content judge's unit errors on ``mats`` (raw log-mel) against ``refs`` (same keys)."""
    keys = [k for k in mats if k in refs]
    if not keys:
        raise UserError("no utterance with a transcript to score the content judge on")
    hyps = judge.transcribe([mats[k] for k in keys])
    total = ErrorCounts()
    for k, hyp in zip(keys, hyps):
        ref = list(refs[k])
        if unit_map is not None:
            ref, hyp = fold_units(ref, unit_map), fold_units(hyp, unit_map)
        total = total + align_counts(ref, hyp)
    return total


def speaker_closer(speaker_judge, mats: Mapping[tuple[str, str], np.ndarray], ref_emb: Mapping[str, np.ndarray],
                   utt2spk: Mapping[str, str]) -> dict[str, float]:
    """Speaker score of decoded ``{(utt of the wanted speaker, utt of the other): log-mel}``."""
    keys = list(mats)
    vecs = speaker_judge.embed([mats[k] for k in keys])
    score = swap_speaker_score(dict(zip(keys, vecs)), ref_emb, utt2spk)
    return {"closer": score.closer_to_a, "cos_wanted": score.cos_a, "cos_other": score.cos_b, "n": score.n}


@torch.no_grad()
def swap_protocols(model: torch.nn.Module, factors: Mapping[str, UtteranceFactors], raw: Mapping[str, np.ndarray],
                   utt2spk: Mapping[str, str], units: Mapping[str, Sequence[str]], speaker_judge, content_judge,
                   ref_emb: Mapping[str, np.ndarray], denorm: Denormaliser, cfg: SwapConfig,
                   unit_map: Mapping[str, str | None] | None = None, device: str | torch.device = "cpu",
                   progress: bool = False) -> dict[str, Any]:
    """Every variant and reference of the swap protocol, one entry per draw (see the module doc).

    ``factors`` and ``raw`` (raw log-mel input) are keyed by test utterance, ``ref_emb`` holds the
    speaker judge's embeddings of the test utterances, ``units`` their transcripts. With
    ``content_judge`` None only the speaker scores are measured (``units`` is not read).
    """
    from tqdm import tqdm

    model.eval()
    utts = {u: utt2spk[u] for u in factors if u in utt2spk}
    inputs = kept_frames(raw, factors)
    draws: list[dict[str, Any]] = []
    for d in tqdm(range(cfg.n_draws), desc="swap draws", disable=not progress):
        pairs = different_speaker_pairs(utts, cfg.n_pairs, seed=cfg.seed + d)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + d)
        decoded: dict[str, dict[tuple[str, str], np.ndarray]] = {v: {} for v in VARIANTS}
        recon_b: dict[str, np.ndarray] = {}
        for a, b in pairs:
            fa, fb = factors[a], factors[b]
            decoded["swap"][(a, b)] = denorm(decode_frames(model, fa.s, fb.z, device=device))
            s_rand = model.sample_s(1, generator=gen)[0].float().cpu().numpy()
            decoded["random_s"][(b, a)] = denorm(decode_frames(model, s_rand, fb.z, device=device))
            n, length = fb.z.shape[:2]
            z_rand = model.sample_z_prior(n, length, generator=gen).float().cpu().numpy()
            decoded["random_z"][(a, b)] = denorm(decode_frames(model, fa.s, z_rand, device=device))
            if b not in recon_b:
                recon_b[b] = denorm(decode_frames(model, fb.s, fb.z, device=device))
        draw: dict[str, Any] = {"pairs": [list(p) for p in pairs]}
        for v in VARIANTS:
            z_source = (lambda k: k[0]) if v == "random_s" else (lambda k: k[1])
            mats = decoded[v]
            entry = speaker_closer(speaker_judge, mats, ref_emb, utt2spk)
            if content_judge is not None:
                entry["content"] = counts_dict(content_errors(
                    content_judge, mats, {k: units[z_source(k)] for k in mats if z_source(k) in units}, unit_map))
            draw[v] = entry
        draw["reconstruction_b"] = speaker_closer(speaker_judge, {(b, a): recon_b[b] for a, b in pairs}, ref_emb,
                                                  utt2spk)
        if content_judge is not None:
            b_utts = sorted({b for _, b in pairs})
            draw["input_b"] = {"content": counts_dict(content_errors(
                content_judge, {b: inputs[b] for b in b_utts}, units, unit_map))}
            draw["reconstruction_b"]["content"] = counts_dict(content_errors(content_judge, recon_b, units, unit_map))
        draw["input_a"] = speaker_closer(speaker_judge, {(a, b): inputs[a] for a, b in pairs}, ref_emb, utt2spk)
        draws.append(draw)
    return {"config": asdict(cfg), "draws": draws, "summary": summarise_draws(draws)}


def summarise_draws(draws: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per variant or reference: the speaker score and content error rate of every draw."""
    out: dict[str, dict[str, list[float]]] = {}
    for name in (*VARIANTS, "input_a", "input_b", "reconstruction_b"):
        entry: dict[str, list[float]] = {}
        for draw in draws:
            if name not in draw:
                continue
            if "closer" in draw[name]:
                entry.setdefault("speaker", []).append(float(draw[name]["closer"]))
            if "content" in draw[name]:
                entry.setdefault("content_error", []).append(float(draw[name]["content"]["rate"]))
        out[name] = entry
    return out


def probe_inputs(factors: Mapping[str, UtteranceFactors], factor: str) -> dict[str, np.ndarray]:
    """Per-frame probe inputs: z_1:T, or s repeated at every frame."""
    if factor == "z":
        return {u: f.z_frames for u, f in factors.items()}
    if factor == "s":
        return {u: f.s_broadcast() for u, f in factors.items()}
    raise ValueError(f"factor must be 's' or 'z', got {factor!r}")


def run_probes(train: Mapping[str, UtteranceFactors], test: Mapping[str, UtteranceFactors],
               train_units: Mapping[str, Sequence[str]], test_units: Mapping[str, Sequence[str]],
               probe_cfg: Mapping[str, Any], workdir: Path, unit_map: Mapping[str, str | None] | None = None,
               device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Train a CTC probe on each factor of the training utterances; unit errors on the test ones."""
    out: dict[str, Any] = {}
    for factor in ("z", "s"):
        x_train = probe_inputs(train, factor)
        judge = fit_recogniser(x_train, train_units, probe_cfg, workdir / f"probe_{factor}", device=device,
                               progress=progress, what=f"probe from {factor}")
        out[factor] = counts_dict(content_errors(judge, probe_inputs(test, factor), test_units, unit_map))
        log.info("probe from %s: unit error rate %.2f%%", factor, 100 * out[factor]["rate"])
    return out


RESULTS = "results.json"


def _digest(path: Path | None) -> str | None:
    from cdsvae.experiment.inputs import file_digest

    return None if path is None or not path.is_file() else file_digest(path)


def encode_set(model, feats_dir: Path, normalise, segment_frames: int, device: str, max_utts: int | None = None):
    """Factors of the utterances of a feature dir (at most ``max_utts``, evenly spaced), and the raw
    log-mel and utt2spk of those encoded; utterances shorter than one segment are left out."""
    from cdsvae.eval.metrics.embeddings import evenly_spaced_subset, iter_feature_matrices, read_feature_table
    from cdsvae.eval.metrics.factors import encode_factors

    table, utt2spk = read_feature_table(feats_dir)
    if max_utts is not None:
        table = evenly_spaced_subset(table, int(max_utts))
    raw = {u: m for u, m in iter_feature_matrices(table, feats_dir / "feats.scp", None)
           if m.shape[0] >= segment_frames}
    short = len(table) - len(raw)
    if short:
        log.info("%s: %d utterance(s) shorter than one segment (%d frames) left out", feats_dir, short, segment_frames)
    if not raw:
        raise UserError(f"{feats_dir / 'feats.scp'}: no utterance has {segment_frames} frames or more")
    factors = encode_factors(model, ((u, normalise(m)) for u, m in raw.items()), segment_frames, device=device)
    return factors, raw, utt2spk, short


def fresh_probes(outdir: Path, stamp: dict[str, Any]) -> None:
    """Probe checkpoints left by a run with another stamp (another model, judges, data or options)
    are removed; those of an interrupted run with this stamp are kept and resumed."""
    import shutil

    from cdsvae.io import atomic_write_text

    record = outdir / "running.json"
    try:
        same = json.loads(record.read_text(encoding="utf-8")) == stamp
    except (OSError, json.JSONDecodeError):
        same = False
    if not same:
        for name in ("probe_z", "probe_s"):
            shutil.rmtree(outdir / name, ignore_errors=True)
        atomic_write_text(record, json.dumps(stamp, indent=1) + "\n")


@dataclass
class DisentangleStage:
    """The disentanglement measurement of the experiment ``expdir`` with the judges of ``judge_dir``
    (config sections ``probe`` and ``swap``), written to ``outdir/results.json``."""

    expdir: Path
    judge_dir: Path
    config: Path
    train_feats: Path
    train_data: Path
    test_feats: Path
    test_data: Path
    outdir: Path
    unit_map: Path | None = None
    content: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        """Reads the config and checks that the judges are finished, before any model is loaded."""
        from cdsvae.eval.judges.speech import judge_embeddings, judge_record, read_judge_config
        from cdsvae.eval.metrics.per import read_unit_map

        self.cfg = read_judge_config(self.config)
        self.probe_cfg = dict(self.cfg["probe"])
        self.max_train_utts = self.probe_cfg.pop("max_train_utts", None)
        self.swap_cfg = SwapConfig(**self.cfg["swap"])
        self.units = read_unit_map(self.unit_map) if self.unit_map is not None else None
        self.test_set = self.test_data.name
        kinds = ("speaker", "content") if self.content else ("speaker",)
        self.records = {k: judge_record(self.judge_dir / k) for k in kinds}
        for kind, record in self.records.items():
            if record is None or not record.get("complete"):
                raise UserError(f"{self.judge_dir / kind}: no finished {kind} judge (run stage 5)")
        self.ref_emb = judge_embeddings(self.judge_dir / "speaker", self.test_set)

    def stamp(self, checkpoint) -> dict[str, Any]:
        """What the results depend on: the model's weights, the options, the judges and the data."""
        ref_scp = self.judge_dir / "speaker" / f"emb_{self.test_set}" / "spk.scp"
        stamp = {
            "checkpoint": checkpoint, "weights": _digest(self.expdir / str((checkpoint or {}).get("file", ""))),
            "probe": self.cfg["probe"], "swap": self.cfg["swap"],
            "judges": {k: r["stamp"] for k, r in self.records.items()},
            "speaker_emb": _digest(ref_scp), "train_feats": _digest(self.train_feats / "feats.scp"),
            "test_feats": _digest(self.test_feats / "feats.scp"), "content": self.content,
        }
        if self.content:
            stamp.update(train_units=_digest(self.train_data / "units"), test_units=_digest(self.test_data / "units"),
                         unit_map=_digest(self.unit_map))
        return json.loads(json.dumps(stamp))

    def up_to_date(self, stamp: dict[str, Any]) -> bool:
        out = self.outdir / RESULTS
        if out.is_file():
            try:
                if json.loads(out.read_text(encoding="utf-8")).get("stamp") == stamp:
                    log.info("%s: up to date (same model, judges, data and options)", out)
                    return True
            except json.JSONDecodeError:
                pass
        return False

    def run(self, model, mcfg: Mapping[str, Any], checkpoint) -> dict[str, Any] | None:
        """Probes and swaps of the loaded model (config ``mcfg``, weights ``checkpoint``), written to
        ``outdir/results.json`` and returned; None when that file is up to date."""
        from cdsvae.eval.judges.speech import load_content_judge_of, load_speaker_judge_of, read_transcripts
        from cdsvae.eval.metrics.embeddings import speech_model_settings
        from cdsvae.io import atomic_write_text

        segment_frames, normalise = speech_model_settings(mcfg, self.expdir)
        stamp = self.stamp(checkpoint)
        if self.up_to_date(stamp):
            return None
        self.outdir.mkdir(parents=True, exist_ok=True)
        fresh_probes(self.outdir, stamp)

        log.info("encoding %s and %s with %s", self.train_feats, self.test_feats, self.expdir)
        test_factors, test_raw, utt2spk, n_short = encode_set(model, self.test_feats, normalise, segment_frames,
                                                              self.device)
        probes, content, test_units, n_train = None, None, {}, 0
        if self.content:
            train_units, test_units = read_transcripts(self.train_data), read_transcripts(self.test_data)
            train_factors, _, _, _ = encode_set(model, self.train_feats, normalise, segment_frames, self.device,
                                                self.max_train_utts)
            n_train = len(train_factors)
            probes = run_probes(train_factors, test_factors, train_units, test_units, self.probe_cfg, self.outdir,
                                self.units, device=self.device, progress=True)
            content = load_content_judge_of(self.judge_dir / "content", self.device)
        else:
            log.info("content is not measured (--content false): the speaker judge alone judges the swaps")

        speaker = load_speaker_judge_of(self.judge_dir / "speaker", self.device)
        swap = swap_protocols(model, test_factors, test_raw, utt2spk, test_units, speaker, content, self.ref_emb,
                              Denormaliser(mcfg.get("data", {}).get("cmvn")), self.swap_cfg, self.units,
                              device=self.device, progress=True)
        result: dict[str, Any] = {
            "stamp": stamp, "set": self.test_set, "n_test_utts": len(test_factors), "n_too_short": n_short,
            "n_train_utts": n_train, "folded": self.units is not None and self.content, "content": self.content,
            "judges": {k: r.get("description", "") for k, r in self.records.items()},
            "probes": probes, "swap": swap,
        }
        atomic_write_text(self.outdir / RESULTS, json.dumps(result, indent=1) + "\n")
        return result

    def summary(self, result: Mapping[str, Any]) -> str:
        """One line of the figures, for the console."""
        s, probes = result["swap"]["summary"], result["probes"]
        speaker_side = (f"swap speaker {np.mean(s['swap']['speaker']):.3f}, "
                        f"random s {np.mean(s['random_s']['speaker']):.3f}, "
                        f"random z {np.mean(s['random_z']['speaker']):.3f}")
        if self.content:
            return (f"{self.expdir.name}: probe error z {100 * probes['z']['rate']:.1f}%, "
                    f"s {100 * probes['s']['rate']:.1f}%; {speaker_side}; "
                    f"swap content error {100 * np.mean(s['swap']['content_error']):.1f}%")
        return f"{self.expdir.name}: {speaker_side}; content not measured (no transcripts)"

