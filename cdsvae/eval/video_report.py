"""The video reports: the judge results table, ``<exp>/RESULTS.md`` and one RESULTS.md comparing them.

Everything is read from the experiment dirs: ``judge_results.json`` (stage 6), ``config.yaml``
for the system label, and the swap grids and samples of the demo step (``exp/<tag>/demo/``,
made by ``python -m cdsvae.bin.make_demo``), which are linked, never drawn here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cdsvae.errors import UserError
from cdsvae.eval.demo import demo_lines
from cdsvae.eval.environment import environment_header
from cdsvae.eval.experiment import load_config, system_label
from cdsvae.io import atomic_write_text

def _fmt(r: Mapping | None, scale: float = 1.0, digits: int = 2) -> str:
    if not r:
        return "-"
    return f"{scale * r['mean']:.{digits}f} ± {scale * r['std']:.{digits}f}"


def judge_table(results: Mapping[str, Mapping]) -> str:
    """Markdown tables of protocol A and B from ``{row name: judge_results.json content}``."""
    rows = list(results.items())
    dyn = sorted({n for _, r in rows for n in r.get("protocol_A", {})})
    sta = [n for n in next((list(r.get("protocol_B", {})) for _, r in rows if r.get("protocol_B")), [])]
    out = []
    for n in dyn:
        k = next(r["protocol_A"][n]["num_classes"] for _, r in rows if n in r.get("protocol_A", {}))
        out.append(f"Protocol A: keep z, draw s ~ N(0, I), judge `{n}` "
                   f"(ceiling IS = {k}, H(y) = ln {k} = {np.log(k):.3f})\n")
        out.append("| model | Acc % | IS | H(y\\|x) | H(y) |")
        out.append("|---|---|---|---|---|")
        for name, r in rows:
            a = r.get("protocol_A", {}).get(n, {})
            out.append(f"| {name} | {_fmt(a.get('acc'), 100)} | {_fmt(a.get('is'), 1, 3)} | "
                       f"{_fmt(a.get('h_yx'), 1, 3)} | {_fmt(a.get('h_y'), 1, 3)} |")
        out.append("")
    if sta:
        out.append("Protocol B: keep s, draw z from the learned prior, judge the static factors (Acc %)\n")
        out.append("| model | " + " | ".join(sta) + " |")
        out.append("|---" * (len(sta) + 1) + "|")
        for name, r in rows:
            b = r.get("protocol_B", {})
            out.append(f"| {name} | " + " | ".join(_fmt(b.get(n, {}).get("acc"), 100) for n in sta) + " |")
        out.append("")
    ckpts = [(name, r["checkpoint"]) for name, r in rows if r.get("checkpoint")]
    if ckpts:
        out.append("Checkpoints evaluated (the eval/train ratio is eval-mode over train-mode reconstruction error "
                   "on a fixed batch; 1 means eval mode reproduces training)\n")
        out.append("| model | checkpoint | step (epoch) | chosen because | eval/train recon ratio |")
        out.append("|---|---|---:|---|---:|")
        for name, c in ckpts:
            ratio = c.get("eval_train_ratio")
            out.append(f"| {name} | {c.get('file')} | {c.get('step')} ({c.get('epoch')}) | {c.get('why')} | "
                       f"{'n/a' if ratio is None else f'{ratio:.3f}'} |")
        out.append("")
    ref = [(name, r["reference"]) for name, r in rows if "reference" in r]
    if ref:
        names = list(ref[0][1]["real"])
        out.append("Judge accuracy % on real test sequences and on reconstructions (ceilings)\n")
        out.append("| model | input | " + " | ".join(names) + " |")
        out.append("|---|---" + "|---" * len(names) + "|")
        for name, r in ref:
            for kind in ("real", "recon"):
                out.append(f"| {name} | {kind} | " + " | ".join(f"{100 * r[kind][n]:.2f}" for n in names) + " |")
        out.append("")
    return "\n".join(out)


def write_results_md(path: str | os.PathLike, results: Mapping[str, Mapping], title: str = "Results",
                     command: str | None = None, pictures: Sequence[str] = ()) -> Path:
    """A RESULTS.md of judge tables; ``pictures`` holds markdown lines of the demo (none: no section)."""
    cmd = f"## Command\n\n    {command}\n\n" if command else ""
    text = f"# {title}\n\n{environment_header()}\n{cmd}## Judge metrics (test set)\n\n{judge_table(results)}"
    if pictures:
        text += "\n## Swap grids and samples\n\n" + "\n".join(pictures) + "\n"
    atomic_write_text(path, text)
    return Path(path)


def write_video_reports(exp_dirs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None,
                        title: str = "Results", command: str | None = None) -> dict[str, Mapping]:
    """``<exp>/RESULTS.md`` for every experiment with a ``judge_results.json`` (linking its demo
    pictures), and the side-by-side tables of all of them at ``out``; returns the results by row name."""
    if not exp_dirs:
        raise UserError("no experiment directories given")
    results: dict[str, Mapping] = {}
    for d in exp_dirs:
        exp = Path(d)
        name = f"{system_label(load_config(exp))} ({exp.name})"
        rj = exp / "judge_results.json"
        if rj.is_file():
            try:
                results[name] = json.loads(rj.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise UserError(f"{rj}: not valid JSON ({e.msg}, line {e.lineno})") from None
            write_results_md(exp / "RESULTS.md", {name: results[name]}, f"{title}: {exp.name}",
                             pictures=demo_lines(exp, exp, how=" --data <test split dir>"))
    if out is not None:
        if not results:
            raise UserError("no judge_results.json in any experiment dir; run the scoring stage first")
        write_results_md(out, results, title, command=command)
    return results
