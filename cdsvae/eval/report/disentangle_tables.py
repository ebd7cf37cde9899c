"""The tables of the speech disentanglement metrics (stage 6, :mod:`cdsvae.bin.disentangle`)
next to the EERs, with the judges of the recipe as reference rows.

Read from ``<exp>/disentangle_<set>/results.json`` and ``<judge dir>/{speaker,content}/judge.json``;
swap figures are mean ± std over the protocol's draws, and with several seeds the summary
table gives mean ± std over seeds of each experiment's figures. An experiment measured without
transcripts (``"content": false``: no content judge, no probes) keeps every speaker-side figure;
its content columns read "not measured".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cdsvae.eval.report.document import HIGHER, LOWER, Column, Measure, Table
from cdsvae.eval.report.results import ExperimentResult
from cdsvae.eval.report.tables import group_results, mean_std, paired_p_value, pm
from cdsvae.io import UserError

COLUMNS = (Column("system"), Column("experiment"), Column("EER s (%)", True, LOWER), Column("EER z (%)", True, HIGHER),
           Column("unit error z (%)", True, LOWER), Column("unit error s (%)", True, HIGHER),
           Column("swap speaker score", True, HIGHER), Column("swap content error (%)", True, LOWER))
DETAIL_COLUMNS = (Column("experiment"), Column("swap (s_A, z_B): closer to A", True, HIGHER),
                  Column("swap: content error vs B (%)", True, LOWER),
                  Column("random s (s ~ p(s), z_B): closer to B", True),
                  Column("random s: content error vs B (%)", True),
                  Column("random z (s_A, z ~ p(z)): closer to A", True, HIGHER),
                  Column("random z: content error vs B (%)", True, HIGHER),
                  Column("reconstruction of B: content error (%)", True, LOWER),
                  Column("reconstruction of B: closer to B", True, HIGHER))
EXPLAIN = (
    "Unit error z / s: a CTC probe trained on the training set to read the unit transcript from z_1:T, or "
    "from s repeated at every frame, scored on the test set (low for z, high for s is disentangled). Swap: "
    "for pairs (A, B) of test utterances of different speakers, log-mel decoded from (s_A, z_B); speaker "
    "score = fraction the speaker judge places closer to A's speaker than to B's (1 is best), content "
    "error = the content judge's unit error rate against B's transcript (low is best). Swap figures are "
    "mean ± std over draws of pairs. Judge rows are the supervised references: what a model trained with "
    "the labels reaches on the real test audio. \"not measured\": the corpus has no transcripts, so there is no "
    "content judge and no probe; the speaker-side figures are measured all the same.")
NOT_MEASURED = "not measured"


def load_disentanglement(expdir: str | os.PathLike, test_set: str) -> dict[str, Any] | None:
    """``<exp>/disentangle_<set>/results.json``, or None when the metrics were not run."""
    path = Path(expdir) / f"disentangle_{test_set}" / "results.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None


def _pm(values: Sequence[float | None] | None, scale: float = 100.0, digits: int = 2) -> Measure | str:
    if values is None or any(v is None for v in values):
        return NOT_MEASURED
    return pm(values, scale, digits) if values else "n/a"


def _pct(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{100 * value:.2f}"


def content_measured(d: Mapping[str, Any]) -> bool:
    """False for metrics made without transcripts (``cdsvae.bin.disentangle --content false``)."""
    return d.get("content", True) is not False and d.get("probes") is not None


def row_figures(d: Mapping[str, Any]) -> dict[str, float | None]:
    """The summary figures of one experiment: probe errors and the swap means over draws (None
    for the content figures of an experiment measured without transcripts)."""
    s = d["swap"]["summary"]
    content = content_measured(d)
    return {"probe_z": float(d["probes"]["z"]["rate"]) if content else None,
            "probe_s": float(d["probes"]["s"]["rate"]) if content else None,
            "swap_speaker": float(np.mean(s["swap"]["speaker"])),
            "swap_content": float(np.mean(s["swap"]["content_error"])) if content else None}


def _content_draws(summary: Mapping[str, Any], variant: str, d: Mapping[str, Any]) -> list[float] | None:
    """The content errors of a variant over the draws, or None when content was not measured."""
    return summary.get(variant, {}).get("content_error", []) if content_measured(d) else None


def _judges(judge_dir: Path | None, test_set: str) -> dict[str, dict[str, Any]]:
    out = {}
    if judge_dir is None:
        return out
    for kind in ("speaker", "content"):
        path = judge_dir / kind / "judge.json"
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            if test_set in record.get("eval", {}):
                out[kind] = {"description": record.get("description", ""), **record["eval"][test_set]}
    return out


def speaker_judge_sv_row(judge_dir: str | os.PathLike | None, test_set: str) -> list[str] | None:
    """The speaker judge as a row of the speaker-verification table (its columns), or None."""
    j = _judges(Path(judge_dir) if judge_dir else None, test_set).get("speaker")
    if j is None:
        return None
    n_t, n_n = j.get("n_target", 0), j.get("n_nontarget", 0)
    return ["speaker judge (supervised reference)", "judge/speaker", f"{100 * j['eer']:.2f}", "", "",
            f"{j['min_dcf']:.4f}", "", f"{n_t + n_n} ({n_t}/{n_n})"]


def judge_rows(judge_dir: Path | None, test_set: str, content: bool = True) -> list[list[str]]:
    """The judges as reference rows; without ``content`` (no transcripts) the content judge's row
    says it was not trained."""
    j = _judges(judge_dir, test_set)
    rows = []
    if "speaker" in j:
        rows.append(["speaker judge (supervised reference)", "judge/speaker", f"{100 * j['speaker']['eer']:.2f}",
                     "", "", "", "", ""])
    if not content:
        rows.append(["content judge (no transcripts: not trained)", "", "", "", NOT_MEASURED, "", "", ""])
    elif "content" in j:
        rows.append(["content judge (supervised reference)", "judge/content", "", "",
                     f"{100 * j['content']['error_rate']:.2f} (on the audio)", "", "", ""])
    return rows


def disentanglement_table(results: Sequence[ExperimentResult], test_set: str,
                          judge_dir: str | os.PathLike | None = None) -> Table | None:
    """One row per experiment that has disentanglement metrics, then the judges; None when none has."""
    rows, content = [], True
    for r in group_results(results).values():
        for res in r:
            d = load_disentanglement(res.expdir, test_set)
            if d is None:
                continue
            f = row_figures(d)
            content = content and content_measured(d)
            summary = d["swap"]["summary"]
            rows.append([res.system, res.tag, f"{100 * res.eer_s:.2f}", f"{100 * res.eer_z:.2f}",
                         _pct(f["probe_z"]), _pct(f["probe_s"]), _pm(summary["swap"]["speaker"], 1.0, 3),
                         _pm(_content_draws(summary, "swap", d))])
    if not rows:
        return None
    judge_dir = Path(judge_dir) if judge_dir else None
    return Table(COLUMNS, rows, judge_rows(judge_dir, test_set, content), judge_note(judge_dir, test_set, content))


def judge_note(judge_dir: Path | None, test_set: str, content: bool = True) -> str:
    """What the judges are, under the table ("" without judges)."""
    j = _judges(judge_dir, test_set)
    if not content:
        j.pop("content", None)
    if not j:
        return ""
    parts = [f"{kind}: {info['description']}" for kind, info in j.items()]
    return "Judges (trained on the training set, shared by every experiment): " + "; ".join(parts) + "."


def seed_disentanglement_table(results: Sequence[ExperimentResult], test_set: str) -> Table | None:
    """Mean ± std over the seeds of each experiment group (groups with every seed measured)."""
    lines = []
    for group, rows in group_results(results).items():
        ds = [load_disentanglement(r.expdir, test_set) for r in rows]
        if len(rows) < 2 or any(d is None for d in ds):
            continue
        figs = [row_figures(d) for d in ds]
        lines.append([rows[0].system, f"{group} ({len(rows)} seeds)", _pm([r.eer_s for r in rows]),
                      _pm([r.eer_z for r in rows]), _pm([f["probe_z"] for f in figs]), _pm([f["probe_s"] for f in figs]),
                      _pm([f["swap_speaker"] for f in figs], 1.0, 3), _pm([f["swap_content"] for f in figs])])
    return Table(COLUMNS, lines) if lines else None


# (label, figure of row_figures, scale, digits, True when lower is better)
_DIFF = (("unit error z (%)", "probe_z", 100.0, 2, True), ("unit error s (%)", "probe_s", 100.0, 2, False),
         ("swap speaker score", "swap_speaker", 1.0, 3, False), ("swap content error (%)", "swap_content", 100.0, 2, True))


def disentanglement_difference_table(results: Sequence[ExperimentResult], test_set: str) -> Table | None:
    """C-DSVAE minus DSVAE on the disentanglement figures, paired by seed, with a two-sided paired
    t-test (as the speaker-verification differences); None without two shared seeds."""
    groups = group_results(results)
    figs = {g: {r.seed: load_disentanglement(r.expdir, test_set) for r in rows} for g, rows in groups.items()}
    lines = []
    for a in (g for g, rows in groups.items() if rows[0].system == "C-DSVAE"):
        for b in (g for g, rows in groups.items() if rows[0].system == "DSVAE"):
            seeds = sorted(k for k in figs[a] if k is not None and figs[a][k] and figs[b].get(k))
            if len(seeds) < 2:
                continue
            fa = {k: row_figures(figs[a][k]) for k in seeds}
            fb = {k: row_figures(figs[b][k]) for k in seeds}
            for label, key, scale, digits, lower in _DIFF:
                if any(f[k][key] is None for f in (fa, fb) for k in seeds):
                    continue  # a content figure measured without transcripts
                diffs = [scale * (fa[k][key] - fb[k][key]) for k in seeds]
                m, sd = mean_std(diffs)
                better = sum((d < 0) if lower else (d > 0) for d in diffs)
                p = paired_p_value(diffs)
                verdict = (f"within noise (p = {p:.2f})" if p >= 0.05 else
                           f"{'C-DSVAE' if (m < 0) == lower else 'DSVAE'} better (p = {p:.3f})")
                lines.append([f"{a} - {b}", label, str(len(seeds)), f"{m:+.{digits}f} ± {sd:.{digits}f}",
                              f"{better}/{len(seeds)}", verdict])
    if not lines:
        return None
    return Table((Column("compared"), Column("metric"), Column("seeds"), Column("difference (mean ± std)", True),
                  Column("C-DSVAE better in", True), Column("verdict")), lines)


def swap_detail_table(results: Sequence[ExperimentResult], test_set: str) -> Table | None:
    """Every variant and reference of the swap protocol, mean ± std over draws."""
    lines = []
    for rows in group_results(results).values():
        for r in rows:
            d = load_disentanglement(r.expdir, test_set)
            if d is None:
                continue
            s = d["swap"]["summary"]
            lines.append([r.tag, _pm(s["swap"]["speaker"], 1.0, 3), _pm(_content_draws(s, "swap", d)),
                          _pm(s["random_s"]["speaker"], 1.0, 3), _pm(_content_draws(s, "random_s", d)),
                          _pm(s["random_z"]["speaker"], 1.0, 3), _pm(_content_draws(s, "random_z", d)),
                          _pm(_content_draws(s, "reconstruction_b", d)),
                          _pm(s.get("reconstruction_b", {}).get("speaker", []), 1.0, 3)])
            refs = (s["input_a"].get("speaker", []), _content_draws(s, "input_b", d))
    if not lines:
        return None
    content_ref = (f"the content judge's error on B's own input is {_pm(refs[1])} %" if refs[1] is not None
                   else "content is not measured (no transcripts)")
    note = (f"References on the real inputs of the same pairs: the speaker judge places A's own input closer to "
            f"A's speaker in {_pm(refs[0], 1.0, 3)} of the pairs; {content_ref}. Ideal: swap and random z close to 1 "
            "for the speaker; random s near 0.5 (z_B alone does not carry B's voice); content errors of swap and "
            "random s near the reconstruction's, random z far above it; the reconstruction closer to B shows how "
            "much of the voice the decoder keeps when nothing is swapped"
            + (" (n/a: results written before it was measured)." if any(line[-1] == "n/a" for line in lines) else "."))
    return Table(DETAIL_COLUMNS, lines, note=note)


# Every figure a variant is compared on: (label, key of variant_figures, scale, digits, True when lower is
# better). Random s is best at 0.5 and measured above it, so lower is better there.
_VARIANT = (("EER s (%)", "eer_s", 100.0, 2, True), ("EER z (%)", "eer_z", 100.0, 2, False),
            ("unit error z (%)", "probe_z", 100.0, 2, True), ("unit error s (%)", "probe_s", 100.0, 2, False),
            ("swap (s_A, z_B): closer to A", "swap_speaker", 1.0, 3, False),
            ("swap: content error vs B (%)", "swap_content", 100.0, 2, True),
            ("random s (s ~ p(s), z_B): closer to B", "random_s", 1.0, 3, True),
            ("random z (s_A, z ~ p(z)): closer to A", "random_z", 1.0, 3, False),
            ("reconstruction of B: content error (%)", "reconstruction_content", 100.0, 2, True),
            ("reconstruction of B: closer to B", "reconstruction_speaker", 1.0, 3, False))
VARIANT_EXPLAIN = (
    "Each experiment against the baseline on the seeds both have: the per-seed differences (experiment - "
    "baseline), then mean ± std over seeds, the baseline's and the experiment's own mean ± std over those "
    "seeds, the seeds where the experiment is better, and a two-sided paired t-test (\"within noise\" when "
    "p >= 0.05; one seed is not tested). EERs with cosine scoring; swap figures are each experiment's mean over "
    "draws. Lower is better for random s (its ideal is 0.5, and it is measured above it).")


def variant_figures(result: ExperimentResult, test_set: str) -> dict[str, float | None]:
    """The figures of :data:`_VARIANT` for one experiment (None where not measured)."""
    figs: dict[str, float | None] = {key: None for _, key, *_ in _VARIANT}
    figs.update(eer_s=result.eer_s, eer_z=result.eer_z)
    d = load_disentanglement(result.expdir, test_set)
    if d is None:
        return figs
    s = d["swap"]["summary"]

    def mean(values: Sequence[float] | None) -> float | None:
        return float(np.mean(values)) if values else None

    figs.update(row_figures(d))
    figs.update(random_s=mean(s.get("random_s", {}).get("speaker")),
                random_z=mean(s.get("random_z", {}).get("speaker")),
                reconstruction_content=mean(_content_draws(s, "reconstruction_b", d)),
                reconstruction_speaker=mean(s.get("reconstruction_b", {}).get("speaker")))
    return figs


def variant_table(results: Sequence[ExperimentResult], test_set: str, baseline: str) -> Table:
    """Every experiment group against ``baseline`` (a group: a tag without its seed suffix), paired by
    seed on every figure of :data:`_VARIANT` (:data:`VARIANT_EXPLAIN` says how); groups without a seed
    in common with it are left out."""
    groups = group_results(results)
    if baseline not in groups:
        raise UserError(f"baseline {baseline!r} is none of the experiments ({', '.join(groups)}); "
                        "name one by its tag without the _seed<N> suffix")
    base = {r.seed: variant_figures(r, test_set) for r in groups[baseline]}
    lines = []
    for name, rows in groups.items():
        if name == baseline:
            continue
        ours = {r.seed: variant_figures(r, test_set) for r in rows}
        seeds = sorted((k for k in ours if k in base), key=lambda k: (k is None, k or 0))
        for label, key, scale, digits, lower in _VARIANT:
            a = [ours[k][key] for k in seeds]
            b = [base[k][key] for k in seeds]
            if not seeds or any(v is None for v in a + b):
                continue
            diffs = [scale * (x - y) for x, y in zip(a, b)]
            # better at the precision shown: a difference that prints as 0 counts for neither
            better = sum((round(d, digits) < 0) if lower else (round(d, digits) > 0) for d in diffs)
            if len(seeds) < 2:
                diff, verdict = f"{diffs[0]:+.{digits}f}", "one seed: not tested"
            else:
                m, sd = mean_std(diffs)
                p = paired_p_value(diffs)
                diff = f"{m:+.{digits}f} ± {sd:.{digits}f}"
                verdict = (f"within noise (p = {p:.2f})" if p >= 0.05 else
                           f"{name if (m < 0) == lower else baseline} better (p = {p:.3f})")
            lines.append([f"{name} - {baseline}", label, ",".join("-" if k is None else str(k) for k in seeds), diff, _pm(b, scale, digits),
                          _pm(a, scale, digits), f"{better}/{len(seeds)}", verdict])
    return Table((Column("compared"), Column("metric"), Column("seeds"), Column("difference (mean ± std)", True),
                  Column("baseline", True), Column("experiment", True), Column("better in", True), Column("verdict")),
                 lines)
