"""The results model every report is made of, and its Markdown rendering.

A report is a :class:`Document`: a list of blocks (headings, paragraphs, tables, figures, the
listening demo, links to the experiments). The report modules build documents from the
experiment dirs; :meth:`Document.markdown` writes RESULTS.md and :mod:`cdsvae.eval.report.html` writes
index.html from the same document, so a number is formatted once and a figure drawn once.

Table cells that are a mean ± std carry both numbers (:class:`Measure`), which is what lets a
page mark the best value of a column only where it stands beyond the spread of the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

LOWER, HIGHER = "lower", "higher"


def relative_link(path: Path, start: str | os.PathLike) -> str:
    """``path`` relative to ``start``, with forward slashes: a link from a report."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


@dataclass(frozen=True)
class Measure:
    """A table cell showing a mean ± std (``text``), with the two numbers in the units shown and
    the number of decimals shown."""

    text: str
    mean: float
    sd: float
    digits: int = 2

    def __str__(self) -> str:
        return self.text


Cell = Union[str, Measure]


@dataclass(frozen=True)
class Column:
    """A table column: its title, whether it holds numbers (right-aligned), and which way is
    better (``LOWER``, ``HIGHER`` or None). ``md_right`` overrides the Markdown alignment."""

    title: str
    numeric: bool = False
    better: str | None = None
    md_right: bool | None = None


@dataclass
class Table:
    """Rows of cells under ``columns``; ``references`` are rows shown for comparison (judges),
    never marked best; ``note`` is the text under the table."""

    columns: Sequence[Column]
    rows: list[Sequence[Cell]] = field(default_factory=list)
    references: list[Sequence[Cell]] = field(default_factory=list)
    note: str = ""

    def markdown(self) -> str:
        def line(cells: Sequence[Cell]) -> str:
            return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|\n"

        right = [c.numeric if c.md_right is None else c.md_right for c in self.columns]
        text = (line([c.title for c in self.columns]) + "|" + "|".join("---:" if r else "---" for r in right) + "|\n"
                + "".join(line(r) for r in self.rows + self.references))
        return text + ("\n" + self.note + "\n" if self.note else "")

    def best(self) -> set[tuple[int, int]]:
        """(row, column) of each column's best mean where it is beyond noise: its mean ± std
        interval overlaps no other row's, and the means differ as shown. Only columns of Measures
        with a direction count."""
        out = set()
        for j, col in enumerate(self.columns):
            cells = [(i, r[j]) for i, r in enumerate(self.rows) if j < len(r) and isinstance(r[j], Measure)]
            if col.better is None or len(cells) < 2:
                continue
            sign = 1.0 if col.better == LOWER else -1.0
            i_best, top = min(cells, key=lambda c: sign * c[1].mean)
            if all(abs(top.mean - m.mean) > top.sd + m.sd and round(top.mean, top.digits) != round(m.mean, m.digits)
                   for i, m in cells if i != i_best):
                out.add((i_best, j))
        return out


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Code:
    """A command, shown verbatim."""

    text: str


@dataclass(frozen=True)
class Environment:
    """What made the report: (name, value) pairs under an "Environment" heading."""

    items: Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Figure:
    """An image with a caption saying what it shows; ``explain`` says how to read it and which
    way is better (a page shows it under the image; Markdown has only the caption as alt text)."""

    caption: str
    path: Path
    explain: str = ""


@dataclass(frozen=True)
class Figures:
    figures: Sequence[Figure]


@dataclass(frozen=True)
class Sound:
    """One file of a listening demo: the audio, the picture of its log-mel frames (None when
    the demo has none) and the caption (with the judges' verdict when there are judges)."""

    caption: str
    path: Path
    image: Path | None = None


@dataclass(frozen=True)
class DemoBlock:
    """An experiment's demo: its note, then sounds (speech) or figures (video); ``missing`` is
    what to say when the demo step has not run."""

    note: str = ""
    sounds: Sequence[Sound] = ()
    figures: Sequence[Figure] = ()
    missing: str = ""


@dataclass(frozen=True)
class ExperimentEntry:
    """An experiment as listed in a comparison: its two pages, its figures and its demo."""

    tag: str
    system: str
    markdown_page: Path
    html_page: Path
    figures: Sequence[Figure] = ()
    demo: DemoBlock | None = None


@dataclass(frozen=True)
class Experiments:
    entries: Sequence[ExperimentEntry]


Block = Union[Heading, Paragraph, Bullets, Code, Environment, Table, Figures, DemoBlock, Experiments]


@dataclass
class Document:
    """A report: its title, blocks, and the directory it is written to (links are relative to it).
    ``trailing_newline`` ends the Markdown with one more newline, as the video reports always have."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    directory: Path = Path(".")
    trailing_newline: bool = False

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            lines += markdown_lines(block, self.directory)
        return "\n".join(lines) + ("\n" if self.trailing_newline else "")


def markdown_lines(block: Block, directory: Path) -> list[str]:
    """The Markdown of one block, as the lines a report joins with newlines."""
    if isinstance(block, Heading):
        return ["#" * block.level + " " + block.text, ""]
    if isinstance(block, Paragraph):
        return [block.text, ""]
    if isinstance(block, Bullets):
        return [*(f"- {item}" for item in block.items), ""]
    if isinstance(block, Code):
        return ["    " + block.text, ""]
    if isinstance(block, Environment):
        return ["## Environment", "", *(f"- {k}: {v}" for k, v in block.items), ""]
    if isinstance(block, Table):
        return [block.markdown()]
    if isinstance(block, Figures):
        return [f"![{f.caption}]({relative_link(f.path, directory)})" for f in block.figures] + [""]
    if isinstance(block, DemoBlock):
        if block.missing:
            return [block.missing, ""]
        out = [block.note, ""] if block.note else []
        out += [f"![{f.caption}]({relative_link(f.path, directory)})" for f in block.figures]
        out += [f"- [{s.path.name}]({relative_link(s.path, directory)}): {s.caption}" for s in block.sounds]
        return out + ([""] if block.figures or block.sounds else [])
    if isinstance(block, Experiments):
        return [f"- [{e.tag}]({relative_link(e.markdown_page, directory)}) ({e.system})"
                for e in block.entries] + [""]
    raise TypeError(f"not a report block: {block!r}")
