"""The video reports: the judge results table, ``<exp>/RESULTS.md`` and one RESULTS.md comparing them
(with mean ± std over seeds and C-DSVAE - DSVAE paired by seed when a config was trained with several
seeds), each with its HTML page (``index.html``) rendered from the same
:class:`~cdsvae.eval.report.document.Document`.

Everything is read from the experiment dirs: ``judge_results.json`` (stage 6), ``config.yaml``
for the system label, and the swap grids and samples of the demo step (``exp/<tag>/demo/``,
made by ``python -m cdsvae.bin.make_demo``), which are linked, never drawn here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cdsvae.eval.demo.index import demo_block
from cdsvae.eval.report.document import (HIGHER, LOWER, Block, Code, Column, DemoBlock, Document, ExperimentEntry,
                                  Experiments, Heading, Measure, Paragraph, Table, markdown_lines)
from cdsvae.eval.report.environment import environment
from cdsvae.eval.report.experiment import load_config, system_label
from cdsvae.eval.report.html import write_page
from cdsvae.eval.report.results import SEED_SUFFIX
from cdsvae.eval.report.tables import DIFFERENCE_COLUMNS, group_results, paired_row, pm
from cdsvae.io import UserError, atomic_write_text


def _fmt(r: Mapping | None, scale: float = 1.0, digits: int = 2) -> Measure | str:
    if not r:
        return "-"
    m, sd = scale * r["mean"], scale * r["std"]
    return Measure(f"{m:.{digits}f} ± {sd:.{digits}f}", m, sd, digits)


def _col(title: str, better: str | None = None) -> Column:
    return Column(title, numeric=True, better=better, md_right=False)


def judge_blocks(results: Mapping[str, Mapping]) -> list[Block]:
    """The tables of protocol A and B, checkpoints and judge ceilings from ``{row name: judge_results.json content}``."""
    rows = list(results.items())
    dyn = sorted({n for _, r in rows for n in r.get("protocol_A", {})})
    sta = [n for n in next((list(r.get("protocol_B", {})) for _, r in rows if r.get("protocol_B")), [])]
    out: list[Block] = []
    for n in dyn:
        k = next(r["protocol_A"][n]["num_classes"] for _, r in rows if n in r.get("protocol_A", {}))
        out.append(Paragraph(f"Protocol A: keep z, draw s ~ N(0, I), judge `{n}` "
                             f"(ceiling IS = {k}, H(y) = ln {k} = {np.log(k):.3f})"))
        table = Table([Column("model"), _col("Acc %", HIGHER), _col("IS", HIGHER), _col("H(y\\|x)", LOWER),
                       _col("H(y)", HIGHER)])
        for name, r in rows:
            a = r.get("protocol_A", {}).get(n, {})
            table.rows.append([name, _fmt(a.get("acc"), 100), _fmt(a.get("is"), 1, 3), _fmt(a.get("h_yx"), 1, 3),
                               _fmt(a.get("h_y"), 1, 3)])
        out.append(table)
    if sta:
        out.append(Paragraph("Protocol B: keep s, draw z from the learned prior, judge the static factors (Acc %)"))
        out.append(Table([Column("model"), *(_col(n, HIGHER) for n in sta)],
                         [[name, *(_fmt(r.get("protocol_B", {}).get(n, {}).get("acc"), 100) for n in sta)]
                          for name, r in rows]))
    ckpts = [(name, r["checkpoint"]) for name, r in rows if r.get("checkpoint")]
    if ckpts:
        out.append(Paragraph("Checkpoints evaluated (the eval/train ratio is eval-mode over train-mode reconstruction "
                             "error on a fixed batch; 1 means eval mode reproduces training)"))
        table = Table([Column("model"), Column("checkpoint"), Column("step (epoch)", True), Column("chosen because"),
                       Column("eval/train recon ratio", True)])
        for name, c in ckpts:
            ratio = c.get("eval_train_ratio")
            table.rows.append([name, str(c.get("file")), f"{c.get('step')} ({c.get('epoch')})", str(c.get("why")),
                               "n/a" if ratio is None else f"{ratio:.3f}"])
        out.append(table)
    ref = [(name, r["reference"]) for name, r in rows if "reference" in r]
    if ref:
        names = list(ref[0][1]["real"])
        out.append(Paragraph("Judge accuracy % on real test sequences and on reconstructions (ceilings)"))
        out.append(Table([Column("model"), Column("input"), *(_col(n) for n in names)],
                         [[name, kind, *(f"{100 * r[kind][n]:.2f}" for n in names)]
                          for name, r in ref for kind in ("real", "recon")]))
    return out


@dataclass(frozen=True)
class VideoRun:
    """One experiment's judge results with what groups it (as
    :func:`~cdsvae.eval.report.tables.group_results` reads it): system, tag (the dir name; seeds of
    one config share it without the ``_seed<N>`` suffix) and training seed."""

    system: str
    tag: str
    seed: int | None
    result: Mapping

    @property
    def group(self) -> str:
        return SEED_SUFFIX.sub("", self.tag)


# (label, path in judge_results.json after the factor, scale, digits, True when lower is better)
_A_METRICS = (("Acc %", ("acc", "mean"), 100.0, 2, False), ("IS", ("is", "mean"), 1.0, 3, False),
              ("H(y\\|x)", ("h_yx", "mean"), 1.0, 3, True), ("H(y)", ("h_y", "mean"), 1.0, 3, False))


def _value(result: Mapping, keys: Sequence[str]) -> float | None:
    for k in keys:
        if not isinstance(result, Mapping) or k not in result:
            return None
        result = result[k]
    return float(result)


# (column title, metric name in the difference table, path in judge_results.json, scale, digits,
# True when lower is better)
Figure = tuple[str, str, tuple[str, ...], float, int, bool]


def _sections(runs: Sequence[VideoRun]) -> list[tuple[str, list[Figure]]]:
    """The seed tables and their figures: protocol A's four per motion factor, protocol B's accuracy
    per static factor, and the reconstruction ceiling per factor."""
    dyn = sorted({n for r in runs for n in r.result.get("protocol_A", {})})
    sta = sorted({n for r in runs for n in r.result.get("protocol_B", {})})
    ref = sorted({n for r in runs for n in r.result.get("reference", {}).get("recon", {})})
    out = [(f"Protocol A, `{n}`: keep z, draw s", [(label, f"A {n} {label}", ("protocol_A", n, *keys), scale, digits,
                                                     lower) for label, keys, scale, digits, lower in _A_METRICS])
           for n in dyn]
    if sta:
        out.append(("Protocol B: keep s, draw z (Acc %)",
                    [(n, f"B {n} Acc %", ("protocol_B", n, "acc", "mean"), 100.0, 2, False) for n in sta]))
    if ref:
        out.append(("Judge accuracy % on reconstructions (ceilings)",
                    [(n, f"recon {n} Acc %", ("reference", "recon", n), 100.0, 2, False) for n in ref]))
    return out


def seed_blocks(runs: Sequence[VideoRun]) -> list[Block]:
    """Mean ± std over the seeds of each group (sample std of the per-seed means), and C-DSVAE minus
    DSVAE paired by seed (:func:`~cdsvae.eval.report.tables.paired_row`); none when no group has
    two seeds."""
    groups = group_results(runs)
    if not any(len(rows) > 1 for rows in groups.values()):
        return []
    sections = _sections(runs)
    out: list[Block] = [Heading(3, "Mean ± std over seeds")]
    for title, figures in sections:
        table = Table([Column("system"), Column("experiment"), Column("seeds"),
                       *(_col(column, LOWER if lower else HIGHER) for column, *_, lower in figures)])
        for group, rows in groups.items():
            cells = []
            for _, _, keys, scale, digits, _ in figures:
                values = [_value(r.result, keys) for r in rows]
                cells.append("-" if any(v is None for v in values) else pm(values, scale, digits))
            table.rows.append([rows[0].system, group, f"{len(rows)} ({','.join(str(r.seed) for r in rows)})", *cells])
        out += [Paragraph(title), table]
    diff = Table(DIFFERENCE_COLUMNS)
    ours = [g for g, rows in groups.items() if rows[0].system == "C-DSVAE"]
    base = [g for g, rows in groups.items() if rows[0].system == "DSVAE"]
    for a in ours:
        for b in base:
            for _, figures in sections:
                for _, label, keys, scale, digits, lower in figures:
                    va = {r.seed: _value(r.result, keys) for r in groups[a] if r.seed is not None}
                    vb = {r.seed: _value(r.result, keys) for r in groups[b] if r.seed is not None}
                    common = [s for s in va if s in vb and va[s] is not None and vb[s] is not None]
                    if len(common) >= 2:
                        diff.rows.append(paired_row(f"{a} - {b}", label,
                                                    {s: va[s] for s in common}, {s: vb[s] for s in common},
                                                    scale, digits, lower))
    if diff.rows:
        out += [Heading(3, "C-DSVAE - DSVAE, paired by seed"),
                Paragraph("Differences per seed, then mean ± std over seeds; higher is better for accuracy, IS "
                          "and H(y), lower for H(y|x). \"pooled std\" is sqrt((sd_a^2 + sd_b^2) / 2) of the two "
                          "systems over the common seeds; the verdict is a two-sided paired t-test (p < 0.05)."),
                diff]
    return out


def judge_table(results: Mapping[str, Mapping]) -> str:
    """The judge tables (:func:`judge_blocks`) in Markdown."""
    return "\n".join(line for b in judge_blocks(results) for line in markdown_lines(b, Path(".")))


def results_document(path: str | os.PathLike, results: Mapping[str, Mapping], title: str = "Results",
                     command: str | None = None, demo: DemoBlock | None = None,
                     experiments: Sequence[ExperimentEntry] = (), seeds: Sequence[Block] = ()) -> Document:
    """A report of judge tables; ``demo`` (None: no section) holds the swap grids and samples of one
    experiment, ``experiments`` the experiments a comparison links (their grids shown on its page),
    ``seeds`` the tables over seeds (:func:`seed_blocks`)."""
    doc = Document(title, [environment()], Path(path).parent)
    if command:
        doc.blocks += [Heading(2, "Command"), Code(command)]
    doc.blocks += [Heading(2, "Judge metrics (test set)"), *judge_blocks(results), *seeds]
    if demo is not None:
        doc.blocks += [Heading(2, "Swap grids and samples"), demo]
        doc.trailing_newline = True
    if experiments:
        doc.blocks += [Heading(2, "Per experiment (swap grids, samples)"), Experiments(experiments)]
    return doc


def write_results_md(path: str | os.PathLike, results: Mapping[str, Mapping], title: str = "Results",
                     command: str | None = None, demo: DemoBlock | None = None,
                     experiments: Sequence[ExperimentEntry] = (), seeds: Sequence[Block] = ()) -> Path:
    """A RESULTS.md of judge tables and, next to it, its page index.html (:func:`results_document`)."""
    doc = results_document(path, results, title, command, demo, experiments, seeds)
    atomic_write_text(path, doc.markdown())
    write_page(Path(path).with_name("index.html"), doc)
    return Path(path)


def write_video_reports(exp_dirs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None,
                        title: str = "Results", command: str | None = None) -> dict[str, Mapping]:
    """``<exp>/RESULTS.md`` and ``<exp>/index.html`` for every experiment with a ``judge_results.json``
    (showing its demo pictures), and the side-by-side tables of all of them at ``out`` and the
    ``index.html`` next to it; returns the results by row name."""
    if not exp_dirs:
        raise UserError("no experiment directories given")
    results: dict[str, Mapping] = {}
    entries, runs = [], []
    for d in exp_dirs:
        exp = Path(d)
        cfg = load_config(exp)
        system = system_label(cfg)
        name = f"{system} ({exp.name})"
        rj = exp / "judge_results.json"
        if rj.is_file():
            try:
                results[name] = json.loads(rj.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise UserError(f"{rj}: not valid JSON ({e.msg}, line {e.lineno})") from None
            seed = (cfg.get("train") or {}).get("seed")
            runs.append(VideoRun(system, exp.name, None if seed is None else int(seed), results[name]))
            demo = demo_block(exp, how=" --data <test split dir>")
            write_results_md(exp / "RESULTS.md", {name: results[name]}, f"{title}: {exp.name}", demo=demo)
            entries.append(ExperimentEntry(exp.name, system, exp / "RESULTS.md", exp / "index.html", (), demo))
    if out is not None:
        if not results:
            raise UserError("no judge_results.json in any experiment dir; run the scoring stage first")
        write_results_md(out, results, title, command=command, experiments=entries, seeds=seed_blocks(runs))
    return results


def format_judge_summary(res: Mapping) -> str:
    """The console lines of a ``judge_results.json``: protocol A's and B's figures per factor."""
    lines = []
    for n, r in res["protocol_A"].items():
        lines.append(
            f"protocol A ({n}): Acc {100 * r['acc']['mean']:.2f} +- {100 * r['acc']['std']:.2f} %  "
            f"IS {r['is']['mean']:.3f} +- {r['is']['std']:.3f}  H(y|x) {r['h_yx']['mean']:.3f}  "
            f"H(y) {r['h_y']['mean']:.3f}"
        )
    for n, r in res["protocol_B"].items():
        lines.append(f"protocol B ({n}): Acc {100 * r['acc']['mean']:.2f} +- {100 * r['acc']['std']:.2f} %")
    return "\n".join(lines)
