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
class ExperimentResult:
    """One row of a results table."""

    expdir: Path
    tag: str
    system: str
    eer_s: float
    eer_z: float
    min_dcf_s: float
    min_dcf_z: float
    n_target: int
    n_nontarget: int

    @property
    def gap(self) -> float:
        """EER(z) - EER(s) as a fraction: large when s carries the speaker and z does not."""
        return self.eer_z - self.eer_s

    @property
    def n_trials(self) -> int:
        return self.n_target + self.n_nontarget


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


def load_experiment(expdir: str | os.PathLike, test_set: str = "test") -> ExperimentResult:
    """The table row of ``expdir`` from its config.yaml and ``score_<set>/results.json``."""
    expdir = Path(expdir)
    cfg = load_config(expdir)
    path = expdir / f"score_{test_set}" / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: results not found (run the scoring stage first)")
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
        return ExperimentResult(
            expdir=expdir,
            tag=expdir.name,
            system=system_label(cfg),
            eer_s=float(res["s"]["eer"]),
            eer_z=float(res["z"]["eer"]),
            min_dcf_s=float(res["s"]["min_dcf"]),
            min_dcf_z=float(res["z"]["min_dcf"]),
            n_target=int(res["n_target"]),
            n_nontarget=int(res["n_nontarget"]),
        )
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except (KeyError, TypeError) as e:
        raise UserError(f"{path}: missing or malformed entry {e}") from None


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


def table_row(r: ExperimentResult) -> str:
    return (
        f"| {r.system} | {r.tag} | {100 * r.eer_s:.2f} | {100 * r.eer_z:.2f} | {100 * r.gap:.2f} "
        f"| {r.min_dcf_s:.4f} | {r.min_dcf_z:.4f} | {r.n_trials} ({r.n_target}/{r.n_nontarget}) |\n"
    )


def results_table(results: Iterable[ExperimentResult]) -> str:
    """Markdown table; C-DSVAE rows first, then DSVAE, each by tag, so tables line up across recipes."""
    order = {"C-DSVAE": 0, "DSVAE": 1}
    rows = sorted(results, key=lambda r: (order.get(r.system, 2), r.tag))
    return TABLE_HEADER + "".join(table_row(r) for r in rows)


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
    from cdsvae.eval.eer import compute_eer, det_curve
    from cdsvae.eval.scoring import load_embedding_matrix, read_scores
    from cdsvae.eval.trials import read_trials, read_utt2spk

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
    out += ["", results_table([result])]
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


def recipe_markdown(results: Sequence[ExperimentResult], out: Path, test_set: str = "test") -> str:
    """The comparison table; each row links to the experiment's own report of the same name as ``out``."""
    lines = ["# Results", "", environment_header(), f"## Speaker verification ({test_set} set)", ""]
    lines.append(
        f"EER of cosine scoring over all pairs of {test_set} utterances; gap = EER z - EER s (higher is better)."
    )
    lines += ["", results_table(results)]
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
) -> list[ExperimentResult]:
    """Per-experiment reports ``<exp>/<name of out>``, then one table comparing them at ``out``.

    Naming the per-experiment file after ``out`` keeps the reports of several evaluation sets
    (RESULTS.md, RESULTS_dev.md, ...) from overwriting each other.
    """
    if not expdirs:
        raise UserError("no experiment directories given")
    out = Path(out)
    results = [write_experiment_report(d, test_set, plots, demo, demo_feats, out.name)[0] for d in expdirs]
    atomic_write_text(out, recipe_markdown(results, out, test_set))
    return results


def logmel_to_waveform(logmel: np.ndarray, fbank_cfg: Mapping[str, Any] | None = None, n_iter: int = 32) -> np.ndarray:
    """Audio from log-mel filterbanks made by :mod:`cdsvae.features` (for listening, not for scoring).

    Undoes the feature pipeline step by step: exp of the log, a least-squares inverse of Kaldi's
    mel banks (torchaudio's InverseMelScale with its banks swapped for the ones the features
    used), Griffin-Lim phase recovery with the same window and hop, de-emphasis, and a peak
    normalisation (the level is not recoverable once the log floor and DC removal are applied).
    """
    import torch
    import torchaudio
    from scipy.signal import lfilter
    from torchaudio.compliance import kaldi

    from cdsvae.features import load_fbank_config, shift_samples, window_samples

    cfg = load_fbank_config(dict(fbank_cfg or {}))
    logmel = np.asarray(logmel, dtype=np.float64)
    if logmel.ndim != 2 or logmel.shape[1] != int(cfg["n_mels"]):
        raise UserError(f"expected log-mel frames (T, {cfg['n_mels']}), got shape {logmel.shape}")
    sr, win, hop = int(cfg["sample_rate"]), window_samples(cfg), shift_samples(cfg)
    n_fft = win if cfg["n_fft"] is not None and int(cfg["n_fft"]) == win else 1 << (win - 1).bit_length()
    high = 0.0 if cfg["fmax"] is None else float(cfg["fmax"])
    banks, _ = kaldi.get_mel_banks(int(cfg["n_mels"]), n_fft, float(sr), float(cfg["fmin"]), high, 100.0, -500.0, 1.0)
    banks = torch.nn.functional.pad(banks, (0, 1))  # Kaldi leaves out the Nyquist bin
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=n_fft // 2 + 1, n_mels=int(cfg["n_mels"]), sample_rate=sr, driver="gelsd"
    )
    inverse_mel.fb = banks.T.contiguous().float()
    mel_power = torch.from_numpy(np.exp(np.minimum(logmel, 50.0)).T.copy()).float()
    griffin_lim = torchaudio.transforms.GriffinLim(n_fft=n_fft, win_length=win, hop_length=hop, power=2.0, n_iter=n_iter)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        wave = griffin_lim(inverse_mel(mel_power[None]))[0].numpy().astype(np.float64)
    if cfg["preemphasis"]:
        wave = lfilter([1.0], [1.0, -float(cfg["preemphasis"])], wave)
    wave = wave - wave.mean()
    peak = np.abs(wave).max()
    return (0.9 * wave / peak if peak > 0 else wave).astype(np.float32)


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

    from cdsvae.eval.embeddings import cut_segments, speech_model_settings
    from cdsvae.eval.trials import read_utt2spk
    from cdsvae.features import CMVNStats, load_fbank_config
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
