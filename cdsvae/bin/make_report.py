"""RESULTS.md for each experiment and one table comparing them, generated from the experiment dirs.

    python -m cdsvae.bin.make_report --expdirs exp/cdsvae exp/dsvae --out RESULTS.md

Reads ``<exp>/config.yaml``, ``<exp>/emb_<set>/``, ``<exp>/score_<set>/`` and the listening demo
index ``<exp>/demo/demo.json``; writes each experiment's report, named after --out (``<exp>/RESULTS.md``,
``<exp>/RESULTS_<set>.md``, ...), with DET curves and t-SNE plots under ``<exp>/report/<set>/`` and
links to the demo's wav files (made beforehand by ``python -m cdsvae.bin.make_demo``), and the
comparison table at --out, and prints the speaker-verification table and, when stage 6 measured
them, the disentanglement tables (a corpus without transcripts keeps every speaker-side figure
there and marks content as not measured). Each Markdown report has its HTML page next to it
(``index.html`` for RESULTS.md, ``index_<set>.html`` for RESULTS_<set>.md): the same tables, the
figures, and the demo with audio players. No model is loaded.

A variant against the default, seed by seed, on every figure (an ablation; e.g. the experiments of
``conf/train_conz30.yaml`` trained with ``--seeds "1 2 3"`` next to the default's)::

    python -m cdsvae.bin.make_report --expdirs exp/cdsvae_seed* exp/conz30_seed* --out RESULTS_conz30.md \
        --baseline cdsvae
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from cdsvae.bin import run_main, str2bool
from cdsvae.io import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cdsvae.bin.make_report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--expdirs", type=Path, nargs="+", required=True, help="experiment directories")
    parser.add_argument("--out", type=Path, required=True, help="the comparison RESULTS.md to write")
    parser.add_argument("--set", dest="test_set", default="test", help="evaluation set name (emb_<set>, score_<set>)")
    parser.add_argument("--plots", type=str2bool, default=True, help="DET and t-SNE figures (true|false)")
    parser.add_argument("--demo", type=str2bool, default=True,
                        help="link the listening demo of <exp>/demo/, or say how to make it (true|false)")
    parser.add_argument("--command", default=None,
                        help="the command that made the experiments, recorded in the comparison (e.g. for a "
                             "recipe's reference RESULTS.md)")
    parser.add_argument("--baseline", default=None, metavar="NAME",
                        help="an experiment by its tag without the _seed<N> suffix (e.g. cdsvae): the comparison "
                             "also gives every other experiment against it, paired by seed, on every figure")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for d in args.expdirs:
        if not d.is_dir():
            raise UserError(f"{d}: experiment directory not found")

    from cdsvae.eval.report.disentangle_tables import disentanglement_table, swap_detail_table, variant_table
    from cdsvae.eval.report.speech import html_name, write_recipe_report
    from cdsvae.eval.report.tables import results_table

    results = write_recipe_report(args.expdirs, args.out, args.test_set, args.plots, args.demo,
                                  command=args.command, baseline=args.baseline)
    print(results_table(results).markdown(), end="")
    table = disentanglement_table(results, args.test_set, results[0].expdir.parent / "judge")
    if table is not None:
        detail = swap_detail_table(results, args.test_set)
        print(f"\nDisentanglement ({args.test_set} set):\n{table.markdown()}\n{detail.markdown() if detail else ''}",
              end="")
    if args.baseline is not None:
        print(f"\nAgainst {args.baseline}, paired by seed:\n{variant_table(results, args.test_set, args.baseline).markdown()}",
              end="")
    print(f"wrote {args.out} and {args.out.with_name(html_name(args.out.name))}")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
