"""The judge tables of trained video models, with their swap grids and samples linked.

    python -m cdsvae.bin.video_report --out RESULTS.md exp/cdsvae exp/dsvae

For every experiment dir with a judge_results.json: ``RESULTS.md`` and its page ``index.html`` with
its judge tables and the pictures of its demo dir (``demo/swap_grid.png``, ``demo/swap_grid_frame0.png``,
``demo/samples.png``, made by ``python -m cdsvae.bin.make_demo --expdir <exp> --data <test split>``);
``--out`` gets the side-by-side tables of all of them, and ``index.html`` next to it the same with
every experiment's pictures. Nothing is recomputed: no model is loaded.
"""

from __future__ import annotations

import argparse

from cdsvae.bin import run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="video_report", description=__doc__.split("\n\n")[0],
        epilog="the pictures are made beforehand by python -m cdsvae.bin.make_demo (end of stage 5).")
    p.add_argument("expdirs", nargs="+", metavar="EXPDIR", help="experiment dirs (row names are their base names)")
    p.add_argument("--out", default=None, help="combined RESULTS.md for all experiment dirs")
    p.add_argument("--title", default="Results")
    p.add_argument("--command", default=None, help="the command that made the experiments, recorded in --out")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from cdsvae.eval.report.video import write_video_reports

    write_video_reports(args.expdirs, args.out, args.title, args.command)
    for d in args.expdirs:
        if (Path(d) / "judge_results.json").is_file():
            print(f"video_report: wrote {Path(d) / 'RESULTS.md'} and {Path(d) / 'index.html'}")
    if args.out:
        print(f"video_report: wrote {args.out} and {Path(args.out).with_name('index.html')}")
    return 0


def cli() -> None:
    """Console entry point (setup.py)."""
    run_main(main)


if __name__ == "__main__":
    cli()
