"""Train (or take) a judge of a speech recipe and measure it on the test set; check the judges' gates.

    python -m cdsvae.bin.train_speech_judge --judge speaker --config conf/judges.yaml \\
        --train_feats dump/train --train_data data/train --test_feats dump/test --test_data data/test \\
        --outdir exp/judge/speaker
    python -m cdsvae.bin.train_speech_judge --check --config conf/judges.yaml --judge_dir exp/judge \\
        --test_data data/test

``--judge speaker`` trains an ECAPA-TDNN on the training speakers (section ``speaker`` of the
config), or with ``--external DIR`` takes a pretrained speechbrain speaker model instead; it
embeds the test utterances (``OUTDIR/emb_<set>/spk.scp``) and scores all their pairs (EER,
minDCF). ``--judge content`` trains a CTC recogniser of ``<train_data>/units`` (section
``content``) and scores its unit error rate on ``<test_data>/units`` (folded by ``--unit_map``).
``OUTDIR/judge.json`` records the judge, a stamp of its options and inputs, and its figures; a
rerun with the same stamp neither trains nor scores again. ``--check`` prints both judges'
figures and exits 1 with one line when one is above its gate (section ``gate``); with
``--content false`` (a corpus without transcripts) it checks the speaker judge alone.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Sequence

from cdsvae.bin import run_main, str2bool
from cdsvae.errors import UserError

log = logging.getLogger("cdsvae.bin.train_speech_judge")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cdsvae.bin.train_speech_judge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--judge", choices=("speaker", "content"), help="which judge to train")
    p.add_argument("--check", action="store_true", help="check both judges of --judge_dir against the gates")
    p.add_argument("--config", type=Path, required=True, help="judge config (sections speaker, content, gate, ...)")
    p.add_argument("--train_feats", type=Path, help="feature dir of the training set (feats.scp, utt2spk, cmvn.npz)")
    p.add_argument("--train_data", type=Path, help="data dir of the training set (units)")
    p.add_argument("--test_feats", type=Path, help="feature dir of the test set")
    p.add_argument("--test_data", type=Path, help="data dir of the test set (units); its name names the test set")
    p.add_argument("--outdir", type=Path, help="the judge's directory, e.g. exp/judge/speaker")
    p.add_argument("--judge_dir", type=Path, help="with --check: the directory of both judges, e.g. exp/judge")
    p.add_argument("--unit_map", type=Path, default=None, help="folding map of the units for scoring")
    p.add_argument("--external", default=None, help="speaker: a pretrained speechbrain model dir to use instead")
    p.add_argument("--content", type=str2bool, default=True,
                   help="with --check: check the content judge too (false: the corpus has no transcripts and no "
                        "content judge; default: %(default)s)")
    p.add_argument("--device", default="cpu")
    return p


def _need(args, *names: str) -> None:
    for name in names:
        if getattr(args, name) is None:
            raise UserError(f"--{name} is required{' with --check' if args.check else f' for --judge {args.judge}'}")


def _digest(path: Path | None) -> str | None:
    from cdsvae.experiment.inputs import file_digest

    if path is None:
        return None
    if not path.is_file():
        raise UserError(f"{path}: not found")
    return file_digest(path)


def speaker_judge(args, section: dict[str, Any]) -> dict[str, Any]:
    from cdsvae.data.feats import CMVNStats
    from cdsvae.eval.judges.speaker import SpeakerJudgeConfig, load_speaker_judge, train_speaker_judge
    from cdsvae.eval.judges.speech import prepare_training, read_features

    fbank = args.train_feats / "fbank.yaml"
    if args.external:
        ext = Path(args.external).resolve()
        stamp = {"kind": "speaker", "external": str(ext), "fbank": _digest(fbank)}
        judge = load_speaker_judge(ext, fbank, args.device)
        model = str(ext)
    else:
        cfg = SpeakerJudgeConfig.from_dict(section)
        cmvn = args.train_feats / "cmvn.npz"
        stamp = {"kind": "speaker", "config": section, "feats": _digest(args.train_feats / "feats.scp"),
                 "utt2spk": _digest(args.train_feats / "utt2spk"), "cmvn": _digest(cmvn)}
        if prepare_training(args.outdir, stamp):
            log.info("%s: the speaker judge is up to date (same options and data)", args.outdir)
            judge = load_speaker_judge(args.outdir / "judge.pt", fbank, args.device)
        else:
            feats, utt2spk = read_features(args.train_feats)
            log.info("training the speaker judge on %d utterances of %d speakers", len(feats), len(set(utt2spk.values())))
            judge = train_speaker_judge(feats, utt2spk, CMVNStats.load(cmvn), cfg, args.outdir, args.device)
        model = "judge.pt"
    return {"kind": "speaker", "stamp": stamp, "model": model, "external": bool(args.external),
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


def content_judge(args, section: dict[str, Any]) -> dict[str, Any]:
    from cdsvae.eval.judges.speech import (ContentJudge, fit_recogniser, prepare_training, read_features,
                                           read_transcripts)

    stamp = {"kind": "content", "config": section, "feats": _digest(args.train_feats / "feats.scp"),
             "units": _digest(args.train_data / "units")}
    if prepare_training(args.outdir, stamp):
        log.info("%s: the content judge is up to date (same options and data)", args.outdir)
        judge = ContentJudge.load(args.outdir / "model.pt", args.device)
    else:
        transcripts = read_transcripts(args.train_data)
        feats, _ = read_features(args.train_feats)
        log.info("training the content judge on %d utterances", sum(u in transcripts for u in feats))
        judge = fit_recogniser(feats, transcripts, section, args.outdir, args.device, progress=True,
                               what="content judge")
    return {"kind": "content", "stamp": stamp, "model": "model.pt", "description": judge.description, "judge": judge}


def content_figures(judge, test_feats: Path, test_data: Path, unit_map) -> dict[str, Any]:
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from cdsvae.eval.metrics.per import read_unit_map
    from cdsvae.eval.judges.speech import check_gates, judge_label, judge_record, read_judge_config, write_judge_record

    cfg = read_judge_config(args.config)
    if args.check:
        _need(args, "judge_dir", "test_data")
        kinds = ("speaker", "content") if args.content else ("speaker",)
        check_gates(args.judge_dir, cfg["gate"], args.test_data.name, args.config,
                    emit=lambda line: print(line, flush=True), kinds=kinds)
        return 0
    if args.judge is None:
        raise UserError("give --judge speaker|content, or --check")
    _need(args, "train_feats", "test_feats", "test_data", "outdir")
    if args.judge == "content":
        _need(args, "train_data")
    if args.external and args.judge != "speaker":
        raise UserError("--external names a speaker model; it is only for --judge speaker")
    unit_map = read_unit_map(args.unit_map) if args.unit_map is not None else None
    args.outdir.mkdir(parents=True, exist_ok=True)
    previous = judge_record(args.outdir)
    made = (speaker_judge if args.judge == "speaker" else content_judge)(args, cfg[args.judge])
    judge = made.pop("judge")
    test_set = args.test_data.name
    scored_with = {"test_feats": _digest(args.test_feats / "feats.scp"),
                   "test_units": _digest(args.test_data / "units") if args.judge == "content" else None,
                   "unit_map": _digest(args.unit_map)}
    figures = {}
    if previous is not None and previous.get("stamp") == made["stamp"] and previous.get("complete"):
        figures = {k: v for k, v in previous.get("eval", {}).items() if v.get("scored_with") == scored_with}
    if test_set not in figures:
        log.info("scoring the %s judge on %s", args.judge, test_set)
        if args.judge == "speaker":
            result = speaker_figures(judge, args.test_feats, args.outdir, test_set)
        else:
            result = content_figures(judge, args.test_feats, args.test_data, unit_map)
        figures[test_set] = {**result, "scored_with": scored_with}
    write_judge_record(args.outdir, {**made, "complete": True, "eval": figures})
    key, label = ("eer", "EER") if args.judge == "speaker" else ("error_rate", "unit error rate")
    print(f"{judge_label(args.judge, made['description'])}: {label} {100 * figures[test_set][key]:.2f}% on {test_set}")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
