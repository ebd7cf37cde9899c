"""Thin command-line entry points: ``python -m cdsvae.bin.<tool> --help``.

Every tool is ``build_parser()`` (its options), ``main(argv)`` that parses them and calls the library,
and ``cli()`` (its console script, through :func:`run_main`); the argparse types they share live here.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Callable, Sequence

from cdsvae.io import UserError


def str2bool(value: str) -> bool:
    """argparse type for Kaldi-style boolean options: true/false (also 1/0, yes/no)."""
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1, written without sign or leading zeros."""
    if not re.fullmatch(r"[1-9][0-9]*", value):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def int_list(text: str) -> list[int]:
    """argparse type: comma-separated positive integers, e.g. ``32,64,128``."""
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def add_audio_options(parser: argparse.ArgumentParser) -> None:
    """--resample and --channel, as every tool that reads audio for a packed model takes them."""
    parser.add_argument("--resample", type=str2bool, nargs="?", const=True, default=None, metavar="BOOL",
                        help="true: resample audio at another rate than the model's features; false: refuse it "
                             "(default: the model's own setting, resample in its fbank.yaml; --resample alone: true)")
    parser.add_argument("--channel", default=None, metavar="mix|N",
                        help="several channels: mix (their mean) or the channel of index N, from 0 "
                             "(default: the model's own setting, channel in its fbank.yaml, else mix)")


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run ``main(argv)``; a UserError (or a missing/unreadable file) becomes one line on stderr and exit 1."""
    module = getattr(main, "__module__", "cdsvae")
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    prog = module.rsplit(".", 1)[-1]
    try:
        code = main(argv)
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"{prog}: error: {e.strerror}: {e.filename}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code or 0)
