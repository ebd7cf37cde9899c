"""The speech reports: ``<exp>/RESULTS.md`` for each experiment and one RESULTS.md comparing them,
each also as an HTML page (``index.html``) rendered from the same :class:`~cdsvae.eval.report.document.Document`.

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

from cdsvae.eval.demo.index import demo_block
from cdsvae.eval.report.disentangle_tables import (EXPLAIN, VARIANT_EXPLAIN, disentanglement_difference_table,
                                                   disentanglement_table, seed_disentanglement_table,
                                                   speaker_judge_sv_row, swap_detail_table, variant_table)
from cdsvae.eval.report.document import (Block, Code, DemoBlock, Document, ExperimentEntry, Experiments, Figure, Figures,
                                  Heading, Paragraph)
from cdsvae.eval.report.environment import environment
from cdsvae.eval.report.html import write_page
from cdsvae.eval.report.results import SCORINGS, ExperimentResult, load_experiment
from cdsvae.eval.report.tables import checkpoint_table, difference_table, group_results, results_table, seed_table, skipped_note
from cdsvae.io import UserError, atomic_write_text

REPORT_SUBDIR = "report"
DET_CAPTION = "DET curves of s and z"
DET_EXPLAIN = ("Miss against false-alarm rate of cosine scoring over all test pairs, on normal-deviate axes: the "
               "s curve should hug the bottom-left corner (s tells speakers apart: low EER), the z curve should lie "
               "near the top-right diagonal (z carries no speaker: EER near 50%)")
TSNE_CAPTION = "t-SNE of s and z coloured by speaker"
TSNE_EXPLAIN = ("2-D t-SNE maps of the test utterances: better is one tight cluster per speaker in the s panel "
                "and the speakers mixed together in the z panel")


def experiment_figures(result: ExperimentResult, test_set: str, outdir: Path) -> list[Figure]:
    """DET and t-SNE figures of one experiment from its score and embedding files.

    The EERs in the DET legend are those of ``results.json`` (the table's), not recomputed.
    """
    from cdsvae.data.datadir import read_utt2spk
    from cdsvae.eval.metrics.eer import det_curve
    from cdsvae.eval.report.plots import plot_det, plot_tsne
    from cdsvae.eval.metrics.scoring import load_embedding_matrix, read_scores
    from cdsvae.eval.metrics.trials import read_trials

    expdir = result.expdir
    figures = []
    score_dir = expdir / f"score_{test_set}"
    trials = read_trials(score_dir / "trials")
    curves = {}
    for factor, eer in (("s", result.eer_s), ("z", result.eer_z)):
        scores = read_scores(score_dir / f"scores_{factor}", trials)
        curves[f"{factor} (EER {100 * eer:.2f}%)"] = det_curve(scores[trials.target], scores[~trials.target])
    figures.append(Figure(DET_CAPTION, plot_det(curves, outdir / "det.png", title=expdir.name), DET_EXPLAIN))

    emb_dir = expdir / f"emb_{test_set}"
    utt2spk = read_utt2spk(emb_dir / "utt2spk")
    utts = sorted(utt2spk)
    matrices = {f: load_embedding_matrix(emb_dir / f"{f}.scp", utts) for f in ("s", "z")}
    speakers = [utt2spk[u] for u in utts]
    figures.append(Figure(TSNE_CAPTION, plot_tsne(matrices, speakers, outdir / "tsne.png", expdir.name),
                          TSNE_EXPLAIN))
    return figures


def _scoring_sections(results: Sequence[ExperimentResult], table, test_set: str | None = None) -> list[Block]:
    """One table per scoring; with ``test_set``, the recipe's speaker judge (if any) is a reference row of the cosine one."""
    out: list[Block] = []
    for scoring, what in SCORINGS.items():
        if scoring == "mean_norm" and not any(r.mean_norm is not None for r in results):
            continue
        body = table(results, scoring)
        if body is None or not body.rows:
            continue
        if test_set is not None and scoring == "cosine" and results:
            judge = speaker_judge_sv_row(results[0].expdir.parent / "judge", test_set)
            if judge is not None:
                body.references.append(judge)
        out += [Paragraph(f"Scoring: {what}."), body]
    return out


def disentanglement_section(results: Sequence[ExperimentResult], test_set: str, seeds: bool = False) -> list[Block]:
    """The disentanglement tables (stage 6) with the judges of ``<expdir>/../judge``; none without metrics."""
    judge_dir = results[0].expdir.parent / "judge" if results else None
    table = disentanglement_table(results, test_set, judge_dir)
    if table is None:
        return []
    out: list[Block] = [Heading(2, f"Disentanglement ({test_set} set)"), Paragraph(EXPLAIN)]
    if seeds:
        by_seed = seed_disentanglement_table(results, test_set)
        if by_seed is not None:
            out += [Heading(3, "Mean ± std over seeds"), by_seed]
            diff = disentanglement_difference_table(results, test_set)
            if diff is not None:
                out += [Paragraph("C-DSVAE - DSVAE, paired by seed (lower is better for the unit error of z and the "
                                  "swap content error, higher for the unit error of s and the swap speaker score; "
                                  "two-sided paired t-test):"), diff]
            out += [Heading(3, "Every experiment")]
    out += [table, Heading(3, "Swap protocol in detail"), swap_detail_table(results, test_set)]
    return out


def experiment_document(
    result: ExperimentResult,
    figures: Sequence[Figure],
    demo: DemoBlock | None = None,
    test_set: str = "test",
) -> Document:
    """One experiment's report; ``demo`` is its listening demo (None: no section)."""
    doc = Document(f"Results: {result.tag} ({result.system})", [environment()], result.expdir)
    doc.blocks += [Heading(2, f"Speaker verification ({test_set} set)"), Paragraph(
        f"Cosine scoring of all pairs of {test_set} utterances. A good disentanglement has a low EER "
        "for s (speaker) and a high EER for z (content): the gap is EER z - EER s.")]
    doc.blocks += skipped_note([result], test_set)
    doc.blocks += _scoring_sections([result], results_table, test_set)
    doc.blocks += disentanglement_section([result], test_set)
    doc.blocks += [Heading(2, "Checkpoint"), checkpoint_table([result])]
    if figures:
        doc.blocks += [Heading(2, "Figures"), Figures(figures)]
    if demo is not None and (demo.missing or demo.note or demo.sounds or demo.figures):
        doc.blocks += [Heading(2, "Listening demo"), demo]
    return doc


def experiment_report(expdir: str | os.PathLike, test_set: str = "test", plots: bool = True,
                      demo: bool = True) -> tuple[ExperimentResult, Document]:
    """The report of ``expdir`` (drawing its figures under ``<expdir>/report/<set>``), with the demo
    of ``<expdir>/demo``."""
    expdir = Path(expdir)
    result = load_experiment(expdir, test_set)
    figures = experiment_figures(result, test_set, expdir / REPORT_SUBDIR / test_set) if plots else []
    block = demo_block(expdir, how=f" --set {test_set}") if demo else None
    return result, experiment_document(result, figures, block, test_set)


def write_report(doc: Document, path: Path) -> Path:
    """``doc`` as Markdown at ``path`` and as a page next to it (:func:`html_name`)."""
    atomic_write_text(path, doc.markdown())
    write_page(path.with_name(html_name(path.name)), doc)
    return path


def write_experiment_report(
    expdir: str | os.PathLike,
    test_set: str = "test",
    plots: bool = True,
    demo: bool = True,
    name: str = "RESULTS.md",
) -> tuple[ExperimentResult, Path]:
    """Write ``<expdir>/<name>`` and its page (``index.html`` for RESULTS.md), plus figures under
    ``<expdir>/report/<set>``, with the demo of ``<expdir>/demo``."""
    result, doc = experiment_report(expdir, test_set, plots, demo)
    return result, write_report(doc, Path(expdir) / name)


def html_name(markdown_name: str) -> str:
    """The page next to a Markdown report: RESULTS.md -> index.html, RESULTS_dev.md -> index_dev.html."""
    stem = Path(markdown_name).stem
    return "index" + stem[len("RESULTS"):] + ".html" if stem.startswith("RESULTS") else stem + ".html"


CHECKPOINTS_EXPLAINED = (
    "Every system is evaluated with the checkpoint of lowest validation negative ELBO (recon + KL terms) "
    "on the dev set. The eval/train ratios are that checkpoint's eval-mode over train-mode reconstruction "
    "error on a fixed batch: near 1 on the training batch means the batch-norm running statistics "
    "describe the trained model; on the dev batch it can fall below 1, because a batch of other speakers "
    "normalised with its own statistics is shifted away from what the model learnt. Above 1.25 the "
    "trainer warns.")


def recipe_document(results: Sequence[ExperimentResult], out: Path, test_set: str = "test",
                    command: str | None = None, experiments: Sequence[Document] = (),
                    baseline: str | None = None) -> Document:
    """The comparison: mean ± std over seeds and C-DSVAE - DSVAE differences when there are seeds,
    then every experiment, each against ``baseline`` (an experiment group) when one is named, the
    checkpoints used, and each experiment's own report (``experiments``: their documents, whose
    figures and demo a page shows inline)."""
    doc = Document("Results", [environment()], out.parent)
    if command:
        doc.blocks += [Heading(2, "Command"), Code(command)]
    doc.blocks += [Heading(2, f"Speaker verification ({test_set} set)"), Paragraph(
        f"EER of cosine scoring over all pairs of {test_set} utterances; gap = EER z - EER s (higher is better).")]
    doc.blocks += skipped_note(results, test_set)
    groups = group_results(results)
    if any(len(rows) > 1 for rows in groups.values()):
        doc.blocks += [Heading(3, "Mean ± std over seeds")]
        doc.blocks += _scoring_sections(results, seed_table)
        diff_sections = _scoring_sections(results, difference_table)
        if diff_sections:
            doc.blocks += [Heading(3, "C-DSVAE - DSVAE, paired by seed"), Paragraph(
                "Differences per seed, then mean ± std over seeds; negative is better for EER s and "
                "minDCF s, positive for EER z and the gap. \"beyond\": the difference exceeds the pooled "
                "std of the two systems, sqrt((sd_a^2 + sd_b^2) / 2). The verdict is a two-sided paired t-test.")]
            doc.blocks += diff_sections
        doc.blocks += [Heading(3, "Every experiment")]
    doc.blocks += _scoring_sections(results, results_table, test_set)
    doc.blocks += disentanglement_section(results, test_set, seeds=any(len(rows) > 1 for rows in groups.values()))
    if baseline is not None:
        doc.blocks += [Heading(2, f"Against {baseline}, paired by seed ({test_set} set)"), Paragraph(VARIANT_EXPLAIN),
                       variant_table(results, test_set, baseline)]
    doc.blocks += [Heading(2, "Checkpoints"), Paragraph(CHECKPOINTS_EXPLAINED), checkpoint_table(results)]
    doc.blocks += [Paragraph("Per experiment (figures, listening demo):")]
    by_dir = {d.directory: d for d in experiments}
    entries = []
    for r in sorted(results, key=lambda r: r.tag):
        own = by_dir.get(r.expdir)
        figures = [f for b in (own.blocks if own else []) if isinstance(b, Figures) for f in b.figures]
        demo = next((b for b in (own.blocks if own else []) if isinstance(b, DemoBlock)), None)
        entries.append(ExperimentEntry(r.tag, r.system, r.expdir / out.name, r.expdir / html_name(out.name),
                                       figures, demo))
    doc.blocks.append(Experiments(entries))
    return doc


def write_recipe_report(
    expdirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    test_set: str = "test",
    plots: bool = True,
    demo: bool = True,
    command: str | None = None,
    baseline: str | None = None,
) -> list[ExperimentResult]:
    """Per-experiment reports ``<exp>/<name of out>``, then one table comparing them at ``out``,
    each also as a page (``index.html`` for ``RESULTS.md``, ``index_<set>.html`` for ``RESULTS_<set>.md``).

    Naming the per-experiment file after ``out`` keeps the reports of several evaluation sets
    (RESULTS.md, RESULTS_dev.md, ...) from overwriting each other. With ``baseline`` (an experiment
    group: a tag without its seed suffix) the comparison also gives every other group against it.
    """
    if not expdirs:
        raise UserError("no experiment directories given")
    out = Path(out)
    if baseline is not None:  # an unknown baseline stops the report before anything is written
        variant_table([load_experiment(d, test_set) for d in expdirs], test_set, baseline)
    reports = [experiment_report(d, test_set, plots, demo) for d in expdirs]
    for result, doc in reports:
        write_report(doc, result.expdir / out.name)
    results = [r for r, _ in reports]
    write_report(recipe_document(results, out, test_set, command, [d for _, d in reports], baseline), out)
    return results
