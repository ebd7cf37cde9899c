"""RESULTS.md, plots and a listening demo generated from experiment directories.

Everything in a report is read from the experiment dirs (resolved config, embeddings, trials,
scores, results.json), so numbers are never typed by hand. Plots and audio are written after
scoring and are optional; they must cope with a handful of utterances.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from cdsvae.errors import UserError
from cdsvae.io import atomic_open, atomic_write_bytes, atomic_write_text

CONTRASTIVE_KEYS = ("con_s", "con_z", "mi_sz")
REPORT_SUBDIR = "report"


@dataclass(frozen=True)
class Scores:
    """EER (fractions) and minDCF of s and of z under one scoring."""

    eer_s: float
    eer_z: float
    min_dcf_s: float
    min_dcf_z: float

    @property
    def gap(self) -> float:
        return self.eer_z - self.eer_s


@dataclass(frozen=True)
class ExperimentResult:
    """One row of a results table: raw cosine scores, and optionally mean-normalised ones.

    ``group`` is the tag without its ``_seed<N>`` suffix, so the seeds of one config share it;
    ``checkpoint`` is what the extraction recorded about the weights it used.
    """

    expdir: Path
    tag: str
    system: str
    eer_s: float
    eer_z: float
    min_dcf_s: float
    min_dcf_z: float
    n_target: int
    n_nontarget: int
    mean_norm: Scores | None = None
    seed: int | None = None
    checkpoint: Mapping[str, Any] | None = None
    n_utts: int | None = None  # utterances of the test set (utt2spk), None when not recorded
    without_embedding: Sequence[str] = ()  # of them, left out of the trials (skipped in an earlier stage)

    @property
    def gap(self) -> float:
        """EER(z) - EER(s) as a fraction: large when s carries the speaker and z does not."""
        return self.scores().gap

    @property
    def n_trials(self) -> int:
        return self.n_target + self.n_nontarget

    @property
    def group(self) -> str:
        return SEED_SUFFIX.sub("", self.tag)

    def scores(self, scoring: str = "cosine") -> Scores | None:
        """The figures of one scoring: "cosine" (raw) or "mean_norm" (None when not scored)."""
        if scoring == "cosine":
            return Scores(self.eer_s, self.eer_z, self.min_dcf_s, self.min_dcf_z)
        if scoring == "mean_norm":
            return self.mean_norm
        raise ValueError(f"unknown scoring {scoring!r}; expected cosine or mean_norm")


SEED_SUFFIX = re.compile(r"_seed\d+$")
SCORINGS = {"cosine": "cosine", "mean_norm": "cosine after subtracting the training-set mean embedding"}


def system_label(cfg: Mapping[str, Any]) -> str:
    """'DSVAE' when the contrastive and MI weights are all zero, else 'C-DSVAE'.

    A weight missing from the config's ``loss`` section takes the objective's default.
    """
    from cdsvae.objectives import LossWeights

    loss = cfg.get("loss") or {}
    defaults = LossWeights()
    weights = [float(loss.get(key, getattr(defaults, key))) for key in CONTRASTIVE_KEYS]
    return "DSVAE" if all(w == 0 for w in weights) else "C-DSVAE"


def load_config(expdir: Path) -> dict:
    """The resolved config the trainer wrote (read as is: a report never re-validates old runs)."""
    from cdsvae.train.config import read_yaml

    path = expdir / "config.yaml"
    if not path.is_file():
        raise UserError(f"{path}: resolved config not found (is {expdir} an experiment dir?)")
    return read_yaml(path)


def _scores(entry: Mapping[str, Any]) -> Scores:
    return Scores(float(entry["s"]["eer"]), float(entry["z"]["eer"]),
                  float(entry["s"]["min_dcf"]), float(entry["z"]["min_dcf"]))


def load_experiment(expdir: str | os.PathLike, test_set: str = "test") -> ExperimentResult:
    """The table row of ``expdir`` from its config.yaml, ``score_<set>/results.json`` and ``emb_<set>/meta.json``."""
    expdir = Path(expdir)
    cfg = load_config(expdir)
    path = expdir / f"score_{test_set}" / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: results not found (run the scoring stage first)")
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
        cosine = _scores(res)
        mean_norm = _scores(res["mean_norm"]) if "mean_norm" in res else None
        n_target, n_nontarget = int(res["n_target"]), int(res["n_nontarget"])
        n_utts = int(res["n_utts"]) if "n_utts" in res else None
        without = [str(u) for u in res.get("without_embedding", [])]
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except (KeyError, TypeError) as e:
        raise UserError(f"{path}: missing or malformed entry {e}") from None
    checkpoint = None
    meta = expdir / f"emb_{test_set}" / "meta.json"
    if meta.is_file():
        try:
            checkpoint = json.loads(meta.read_text(encoding="utf-8")).get("checkpoint")
        except (json.JSONDecodeError, AttributeError):
            raise UserError(f"{meta}: not a valid embeddings meta.json") from None
    seed = (cfg.get("train") or {}).get("seed")
    return ExperimentResult(expdir=expdir, tag=expdir.name, system=system_label(cfg), eer_s=cosine.eer_s,
                            eer_z=cosine.eer_z, min_dcf_s=cosine.min_dcf_s, min_dcf_z=cosine.min_dcf_z,
                            n_target=n_target, n_nontarget=n_nontarget, mean_norm=mean_norm,
                            seed=None if seed is None else int(seed), checkpoint=checkpoint, n_utts=n_utts,
                            without_embedding=without)


def skipped_note(results: Sequence[ExperimentResult], test_set: str) -> list[str]:
    """Markdown lines counting the test utterances left out of the trials, or none when none was."""
    lines = []
    for r in sorted(results, key=lambda r: r.tag):
        if r.without_embedding:
            shown = ", ".join(r.without_embedding[:10]) + (", ..." if len(r.without_embedding) > 10 else "")
            lines.append(f"- {r.tag}: {len(r.without_embedding)} of {r.n_utts} {test_set} utterances skipped "
                         f"(unreadable or too short; --skip_bad) and left out of the trials: {shown}")
    return (["Skipped utterances:", "", *lines, ""]) if lines else []


def git_commit(repo: Path | None = None) -> str:
    """Commit of the code that made the report (``+dirty`` when the tree has changes)."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_header() -> str:
    """Date, software versions and code version; deliberately no host name."""
    import torch

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        "## Environment",
        "",
        f"- date: {now}",
        f"- python: {platform.python_version()}",
        f"- torch: {torch.__version__}",
        f"- system: {platform.system()} {platform.machine()}",
        f"- git commit: {git_commit()}",
        "",
    ]
    return "\n".join(lines)


TABLE_HEADER = (
    "| system | tag | EER s (%) | EER z (%) | gap z - s (%) | minDCF s | minDCF z | trials (target/nontarget) |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|\n"
)
_SYSTEM_ORDER = {"C-DSVAE": 0, "DSVAE": 1}


def table_row(r: ExperimentResult, scoring: str = "cosine") -> str:
    sc = r.scores(scoring)
    if sc is None:
        return f"| {r.system} | {r.tag} | n/a | n/a | n/a | n/a | n/a | {r.n_trials} ({r.n_target}/{r.n_nontarget}) |\n"
    return (
        f"| {r.system} | {r.tag} | {100 * sc.eer_s:.2f} | {100 * sc.eer_z:.2f} | {100 * sc.gap:.2f} "
        f"| {sc.min_dcf_s:.4f} | {sc.min_dcf_z:.4f} | {r.n_trials} ({r.n_target}/{r.n_nontarget}) |\n"
    )


def _ordered(results: Iterable[ExperimentResult]) -> list[ExperimentResult]:
    return sorted(results, key=lambda r: (_SYSTEM_ORDER.get(r.system, 2), r.tag))


def results_table(results: Iterable[ExperimentResult], scoring: str = "cosine") -> str:
    """Markdown table; C-DSVAE rows first, then DSVAE, each by tag, so tables line up across recipes."""
    return TABLE_HEADER + "".join(table_row(r, scoring) for r in _ordered(results))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _pm(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    m, sd = mean_std([scale * x for x in values])
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def group_results(results: Iterable[ExperimentResult]) -> dict[str, list[ExperimentResult]]:
    """Experiments keyed by tag without the seed suffix (C-DSVAE groups first), seeds in order."""
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


SEED_TABLE_HEADER = (
    "| system | experiment | seeds | EER s (%) | EER z (%) | gap z - s (%) | minDCF s | minDCF z |\n"
    "|---|---|---|---:|---:|---:|---:|---:|\n"
)


def seed_table(results: Iterable[ExperimentResult], scoring: str = "cosine") -> str:
    """Mean ± std over the seeds of each experiment group (sample std)."""
    lines = [SEED_TABLE_HEADER]
    for group, rows in group_results(results).items():
        scores = [r.scores(scoring) for r in rows]
        if any(sc is None for sc in scores):
            continue
        seeds = ",".join(str(r.seed) for r in rows)
        lines.append(
            f"| {rows[0].system} | {group} | {len(rows)} ({seeds}) | {_pm([sc.eer_s for sc in scores])} "
            f"| {_pm([sc.eer_z for sc in scores])} | {_pm([sc.gap for sc in scores])} "
            f"| {_pm([sc.min_dcf_s for sc in scores], 1.0, 4)} | {_pm([sc.min_dcf_z for sc in scores], 1.0, 4)} |\n")
    return "".join(lines)


# (label, attribute of Scores, scale, digits, True when lower is better)
_DIFF_METRICS = (("EER s (%)", "eer_s", 100.0, 2, True), ("EER z (%)", "eer_z", 100.0, 2, False),
                 ("gap z - s (%)", "gap", 100.0, 2, False), ("minDCF s", "min_dcf_s", 1.0, 4, True))


def difference_table(results: Iterable[ExperimentResult], scoring: str = "cosine") -> str:
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
    lines = []
    for a in ours:
        for b in base:
            by_seed_a = {r.seed: r.scores(scoring) for r in groups[a]}
            by_seed_b = {r.seed: r.scores(scoring) for r in groups[b]}
            seeds = sorted(s for s in by_seed_a if s is not None and s in by_seed_b
                           and by_seed_a[s] is not None and by_seed_b[s] is not None)
            if len(seeds) < 2:
                continue
            if not lines:
                lines.append("| compared | metric | seeds | difference (mean ± std) | pooled std | beyond | "
                             "C-DSVAE better in | verdict |\n"
                             "|---|---|---|---:|---:|---|---:|---|\n")
            for label, attr, scale, digits, lower in _DIFF_METRICS:
                diffs = [scale * (getattr(by_seed_a[s], attr) - getattr(by_seed_b[s], attr)) for s in seeds]
                m, sd = mean_std(diffs)
                better = sum((d < 0) if lower else (d > 0) for d in diffs)
                sd_a = mean_std([scale * getattr(by_seed_a[s], attr) for s in seeds])[1]
                sd_b = mean_std([scale * getattr(by_seed_b[s], attr) for s in seeds])[1]
                pooled = float(np.sqrt((sd_a ** 2 + sd_b ** 2) / 2))
                p = paired_p_value(diffs)
                if p >= 0.05:
                    verdict = f"within noise (p = {p:.2f})"
                else:
                    verdict = f"{'C-DSVAE' if (m < 0) == lower else 'DSVAE'} better (p = {p:.3f})"
                lines.append(f"| {a} - {b} | {label} | {len(seeds)} | {m:+.{digits}f} ± {sd:.{digits}f} "
                             f"| {pooled:.{digits}f} | {'yes' if abs(m) > pooled else 'no'} "
                             f"| {better}/{len(seeds)} | {verdict} |\n")
    return "".join(lines)


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


def checkpoint_table(results: Iterable[ExperimentResult]) -> str:
    """Which weights each experiment was evaluated with, and why."""
    lines = ["| tag | checkpoint | step (epoch) | chosen because | criterion on dev "
             "| eval/train recon ratio, dev batch | eval/train recon ratio, training batch |\n",
             "|---|---|---:|---|---:|---:|---:|\n"]
    for r in _ordered(results):
        c = r.checkpoint or {}
        if not c:
            lines.append(f"| {r.tag} | not recorded | | | | | |\n")
            continue
        value = c.get("criterion_value")
        ratios = [c.get("eval_train_ratio"), c.get("eval_train_ratio_train")]
        lines.append(
            f"| {r.tag} | {c.get('file')} | {c.get('step')} ({c.get('epoch')}) | {c.get('why')} "
            f"| {c.get('criterion')} {'n/a' if value is None else f'{value:.1f}'} "
            + "".join(f"| {'n/a' if x is None else f'{x:.3f}'} " for x in ratios) + "|\n")
    return "".join(lines)


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_det(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], out_png: str | os.PathLike, title: str = "") -> Path:
    """DET curves on normal-deviate axes; ``curves[name] = (false_alarm_rate, miss_rate)``."""
    from scipy.stats import norm

    plt = _pyplot()
    ticks = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9])
    lo, hi = 0.0005, 0.95
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (pfa, pmiss) in curves.items():
        pfa = np.clip(np.asarray(pfa, dtype=float), lo, hi)
        pmiss = np.clip(np.asarray(pmiss, dtype=float), lo, hi)
        ax.plot(norm.ppf(pfa), norm.ppf(pmiss), label=name)
    ax.plot(norm.ppf([lo, hi]), norm.ppf([lo, hi]), color="grey", linestyle=":", linewidth=0.8)
    ax.set_xticks(norm.ppf(ticks))
    ax.set_xticklabels([f"{100 * t:g}" for t in ticks], fontsize=7)
    ax.set_yticks(norm.ppf(ticks))
    ax.set_yticklabels([f"{100 * t:g}" for t in ticks], fontsize=7)
    ax.set_xlim(norm.ppf(lo), norm.ppf(hi))
    ax.set_ylim(norm.ppf(lo), norm.ppf(hi))
    ax.set_xlabel("false alarm rate (%)")
    ax.set_ylabel("miss rate (%)")
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    out_png = Path(out_png)
    _save_figure(fig, out_png)
    plt.close(fig)
    return out_png


def _save_figure(fig, out_png: Path) -> None:
    with atomic_open(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")


def embed_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE map with a perplexity that suits small sets; PCA below 5 points."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 5:
        centred = x - x.mean(axis=0)
        if n < 2 or not np.any(centred):
            return np.zeros((n, 2))
        u, sv, _ = np.linalg.svd(centred, full_matrices=False)
        out = np.zeros((n, 2))
        k = min(2, u.shape[1])
        out[:, :k] = u[:, :k] * sv[:k]
        return out
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500).fit_transform(x)


def plot_tsne(
    embeddings: Mapping[str, np.ndarray], speakers: Sequence[str], out_png: str | os.PathLike, title: str = ""
) -> Path:
    """One panel per factor, points coloured by speaker (legend only when it stays readable)."""
    plt = _pyplot()
    names = sorted(set(speakers))
    colour_of = {s: k for k, s in enumerate(names)}
    colours = np.array([colour_of[s] for s in speakers])
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    fig, axes = plt.subplots(1, len(embeddings), figsize=(5 * len(embeddings), 4.5), squeeze=False)
    for ax, (factor, x) in zip(axes[0], embeddings.items()):
        xy = embed_2d(x)
        for s in names:
            m = colours == colour_of[s]
            ax.scatter(xy[m, 0], xy[m, 1], s=12, color=cmap(colour_of[s] % cmap.N), label=s)
        ax.set_title(f"t-SNE of {factor} ({len(speakers)} utterances, {len(names)} speakers)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(names) <= 12:
        axes[0][-1].legend(fontsize=6, loc="best", markerscale=0.8)
    if title:
        fig.suptitle(title)
    out_png = Path(out_png)
    _save_figure(fig, out_png)
    plt.close(fig)
    return out_png


def _experiment_plots(expdir: Path, test_set: str, outdir: Path) -> list[tuple[str, Path]]:
    """DET and t-SNE figures of one experiment; returns (caption, path) pairs."""
    from cdsvae.data.datadir import read_utt2spk
    from cdsvae.eval.eer import compute_eer, det_curve
    from cdsvae.eval.scoring import load_embedding_matrix, read_scores
    from cdsvae.eval.trials import read_trials

    figures = []
    score_dir = expdir / f"score_{test_set}"
    trials = read_trials(score_dir / "trials")
    curves = {}
    for factor in ("s", "z"):
        scores = read_scores(score_dir / f"scores_{factor}", trials)
        tgt, non = scores[trials.target], scores[~trials.target]
        curves[f"{factor} (EER {100 * compute_eer(tgt, non)[0]:.2f}%)"] = det_curve(tgt, non)
    figures.append(("DET curves of s and z", plot_det(curves, outdir / "det.png", title=expdir.name)))

    emb_dir = expdir / f"emb_{test_set}"
    utt2spk = read_utt2spk(emb_dir / "utt2spk")
    utts = sorted(utt2spk)
    matrices = {f: load_embedding_matrix(emb_dir / f"{f}.scp", utts) for f in ("s", "z")}
    speakers = [utt2spk[u] for u in utts]
    figures.append(("t-SNE of s and z coloured by speaker", plot_tsne(matrices, speakers, outdir / "tsne.png", expdir.name)))
    return figures


def _scoring_sections(results: Sequence[ExperimentResult], table) -> list[str]:
    out = []
    for scoring, what in SCORINGS.items():
        if scoring == "mean_norm" and not any(r.mean_norm is not None for r in results):
            continue
        body = table(results, scoring)
        if body.count("\n") <= 2:
            continue
        out += [f"Scoring: {what}.", "", body]
    return out


def experiment_markdown(
    result: ExperimentResult,
    figures: Sequence[tuple[str, Path]],
    demo: Sequence[tuple[str, Path]],
    demo_note: str = "",
    test_set: str = "test",
) -> str:
    out = [f"# Results: {result.tag} ({result.system})", "", environment_header()]
    out += [f"## Speaker verification ({test_set} set)", ""]
    out.append(
        f"Cosine scoring of all pairs of {test_set} utterances. A good disentanglement has a low EER "
        "for s (speaker) and a high EER for z (content): the gap is EER z - EER s."
    )
    out.append("")
    out += skipped_note([result], test_set)
    out += _scoring_sections([result], results_table)
    out += ["## Checkpoint", "", checkpoint_table([result])]
    if figures:
        out += ["## Figures", ""]
        out += [f"![{caption}]({_relative(path, result.expdir)})" for caption, path in figures]
        out.append("")
    if demo or demo_note:
        out += ["## Listening demo", ""]
        if demo_note:
            out += [demo_note, ""]
        out += [f"- [{path.name}]({_relative(path, result.expdir)}): {caption}" for caption, path in demo]
        out.append("")
    return "\n".join(out)


def write_experiment_report(
    expdir: str | os.PathLike,
    test_set: str = "test",
    plots: bool = True,
    demo: bool = True,
    demo_feats: str | os.PathLike | None = None,
    name: str = "RESULTS.md",
) -> tuple[ExperimentResult, Path]:
    """Write ``<expdir>/<name>`` (plus figures and demo audio under ``<expdir>/report/<set>``)."""
    expdir = Path(expdir)
    result = load_experiment(expdir, test_set)
    outdir = expdir / REPORT_SUBDIR / test_set
    figures = _experiment_plots(expdir, test_set, outdir) if plots else []
    demo_files: list[tuple[str, Path]] = []
    note = ""
    if demo:
        demo_files, note = listening_demo(expdir, test_set, outdir / "demo", feats_dir=demo_feats)
    path = expdir / name
    atomic_write_text(path, experiment_markdown(result, figures, demo_files, note, test_set))
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
    lines += _scoring_sections(results, results_table)
    lines += ["### Checkpoints", "",
              "Every system is evaluated with the checkpoint of lowest validation negative ELBO (recon + KL terms) "
              "on the dev set. The eval/train ratios are that checkpoint's eval-mode over train-mode reconstruction "
              "error on a fixed batch: near 1 on the training batch means the batch-norm running statistics "
              "describe the trained model; on the dev batch it can fall below 1, because a batch of other speakers "
              "normalised with its own statistics is shifted away from what the model learnt. Above 1.25 the "
              "trainer warns.", "",
              checkpoint_table(results)]
    lines += ["Per experiment (figures, listening demo):", ""]
    for r in sorted(results, key=lambda r: r.tag):
        lines.append(f"- [{r.tag}]({_relative(r.expdir / out.name, out.parent)}) ({r.system})")
    lines.append("")
    return "\n".join(lines)


def write_recipe_report(
    expdirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    test_set: str = "test",
    plots: bool = True,
    demo: bool = True,
    demo_feats: str | os.PathLike | None = None,
    command: str | None = None,
) -> list[ExperimentResult]:
    """Per-experiment reports ``<exp>/<name of out>``, then one table comparing them at ``out``.

    Naming the per-experiment file after ``out`` keeps the reports of several evaluation sets
    (RESULTS.md, RESULTS_dev.md, ...) from overwriting each other.
    """
    if not expdirs:
        raise UserError("no experiment directories given")
    out = Path(out)
    results = [write_experiment_report(d, test_set, plots, demo, demo_feats, out.name)[0] for d in expdirs]
    atomic_write_text(out, recipe_markdown(results, out, test_set, command))
    return results


def _write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> Path:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
    atomic_write_bytes(path, buf.getvalue())
    return path


def pick_demo_pair(utt2spk: Mapping[str, str]) -> tuple[str, str] | None:
    """First utterance of the first speaker (A) and of the second speaker (B), in sorted order."""
    first: dict[str, str] = {}
    for utt in sorted(utt2spk):
        first.setdefault(utt2spk[utt], utt)
    speakers = sorted(first)
    if len(speakers) < 2:
        return None
    return first[speakers[0]], first[speakers[1]]


def listening_demo(
    expdir: str | os.PathLike,
    test_set: str,
    outdir: str | os.PathLike,
    feats_dir: str | os.PathLike | None = None,
    max_segments: int = 40,
    n_iter: int = 32,
) -> tuple[list[tuple[str, Path]], str]:
    """Wav files: A and B as fed to the model, their reconstructions, and A's z decoded with B's s.

    Returns ``(caption, path)`` pairs and a note for the report; a demo that cannot be made
    (one speaker, no fbank config) gives a note instead of failing the report.
    """
    import kaldiio
    import torch

    from cdsvae.data.datadir import read_utt2spk
    from cdsvae.data.feats import CMVNStats
    from cdsvae.eval.embeddings import cut_segments, speech_model_settings
    from cdsvae.fbank import load_fbank_config, logmel_to_waveform
    from cdsvae.train import load_model

    expdir, outdir = Path(expdir), Path(outdir)
    emb_dir = expdir / f"emb_{test_set}"
    meta_path = emb_dir / "meta.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: not found (run the embedding stage first)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    feats_dir = Path(feats_dir or meta["feats"])
    fbank_path = feats_dir / "fbank.yaml"
    if not fbank_path.is_file():
        return [], f"No demo: {fbank_path} (the feature options) is missing, so the features cannot be inverted."
    utt2spk = read_utt2spk(emb_dir / "utt2spk")
    pair = pick_demo_pair(utt2spk)
    if pair is None:
        return [], "No demo: the test set has a single speaker."
    fbank_cfg = load_fbank_config(fbank_path)
    model, cfg = load_model(expdir)
    _, normalise = speech_model_settings(cfg, expdir)
    segment_frames = int(meta["segment_frames"])
    cmvn_path = cfg.get("data", {}).get("cmvn")
    if cmvn_path is not None:
        stats = CMVNStats.load(cmvn_path)
        mean, std = stats.mean.astype(np.float32), stats.std.astype(np.float32)
    else:
        mean, std = np.float32(0.0), np.float32(1.0)

    from cdsvae.data.datadir import read_scp

    scp = read_scp(feats_dir / "feats.scp")
    inputs, segs = {}, {}
    for utt in pair:
        if utt not in scp:
            raise UserError(f"{feats_dir / 'feats.scp'}: no features for demo utterance {utt}")
        mat = np.asarray(kaldiio.load_mat(scp[utt]), dtype=np.float32)
        s = cut_segments(normalise(mat), segment_frames)[:max_segments]
        segs[utt] = torch.from_numpy(np.ascontiguousarray(s))
        inputs[utt] = mat[: s.shape[0] * segment_frames]

    def frames(x: torch.Tensor) -> np.ndarray:
        return x.reshape(-1, x.shape[-1]).numpy() * std + mean

    a, b = pair
    with torch.no_grad():
        enc = {u: model.encode(segs[u]) for u in pair}
        s_utt = {u: enc[u].s_mean.mean(dim=0, keepdim=True) for u in pair}
        recon = {u: model.decode(s_utt[u].expand(segs[u].shape[0], -1), enc[u].z_mean) for u in pair}
        swapped = model.decode(s_utt[b].expand(segs[a].shape[0], -1), enc[a].z_mean)

    sr = int(fbank_cfg["sample_rate"])
    outputs = [
        ("A_input.wav", inputs[a], f"A = {a} (speaker {utt2spk[a]}): its features, inverted (vocoder reference)"),
        ("B_input.wav", inputs[b], f"B = {b} (speaker {utt2spk[b]}): its features, inverted (vocoder reference)"),
        ("A.wav", frames(recon[a]), "A reconstructed by the model (s of A, z of A)"),
        ("B.wav", frames(recon[b]), "B reconstructed by the model (s of B, z of B)"),
        ("A_content_B_speaker.wav", frames(swapped), "z of A decoded with s of B: A's words in B's voice"),
    ]
    files = [
        (caption, _write_wav(outdir / name, logmel_to_waveform(feats, fbank_cfg, n_iter), sr))
        for name, feats, caption in outputs
    ]
    note = (
        f"Utterance A = {a} (speaker {utt2spk[a]}), B = {b} (speaker {utt2spk[b]}); the first "
        f"{segs[a].shape[0]} segments of {segment_frames} frames. s is averaged over each utterance's segments, "
        "z is kept per frame. Decoded log-mel frames are turned into audio with Griffin-Lim "
        f"({n_iter} iterations), so all files share its artefacts; compare them with the *_input.wav references."
    )
    return files, note
