"""The tables of speech results: one row per experiment, mean ± std over seeds, the
C-DSVAE - DSVAE difference paired by seed (with its t-test), the checkpoints used, and the
note on skipped utterances, as :class:`~cdsvae.eval.report.document.Table` blocks of a report.

Every cell is computed from :class:`~cdsvae.eval.report.results.ExperimentResult` rows.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from cdsvae.eval.report.document import HIGHER, LOWER, Bullets, Column, Measure, Paragraph, Table
from cdsvae.eval.report.results import ExperimentResult
from cdsvae.io import UserError

# The figures of a speaker-verification row, with the way each is better.
SV_COLUMNS = (Column("EER s (%)", True, LOWER), Column("EER z (%)", True, HIGHER), Column("gap z - s (%)", True, HIGHER),
              Column("minDCF s", True, LOWER), Column("minDCF z", True, HIGHER))
_SYSTEM_ORDER = {"C-DSVAE": 0, "DSVAE": 1}


def table_row(r: ExperimentResult, scoring: str = "cosine") -> list[str]:
    sc = r.scores(scoring)
    trials = f"{r.n_trials} ({r.n_target}/{r.n_nontarget})"
    if sc is None:
        return [r.system, r.tag, "n/a", "n/a", "n/a", "n/a", "n/a", trials]
    return [r.system, r.tag, f"{100 * sc.eer_s:.2f}", f"{100 * sc.eer_z:.2f}", f"{100 * sc.gap:.2f}",
            f"{sc.min_dcf_s:.4f}", f"{sc.min_dcf_z:.4f}", trials]


def _ordered(results: Iterable[ExperimentResult]) -> list[ExperimentResult]:
    return sorted(results, key=lambda r: (_SYSTEM_ORDER.get(r.system, 2), r.tag))


def results_table(results: Iterable[ExperimentResult], scoring: str = "cosine") -> Table:
    """One row per experiment; C-DSVAE rows first, then DSVAE, each by tag, so tables line up across recipes."""
    return Table([Column("system"), Column("tag"), *SV_COLUMNS, Column("trials (target/nontarget)", True)],
                 [table_row(r, scoring) for r in _ordered(results)])


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def pm(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> Measure:
    """Mean ± std of ``scale * values`` as a table cell."""
    m, sd = mean_std([scale * x for x in values])
    return Measure(f"{m:.{digits}f} ± {sd:.{digits}f}", m, sd, digits)


def group_results(results: Iterable[ExperimentResult]) -> dict[str, list[ExperimentResult]]:
    """Experiments keyed by tag without the seed suffix (C-DSVAE groups first), seeds in order.

    Reads only ``system``, ``tag``, ``group`` and ``seed``, so the video report's runs group the same way."""
    groups: dict[str, list[ExperimentResult]] = {}
    for r in _ordered(results):
        groups.setdefault(r.group, []).append(r)
    for rows in groups.values():
        systems = {r.system for r in rows}
        if len(systems) > 1:
            raise UserError(f"experiments {', '.join(r.tag for r in rows)} share the name {rows[0].group} "
                            f"but are different systems ({', '.join(sorted(systems))})")
        rows.sort(key=lambda r: (r.seed is None, r.seed, r.tag))
    return groups


def seed_table(results: Iterable[ExperimentResult], scoring: str = "cosine") -> Table:
    """Mean ± std over the seeds of each experiment group (sample std)."""
    table = Table([Column("system"), Column("experiment"), Column("seeds"), *SV_COLUMNS])
    for group, rows in group_results(results).items():
        scores = [r.scores(scoring) for r in rows]
        if any(sc is None for sc in scores):
            continue
        seeds = ",".join(str(r.seed) for r in rows)
        table.rows.append([rows[0].system, group, f"{len(rows)} ({seeds})", pm([sc.eer_s for sc in scores]),
                           pm([sc.eer_z for sc in scores]), pm([sc.gap for sc in scores]),
                           pm([sc.min_dcf_s for sc in scores], 1.0, 4), pm([sc.min_dcf_z for sc in scores], 1.0, 4)])
    return table


# (label, attribute of Scores, scale, digits, True when lower is better)
_DIFF_METRICS = (("EER s (%)", "eer_s", 100.0, 2, True), ("EER z (%)", "eer_z", 100.0, 2, False),
                 ("gap z - s (%)", "gap", 100.0, 2, False), ("minDCF s", "min_dcf_s", 1.0, 4, True))


DIFFERENCE_COLUMNS = (Column("compared"), Column("metric"), Column("seeds"), Column("difference (mean ± std)", True),
                      Column("pooled std", True), Column("beyond"), Column("C-DSVAE better in", True), Column("verdict"))


def difference_table(results: Iterable[ExperimentResult], scoring: str = "cosine") -> Table | None:
    """C-DSVAE minus DSVAE per metric, paired by seed: mean ± std of the per-seed differences.

    Each C-DSVAE group is compared with each DSVAE group on the seeds both have. "better in"
    counts the seeds where C-DSVAE is better (lower EER s and minDCF s, higher EER z and gap);
    the verdict comes from a two-sided paired t-test over the seeds: "within noise" when
    p >= 0.05, i.e. when the seeds do not settle which system is ahead. "pooled std" is
    sqrt((sd_a^2 + sd_b^2) / 2) of the two systems' values over those seeds, the spread a
    difference of means is usually held against; "beyond" says whether |difference| exceeds it.
    """
    groups = group_results(results)
    ours = [g for g, rows in groups.items() if rows[0].system == "C-DSVAE"]
    base = [g for g, rows in groups.items() if rows[0].system == "DSVAE"]
    table = Table(DIFFERENCE_COLUMNS)
    for a in ours:
        for b in base:
            by_seed_a = {r.seed: r.scores(scoring) for r in groups[a]}
            by_seed_b = {r.seed: r.scores(scoring) for r in groups[b]}
            seeds = sorted(s for s in by_seed_a if s is not None and s in by_seed_b
                           and by_seed_a[s] is not None and by_seed_b[s] is not None)
            if len(seeds) < 2:
                continue
            for label, attr, scale, digits, lower in _DIFF_METRICS:
                table.rows.append(paired_row(f"{a} - {b}", label, {s: getattr(by_seed_a[s], attr) for s in seeds},
                                             {s: getattr(by_seed_b[s], attr) for s in seeds}, scale, digits, lower))
    return table if table.rows else None


def paired_row(compared: str, label: str, a: Mapping[int, float], b: Mapping[int, float], scale: float,
               digits: int, lower: bool) -> list[str]:
    """One row of :data:`DIFFERENCE_COLUMNS`: ``scale * (a - b)`` by seed, on the seeds both have (at
    least 2), ``lower`` saying whether a lower value is better (:func:`difference_table` says how)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise ValueError(f"{compared}: a paired difference needs at least 2 common seeds, got {seeds}")
    diffs = [scale * (a[s] - b[s]) for s in seeds]
    m, sd = mean_std(diffs)
    better = sum((d < 0) if lower else (d > 0) for d in diffs)
    sd_a = mean_std([scale * a[s] for s in seeds])[1]
    sd_b = mean_std([scale * b[s] for s in seeds])[1]
    pooled = float(np.sqrt((sd_a ** 2 + sd_b ** 2) / 2))
    p = paired_p_value(diffs)
    if p >= 0.05:
        verdict = f"within noise (p = {p:.2f})"
    else:
        verdict = f"{'C-DSVAE' if (m < 0) == lower else 'DSVAE'} better (p = {p:.3f})"
    return [compared, label, str(len(seeds)), f"{m:+.{digits}f} ± {sd:.{digits}f}", f"{pooled:.{digits}f}",
            "yes" if abs(m) > pooled else "no", f"{better}/{len(seeds)}", verdict]


def paired_p_value(diffs: Sequence[float]) -> float:
    """Two-sided p-value of a paired t-test that the mean of ``diffs`` is 0 (needs 2 or more)."""
    from scipy.stats import t as student_t

    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        raise ValueError("a paired t-test needs at least 2 differences")
    m, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return 1.0 if m == 0.0 else 0.0
    t = m / (sd / np.sqrt(d.size))
    return float(2.0 * student_t.sf(abs(t), d.size - 1))


def checkpoint_table(results: Iterable[ExperimentResult]) -> Table:
    """Which weights each experiment was evaluated with, and why."""
    table = Table([Column("tag"), Column("checkpoint"), Column("step (epoch)", True), Column("chosen because"),
                   Column("criterion on dev", True), Column("eval/train recon ratio, dev batch", True),
                   Column("eval/train recon ratio, training batch", True)])
    for r in _ordered(results):
        c = r.checkpoint or {}
        if not c:
            table.rows.append([r.tag, "not recorded", "", "", "", "", ""])
            continue
        value = c.get("criterion_value")
        ratios = [c.get("eval_train_ratio"), c.get("eval_train_ratio_train")]
        table.rows.append([r.tag, str(c.get("file")), f"{c.get('step')} ({c.get('epoch')})", str(c.get("why")),
                           f"{c.get('criterion')} {'n/a' if value is None else f'{value:.1f}'}",
                           *("n/a" if x is None else f"{x:.3f}" for x in ratios)])
    return table


def skipped_note(results: Sequence[ExperimentResult], test_set: str) -> list[Paragraph | Bullets]:
    """Blocks counting the test utterances left out of the trials, or none when none was."""
    items = []
    for r in sorted(results, key=lambda r: r.tag):
        if r.without_embedding:
            shown = ", ".join(r.without_embedding[:10]) + (", ..." if len(r.without_embedding) > 10 else "")
            items.append(f"{r.tag}: {len(r.without_embedding)} of {r.n_utts} {test_set} utterances skipped "
                         f"(unreadable or too short; --skip_bad) and left out of the trials: {shown}")
    return [Paragraph("Skipped utterances:"), Bullets(items)] if items else []
