"""The speech reports: ``<exp>/RESULTS.md`` for each experiment and one RESULTS.md comparing them.

Everything in a report is read from the experiment dirs (resolved config, embeddings, trials,
scores, results.json, the demo index), so numbers are never typed by hand, and nothing is
recomputed by a model: the listening demo is made beforehand by the demo step
(``python -m cdsvae.bin.make_demo``) and only linked here. Figures (DET curves, t-SNE) are drawn
from the score and embedding files; they must cope with a handful of utterances.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from cdsvae.errors import UserError
from cdsvae.eval.demo import demo_lines, relative_link
from cdsvae.eval.disentangle_tables import (EXPLAIN, disentanglement_difference_table, disentanglement_table,
                                            seed_disentanglement_table, speaker_judge_sv_row, swap_detail_table)
from cdsvae.eval.environment import environment_header
from cdsvae.eval.results import SCORINGS, ExperimentResult, load_experiment
from cdsvae.eval.tables import (checkpoint_table, difference_table, group_results, results_table, seed_table,
                                skipped_note)
from cdsvae.io import atomic_write_text

REPORT_SUBDIR = "report"


def experiment_figures(result: ExperimentResult, test_set: str, outdir: Path) -> list[tuple[str, Path]]:
    """DET and t-SNE figures of one experiment from its score and embedding files; (caption, path) pairs.

    The EERs in the DET legend are those of ``results.json`` (the table's), not recomputed.
    """
    from cdsvae.data.datadir import read_utt2spk
    from cdsvae.eval.eer import det_curve
    from cdsvae.eval.plots import plot_det, plot_tsne
    from cdsvae.eval.scoring import load_embedding_matrix, read_scores
    from cdsvae.eval.trials import read_trials

    expdir = result.expdir
    figures = []
    score_dir = expdir / f"score_{test_set}"
    trials = read_trials(score_dir / "trials")
    curves = {}
    for factor, eer in (("s", result.eer_s), ("z", result.eer_z)):
        scores = read_scores(score_dir / f"scores_{factor}", trials)
        curves[f"{factor} (EER {100 * eer:.2f}%)"] = det_curve(scores[trials.target], scores[~trials.target])
    figures.append(("DET curves of s and z", plot_det(curves, outdir / "det.png", title=expdir.name)))

    emb_dir = expdir / f"emb_{test_set}"
    utt2spk = read_utt2spk(emb_dir / "utt2spk")
    utts = sorted(utt2spk)
    matrices = {f: load_embedding_matrix(emb_dir / f"{f}.scp", utts) for f in ("s", "z")}
    speakers = [utt2spk[u] for u in utts]
    figures.append(("t-SNE of s and z coloured by speaker", plot_tsne(matrices, speakers, outdir / "tsne.png", expdir.name)))
    return figures


def _scoring_sections(results: Sequence[ExperimentResult], table, test_set: str | None = None) -> list[str]:
    """One table per scoring; with ``test_set``, the recipe's speaker judge (if any) is a reference row of the cosine one."""
    out = []
    for scoring, what in SCORINGS.items():
        if scoring == "mean_norm" and not any(r.mean_norm is not None for r in results):
            continue
        body = table(results, scoring)
        if body.count("\n") <= 2:
            continue
        if test_set is not None and scoring == "cosine" and results:
            body += speaker_judge_sv_row(results[0].expdir.parent / "judge", test_set)
        out += [f"Scoring: {what}.", "", body]
    return out


def disentanglement_section(results: Sequence[ExperimentResult], test_set: str, seeds: bool = False) -> list[str]:
    """The disentanglement tables (stage 6) with the judges of ``<expdir>/../judge``; none without metrics."""
    judge_dir = results[0].expdir.parent / "judge" if results else None
    table = disentanglement_table(results, test_set, judge_dir)
    if not table:
        return []
    out = [f"## Disentanglement ({test_set} set)", "", EXPLAIN, ""]
    if seeds:
        by_seed = seed_disentanglement_table(results, test_set)
        if by_seed:
            out += ["### Mean ± std over seeds", "", by_seed]
            diff = disentanglement_difference_table(results, test_set)
            if diff:
                out += ["C-DSVAE - DSVAE, paired by seed (lower is better for the unit error of z and the swap "
                        "content error, higher for the unit error of s and the swap speaker score; two-sided "
                        "paired t-test):", "", diff]
            out += ["### Every experiment", ""]
    out += [table, "### Swap protocol in detail", "", swap_detail_table(results, test_set)]
    return out


def experiment_markdown(
    result: ExperimentResult,
    figures: Sequence[tuple[str, Path]],
    demo: Sequence[str] = (),
    test_set: str = "test",
) -> str:
    """One experiment's report; ``demo`` holds the markdown lines of its listening demo (none: no section)."""
    out = [f"# Results: {result.tag} ({result.system})", "", environment_header()]
    out += [f"## Speaker verification ({test_set} set)", ""]
    out.append(
        f"Cosine scoring of all pairs of {test_set} utterances. A good disentanglement has a low EER "
        "for s (speaker) and a high EER for z (content): the gap is EER z - EER s."
    )
    out.append("")
    out += skipped_note([result], test_set)
    out += _scoring_sections([result], results_table, test_set)
    out += disentanglement_section([result], test_set)
    out += ["## Checkpoint", "", checkpoint_table([result])]
    if figures:
        out += ["## Figures", ""]
        out += [f"![{caption}]({relative_link(path, result.expdir)})" for caption, path in figures]
        out.append("")
    if demo:
        out += ["## Listening demo", "", *demo]
    return "\n".join(out)


def write_experiment_report(
    expdir: str | os.PathLike,
    test_set: str = "test",
    plots: bool = True,
    demo: bool = True,
    name: str = "RESULTS.md",
) -> tuple[ExperimentResult, Path]:
    """Write ``<expdir>/<name>`` (plus figures under ``<expdir>/report/<set>``), linking the demo of ``<expdir>/demo``."""
    expdir = Path(expdir)
    result = load_experiment(expdir, test_set)
    figures = experiment_figures(result, test_set, expdir / REPORT_SUBDIR / test_set) if plots else []
    demo_md = demo_lines(expdir, expdir, how=f" --set {test_set}") if demo else []
    path = expdir / name
    atomic_write_text(path, experiment_markdown(result, figures, demo_md, test_set))
    return result, path


def recipe_markdown(results: Sequence[ExperimentResult], out: Path, test_set: str = "test",
                    command: str | None = None) -> str:
    """The comparison: mean ± std over seeds and C-DSVAE - DSVAE differences when there are seeds,
    then every experiment, the checkpoints used, and links to each experiment's own report."""
    lines = ["# Results", "", environment_header()]
    if command:
        lines += ["## Command", "", "    " + command, ""]
    lines += [f"## Speaker verification ({test_set} set)", ""]
    lines.append(
        f"EER of cosine scoring over all pairs of {test_set} utterances; gap = EER z - EER s (higher is better)."
    )
    lines.append("")
    lines += skipped_note(results, test_set)
    groups = group_results(results)
    if any(len(rows) > 1 for rows in groups.values()):
        lines += ["### Mean ± std over seeds", ""]
        lines += _scoring_sections(results, seed_table)
        diff_sections = _scoring_sections(results, difference_table)
        if diff_sections:
            lines += ["### C-DSVAE - DSVAE, paired by seed", "",
                      "Differences per seed, then mean ± std over seeds; negative is better for EER s and "
                      "minDCF s, positive for EER z and the gap. \"beyond\": the difference exceeds the pooled "
                      "std of the two systems, sqrt((sd_a^2 + sd_b^2) / 2). The verdict is a two-sided paired t-test.",
                      ""]
            lines += diff_sections
        lines += ["### Every experiment", ""]
    lines += _scoring_sections(results, results_table, test_set)
    lines += disentanglement_section(results, test_set, seeds=any(len(rows) > 1 for rows in groups.values()))
    lines += ["## Checkpoints", "",
              "Every system is evaluated with the checkpoint of lowest validation negative ELBO (recon + KL terms) "
              "on the dev set. The eval/train ratios are that checkpoint's eval-mode over train-mode reconstruction "
              "error on a fixed batch: near 1 on the training batch means the batch-norm running statistics "
              "describe the trained model; on the dev batch it can fall below 1, because a batch of other speakers "
              "normalised with its own statistics is shifted away from what the model learnt. Above 1.25 the "
              "trainer warns.", "",
              checkpoint_table(results)]
    lines += ["Per experiment (figures, listening demo):", ""]
    for r in sorted(results, key=lambda r: r.tag):
        lines.append(f"- [{r.tag}]({relative_link(r.expdir / out.name, out.parent)}) ({r.system})")
    lines.append("")
    return "\n".join(lines)


def write_recipe_report(
    expdirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    test_set: str = "test",
    plots: bool = True,
    demo: bool = True,
    command: str | None = None,
) -> list[ExperimentResult]:
    """Per-experiment reports ``<exp>/<name of out>``, then one table comparing them at ``out``.

    Naming the per-experiment file after ``out`` keeps the reports of several evaluation sets
    (RESULTS.md, RESULTS_dev.md, ...) from overwriting each other.
    """
    if not expdirs:
        raise UserError("no experiment directories given")
    out = Path(out)
    results = [write_experiment_report(d, test_set, plots, demo, out.name)[0] for d in expdirs]
    atomic_write_text(out, recipe_markdown(results, out, test_set, command))
    return results
