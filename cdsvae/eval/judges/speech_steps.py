"""A speech recipe's judges on disk: train (or take) the speaker or the content judge into its directory
and measure it on the test set, as ``cdsvae.bin.train_speech_judge`` does.

``make_speech_judge`` trains the judge unless its record (``judge.json``) has the same stamp of
options and inputs, scores it on the test set unless the record already holds those figures, and
writes the record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cdsvae.io import UserError

log = logging.getLogger(__name__)


def _digest(path: Path | None) -> str | None:
    """The digest of an input file (None for no file); a missing one is an error."""
    from cdsvae.experiment.inputs import file_digest

    if path is None:
        return None
    if not path.is_file():
        raise UserError(f"{path}: not found")
    return file_digest(path)


def speaker_judge(section: dict[str, Any], train_feats: Path, outdir: Path, external: str | None,
                  device: str) -> dict[str, Any]:
    """The speaker judge of ``outdir`` (trained unless up to date), or the pretrained model ``external``,
    and what its record holds."""
    from cdsvae.data.feats import CMVNStats
    from cdsvae.eval.judges.speaker import SpeakerJudgeConfig, load_speaker_judge, train_speaker_judge
    from cdsvae.eval.judges.speech import prepare_training, read_features

    fbank = train_feats / "fbank.yaml"
    if external:
        ext = Path(external).resolve()
        stamp = {"kind": "speaker", "external": str(ext), "fbank": _digest(fbank)}
        judge = load_speaker_judge(ext, fbank, device)
        model = str(ext)
    else:
        cfg = SpeakerJudgeConfig.from_dict(section)
        cmvn = train_feats / "cmvn.npz"
        stamp = {"kind": "speaker", "config": section, "feats": _digest(train_feats / "feats.scp"),
                 "utt2spk": _digest(train_feats / "utt2spk"), "cmvn": _digest(cmvn)}
        if prepare_training(outdir, stamp):
            log.info("%s: the speaker judge is up to date (same options and data)", outdir)
            judge = load_speaker_judge(outdir / "judge.pt", fbank, device)
        else:
            feats, utt2spk = read_features(train_feats)
            log.info("training the speaker judge on %d utterances of %d speakers", len(feats), len(set(utt2spk.values())))
            judge = train_speaker_judge(feats, utt2spk, CMVNStats.load(cmvn), cfg, outdir, device)
        model = "judge.pt"
    return {"kind": "speaker", "stamp": stamp, "model": model, "external": bool(external),
            "fbank_config": str(fbank.resolve()), "description": judge.name, "judge": judge}


def speaker_figures(judge, test_feats: Path, outdir: Path, test_set: str) -> dict[str, Any]:
    """EER and minDCF of the judge's embeddings over all pairs of the test utterances."""
    import numpy as np

    from cdsvae.eval.metrics.eer import compute_eer, compute_min_dcf
    from cdsvae.eval.metrics.embeddings import read_feature_table, write_vectors
    from cdsvae.eval.metrics.scoring import cosine_scores
    from cdsvae.eval.judges.speaker import embed_feature_dir
    from cdsvae.eval.metrics.trials import all_pairs_trials

    _, utt2spk = read_feature_table(test_feats)
    emb = embed_feature_dir(judge, test_feats, progress=True)
    write_vectors(outdir / f"emb_{test_set}", "spk", emb)
    trials = all_pairs_trials({u: utt2spk[u] for u in emb})
    matrix = np.stack([emb[u] for u in trials.utts])
    scores = cosine_scores(matrix, trials.enroll_idx, trials.test_idx)
    eer, _ = compute_eer(scores[trials.target], scores[~trials.target])
    dcf = compute_min_dcf(scores[trials.target], scores[~trials.target])
    return {"eer": float(eer), "min_dcf": float(dcf), "n_utts": len(emb), "n_target": trials.n_target,
            "n_nontarget": trials.n_nontarget}


def content_judge(section: dict[str, Any], train_feats: Path, train_data: Path, outdir: Path,
                  device: str) -> dict[str, Any]:
    """The content judge of ``outdir`` (a CTC recogniser of the units, trained unless up to date) and what
    its record holds."""
    from cdsvae.eval.judges.speech import (ContentJudge, fit_recogniser, prepare_training, read_features,
                                           read_transcripts)

    stamp = {"kind": "content", "config": section, "feats": _digest(train_feats / "feats.scp"),
             "units": _digest(train_data / "units")}
    if prepare_training(outdir, stamp):
        log.info("%s: the content judge is up to date (same options and data)", outdir)
        judge = ContentJudge.load(outdir / "model.pt", device)
    else:
        transcripts = read_transcripts(train_data)
        feats, _ = read_features(train_feats)
        log.info("training the content judge on %d utterances", sum(u in transcripts for u in feats))
        judge = fit_recogniser(feats, transcripts, section, outdir, device, progress=True,
                               what="content judge")
    return {"kind": "content", "stamp": stamp, "model": "model.pt", "description": judge.description, "judge": judge}


def content_figures(judge, test_feats: Path, test_data: Path, unit_map) -> dict[str, Any]:
    """Unit error rate of the judge's transcripts of the test utterances that have units and features."""
    from cdsvae.eval.judges.ctc import score_hypotheses
    from cdsvae.eval.judges.speech import read_features, read_transcripts

    from cdsvae.data.datadir import read_scp

    refs = read_transcripts(test_data)
    have = read_scp(test_feats / "feats.scp")
    feats, _ = read_features(test_feats, utts=sorted(u for u in refs if u in have))
    utts = sorted(feats)
    if not utts:
        raise UserError(f"{test_data / 'units'}: no utterance with features in {test_feats}")
    counts = score_hypotheses([refs[u] for u in utts], judge.transcribe([feats[u] for u in utts]), unit_map)
    return {"error_rate": counts.rate, "sub": counts.sub, "dels": counts.dels, "ins": counts.ins,
            "ref_units": counts.ref_units, "n_utts": len(utts), "folded": unit_map is not None}


def make_speech_judge(kind: str, section: dict[str, Any], train_feats: Path, train_data: Path | None,
                      test_feats: Path, test_data: Path, outdir: Path, unit_map_path: Path | None = None,
                      external: str | None = None, device: str = "cpu") -> str:
    """Train or take the ``kind`` judge (speaker or content; config ``section``) in ``outdir``, score it on
    the test set named by ``test_data``, record both; returns the line of its figure."""
    from cdsvae.eval.judges.speech import judge_label, judge_record, write_judge_record
    from cdsvae.eval.metrics.per import read_unit_map

    unit_map = read_unit_map(unit_map_path) if unit_map_path is not None else None
    outdir.mkdir(parents=True, exist_ok=True)
    previous = judge_record(outdir)
    if kind == "speaker":
        made = speaker_judge(section, train_feats, outdir, external, device)
    else:
        made = content_judge(section, train_feats, train_data, outdir, device)
    judge = made.pop("judge")
    test_set = test_data.name
    scored_with = {"test_feats": _digest(test_feats / "feats.scp"),
                   "test_units": _digest(test_data / "units") if kind == "content" else None,
                   "unit_map": _digest(unit_map_path)}
    figures = {}
    if previous is not None and previous.get("stamp") == made["stamp"] and previous.get("complete"):
        figures = {k: v for k, v in previous.get("eval", {}).items() if v.get("scored_with") == scored_with}
    if test_set not in figures:
        log.info("scoring the %s judge on %s", kind, test_set)
        if kind == "speaker":
            result = speaker_figures(judge, test_feats, outdir, test_set)
        else:
            result = content_figures(judge, test_feats, test_data, unit_map)
        figures[test_set] = {**result, "scored_with": scored_with}
    write_judge_record(outdir, {**made, "complete": True, "eval": figures})
    key, label = ("eer", "EER") if kind == "speaker" else ("error_rate", "unit error rate")
    return f"{judge_label(kind, made['description'])}: {label} {100 * figures[test_set][key]:.2f}% on {test_set}"
