"""Speaker verification with the s and the z embeddings: trials, cosine scores, EER and minDCF.

    python -m cdsvae.bin.score --emb_dir exp/cdsvae/emb_test --utt2spk data/test/utt2spk \\
        --outdir exp/cdsvae/score_test

Writes ``trials`` (all pairs of the test utterances that have embeddings: one skipped in an
earlier stage is counted and left out), ``scores_s``, ``scores_z`` (``enroll test score``) and
``results.json``.

``--trials FILE`` scores a given list instead of all pairs, in either format (detected from
the first line, or named by ``--trials_format``):

    Kaldi     utt1 utt2 target|nontarget
    VoxCeleb  1|0 path1 path2      e.g. 1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav

A VoxCeleb path names the utterance whose id is the path with its extension dropped and every
'/' replaced by '-' (id10270-x6uYqmx31kE-00001), as Kaldi's VoxCeleb recipe names them. Every
utterance of the list must be in --utt2spk (else an error names the first that is not); a
trial with an utterance of the test set that has no embedding (skipped in an earlier stage)
is left out and counted, like those utterances in the all-pairs list. ``trials`` in --outdir
is then the scored list in Kaldi format, with utterance ids. With ``--mean_from
exp/cdsvae/emb_train`` it also scores after subtracting the mean embedding of that set from
every embedding (mean-normalised cosine, as speaker-verification toolkits do with the
training-set mean): ``scores_s_meannorm``, ``scores_z_meannorm`` and ``results.json["mean_norm"]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from cdsvae.bin import run_main
from cdsvae.data.datadir import read_utt2spk
from cdsvae.errors import UserError
from cdsvae.eval.metrics.scoring import mean_embedding, score_trials, write_scores
from cdsvae.eval.metrics.trials import TRIALS_FORMATS, all_pairs_trials, load_trials, select_trials, write_trials
from cdsvae.io import atomic_write_text

FACTORS = ("s", "z")


def _skipped_utterances(emb_dir: Path) -> set[str]:
    """Utterances the extraction skipped on purpose (--skip_bad), from its meta.json."""
    meta = emb_dir / "meta.json"
    if not meta.is_file():
        return set()
    try:
        return set(json.loads(meta.read_text(encoding="utf-8")).get("skipped", []))
    except (json.JSONDecodeError, AttributeError):
        raise UserError(f"{meta}: not a valid embeddings meta.json") from None


def _embedded_utterances(emb_dir: Path) -> set[str]:
    """The utterances with an s embedding (the keys of s.scp)."""
    from cdsvae.data.datadir import read_scp
    return set(read_scp(emb_dir / "s.scp"))


def _score(args: argparse.Namespace, trials, factor: str, mean, suffix: str) -> dict:
    from cdsvae.eval.metrics.eer import compute_eer, compute_min_dcf

    scores = score_trials(args.emb_dir / f"{factor}.scp", trials, mean)
    write_scores(args.outdir / f"scores_{factor}{suffix}", trials, scores)
    tgt, non = scores[trials.target], scores[~trials.target]
    eer, threshold = compute_eer(tgt, non)
    min_dcf = compute_min_dcf(tgt, non, p_target=args.p_target)
    label = f"{factor}{' (mean-normalised)' if suffix else ''}"
    print(f"{label}: EER {100 * eer:.2f}%  minDCF({args.p_target:g}) {min_dcf:.4f}")
    return {"eer": float(eer), "min_dcf": float(min_dcf), "threshold": float(threshold)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdsvae.bin.score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--emb_dir", type=Path, required=True, help="directory with s.scp and z.scp")
    parser.add_argument("--utt2spk", type=Path, required=True, help="utt2spk of the test set")
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument("--trials", type=Path, default=None,
                        help="score this trial list (Kaldi or VoxCeleb format, see above) instead of all pairs")
    parser.add_argument("--trials_format", choices=("auto",) + TRIALS_FORMATS, default="auto",
                        help="format of --trials; auto: detected from its first line (default: auto)")
    parser.add_argument("--p_target", type=float, default=0.01, help="prior of a target trial for minDCF")
    parser.add_argument("--mean_from", type=Path, default=None,
                        help="embedding dir (s.scp, z.scp) whose mean is subtracted for the mean-normalised scores")
    args = parser.parse_args(argv)

    for factor in FACTORS:
        if not (args.emb_dir / f"{factor}.scp").is_file():
            raise UserError(f"{args.emb_dir / (factor + '.scp')}: embedding scp not found")
    utt2spk = read_utt2spk(args.utt2spk)
    embedded = _embedded_utterances(args.emb_dir)
    missing = [u for u in utt2spk if u not in embedded]
    if missing:
        at_extraction = _skipped_utterances(args.emb_dir)
        n_ext = sum(u in at_extraction for u in missing)
        print(f"{len(missing)} of {len(utt2spk)} utterance(s) of {args.utt2spk} have no embedding and are left "
              f"out of the trials ({n_ext} skipped at extraction, {len(missing) - n_ext} without features): "
              f"{' '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    trials_path = args.outdir / "trials"
    extra: dict = {}
    if args.trials is not None:
        trials, fmt = load_trials(args.trials, args.trials_format, utt2spk, str(args.utt2spk))
        n_listed = len(trials)
        trials, dropped = select_trials(trials, embedded)
        extra = {"trials_from": str(args.trials), "trials_format": fmt, "n_listed_trials": n_listed,
                 "n_trials_without_embedding": n_listed - len(trials)}
        if dropped:
            print(f"{n_listed - len(trials)} of {n_listed} trial(s) of {args.trials} name an utterance without "
                  f"embedding and are left out")
        if trials_path.resolve() != args.trials.resolve():
            write_trials(trials_path, trials)
        elif fmt != "kaldi" or dropped:
            raise UserError(f"{args.trials}: is also the trials file this run writes to {args.outdir}; "
                            "give another --outdir")
    else:
        trials = all_pairs_trials({u: s for u, s in utt2spk.items() if u in embedded})
        write_trials(trials_path, trials)
    if trials.n_target == 0 or trials.n_nontarget == 0:
        raise UserError(
            f"{trials_path}: {trials.n_target} target and {trials.n_nontarget} nontarget trials; need both "
            "(every speaker needs two test utterances and there must be two speakers)"
        )

    means: dict[str, np.ndarray] = {}
    n_mean = None
    if args.mean_from is not None:
        for factor in FACTORS:
            means[factor], n_mean = mean_embedding(args.mean_from / f"{factor}.scp")

    results: dict = {}
    for factor in FACTORS:
        results[factor] = _score(args, trials, factor, None, "")
    if means:
        results["mean_norm"] = {factor: _score(args, trials, factor, means[factor], "_meannorm") for factor in FACTORS}
        results["mean_norm"].update(mean_from=str(args.mean_from), n_utts=n_mean)
    results.update(n_target=trials.n_target, n_nontarget=trials.n_nontarget, p_target=args.p_target, **extra)
    results.update(n_utts=len(utt2spk), n_without_embedding=len(missing), without_embedding=missing)
    atomic_write_text(args.outdir / "results.json", json.dumps(results, indent=2) + "\n")
    print(f"{trials.n_target} target / {trials.n_nontarget} nontarget trials; wrote {args.outdir / 'results.json'}")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
