"""Disentanglement metrics of one speech experiment: CTC probes of z and s, and judged swaps.

    python -m cdsvae.bin.disentangle --expdir exp/cdsvae --judge_dir exp/judge --config conf/judges.yaml \\
        --train_feats dump/train --train_data data/train --test_feats dump/test --test_data data/test \\
        --outdir exp/cdsvae/disentangle_test

Encodes the training and test utterances with the experiment's model, trains a CTC probe on
z_1:T and one on s repeated at every frame (section ``probe`` of the config; ``max_train_utts``
caps the training utterances, evenly spaced), scores both on the test units, and runs the swap
protocol of :mod:`cdsvae.eval.metrics.disentangle` (section ``swap``) with the judges of ``--judge_dir``
(stage 5). With ``--content false`` (a corpus without transcripts: no content judge, no units)
only the speaker side is measured: the swaps are judged by the speaker judge alone, there are
no probes, and results.json records ``"content": false``. Writes ``OUTDIR/results.json``; a rerun with the same model, judges, data and
options finds it up to date and does nothing. Test utterances shorter than one segment are
left out and counted.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from cdsvae.bin import run_main, str2bool
from cdsvae.errors import UserError

log = logging.getLogger("cdsvae.bin.disentangle")
RESULTS = "results.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cdsvae.bin.disentangle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--expdir", type=Path, required=True, help="the experiment")
    p.add_argument("--judge_dir", type=Path, required=True, help="the judges of stage 5 (speaker/, content/)")
    p.add_argument("--config", type=Path, required=True, help="judge config (sections probe and swap)")
    p.add_argument("--train_feats", type=Path, required=True, help="feature dir of the training set")
    p.add_argument("--train_data", type=Path, required=True, help="data dir of the training set (units)")
    p.add_argument("--test_feats", type=Path, required=True, help="feature dir of the test set")
    p.add_argument("--test_data", type=Path, required=True, help="data dir of the test set (units)")
    p.add_argument("--outdir", type=Path, required=True, help="where results.json goes")
    p.add_argument("--unit_map", type=Path, default=None, help="folding map of the units for scoring")
    p.add_argument("--content", type=str2bool, default=True,
                   help="measure content: CTC probes and the content judge on the swaps (false: the corpus has no "
                        "transcripts; the speaker-side figures only; default: %(default)s)")
    p.add_argument("--device", default="cpu")
    return p


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    import numpy as np

    from cdsvae.eval.metrics.disentangle import SwapConfig, run_probes, swap_protocols
    from cdsvae.eval.metrics.embeddings import speech_model_settings
    from cdsvae.eval.metrics.factors import Denormaliser
    from cdsvae.eval.metrics.per import read_unit_map
    from cdsvae.eval.judges.speech import (judge_embeddings, judge_record, load_content_judge_of,
                                           load_speaker_judge_of, read_judge_config, read_transcripts)
    from cdsvae.io import atomic_write_text
    from cdsvae.experiment.load import load_model_with_info

    cfg = read_judge_config(args.config)
    probe_cfg = dict(cfg["probe"])
    max_train_utts = probe_cfg.pop("max_train_utts", None)
    swap_cfg = SwapConfig(**cfg["swap"])
    unit_map = read_unit_map(args.unit_map) if args.unit_map is not None else None
    test_set = args.test_data.name
    kinds = ("speaker", "content") if args.content else ("speaker",)
    records = {k: judge_record(args.judge_dir / k) for k in kinds}
    for kind, record in records.items():
        if record is None or not record.get("complete"):
            raise UserError(f"{args.judge_dir / kind}: no finished {kind} judge (run stage 5)")
    ref_emb = judge_embeddings(args.judge_dir / "speaker", test_set)
    ref_scp = args.judge_dir / "speaker" / f"emb_{test_set}" / "spk.scp"

    model, mcfg, checkpoint = load_model_with_info(args.expdir, device=args.device)
    segment_frames, normalise = speech_model_settings(mcfg, args.expdir)
    stamp = {
        "checkpoint": checkpoint, "weights": _digest(args.expdir / str((checkpoint or {}).get("file", ""))),
        "probe": cfg["probe"], "swap": cfg["swap"], "judges": {k: r["stamp"] for k, r in records.items()},
        "speaker_emb": _digest(ref_scp), "train_feats": _digest(args.train_feats / "feats.scp"),
        "test_feats": _digest(args.test_feats / "feats.scp"), "content": args.content,
    }
    if args.content:
        stamp.update(train_units=_digest(args.train_data / "units"), test_units=_digest(args.test_data / "units"),
                     unit_map=_digest(args.unit_map))
    stamp = json.loads(json.dumps(stamp))
    out = args.outdir / RESULTS
    if out.is_file():
        try:
            if json.loads(out.read_text(encoding="utf-8")).get("stamp") == stamp:
                log.info("%s: up to date (same model, judges, data and options)", out)
                print(f"{out}: up to date")
                return 0
        except json.JSONDecodeError:
            pass
    args.outdir.mkdir(parents=True, exist_ok=True)
    fresh_probes(args.outdir, stamp)

    log.info("encoding %s and %s with %s", args.train_feats, args.test_feats, args.expdir)
    test_factors, test_raw, utt2spk, n_short = encode_set(model, args.test_feats, normalise, segment_frames, args.device)
    probes, content, test_units, n_train = None, None, {}, 0
    if args.content:
        train_units, test_units = read_transcripts(args.train_data), read_transcripts(args.test_data)
        train_factors, _, _, _ = encode_set(model, args.train_feats, normalise, segment_frames, args.device,
                                            max_train_utts)
        n_train = len(train_factors)
        probes = run_probes(train_factors, test_factors, train_units, test_units, probe_cfg, args.outdir, unit_map,
                            device=args.device, progress=True)
        content = load_content_judge_of(args.judge_dir / "content", args.device)
    else:
        log.info("content is not measured (--content false): the speaker judge alone judges the swaps")

    speaker = load_speaker_judge_of(args.judge_dir / "speaker", args.device)
    swap = swap_protocols(model, test_factors, test_raw, utt2spk, test_units, speaker, content, ref_emb,
                          Denormaliser(mcfg.get("data", {}).get("cmvn")), swap_cfg, unit_map, device=args.device,
                          progress=True)
    result: dict[str, Any] = {
        "stamp": stamp, "set": test_set, "n_test_utts": len(test_factors), "n_too_short": n_short,
        "n_train_utts": n_train, "folded": unit_map is not None and args.content, "content": args.content,
        "judges": {k: r.get("description", "") for k, r in records.items()},
        "probes": probes, "swap": swap,
    }
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    s = swap["summary"]
    speaker_side = (f"swap speaker {np.mean(s['swap']['speaker']):.3f}, random s {np.mean(s['random_s']['speaker']):.3f}, "
                    f"random z {np.mean(s['random_z']['speaker']):.3f}")
    if args.content:
        print(f"{args.expdir.name}: probe error z {100 * probes['z']['rate']:.1f}%, s {100 * probes['s']['rate']:.1f}%; "
              f"{speaker_side}; swap content error {100 * np.mean(s['swap']['content_error']):.1f}%")
    else:
        print(f"{args.expdir.name}: {speaker_side}; content not measured (no transcripts)")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
