"""The HTML rendering of a report :class:`~cdsvae.eval.report.document.Document`: ``index.html``.

One page per document, written next to its RESULTS.md from the same blocks (templates/page.html,
Jinja2 with autoescaping). The page is self-contained and relocatable: styles inline, no script,
every link relative to the page, so a copied directory opens the same. Speech demos get audio
players; a table marks the best mean of a column in bold only where it is beyond noise
(:meth:`~cdsvae.eval.report.document.Table.best`), and says so under the table.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from cdsvae.eval.report.document import (Bullets, Code, DemoBlock, Document, Environment, Experiments, Figures, Heading,
                                  Measure, Paragraph, Table, relative_link)
from cdsvae.io import atomic_write_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
ARROWS = {"lower": "↓", "higher": "↑"}
BEST_NOTE = ("↓ lower is better, ↑ higher is better. Bold: a column's best mean ± std where its interval "
             "overlaps no other row's, i.e. a difference beyond the spread over seeds or draws.")
_KINDS = ((Heading, "heading"), (Paragraph, "paragraph"), (Bullets, "bullets"), (Code, "code"),
          (Environment, "environment"), (Table, "table"), (Figures, "figures"), (DemoBlock, "demo"),
          (Experiments, "experiments"))


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2
    from markupsafe import Markup, escape

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def inline(text: str) -> Markup:
        """Escaped text with `code` spans and Markdown's escaped pipes undone."""
        parts = re.split(r"`([^`]+)`", str(text).replace("\\|", "|"))
        return Markup("").join(escape(p) if k % 2 == 0 else Markup("<code>") + escape(p) + Markup("</code>")
                               for k, p in enumerate(parts))

    env.filters["inline"] = inline
    return env


def kind(block) -> str:
    for cls, name in _KINDS:
        if isinstance(block, cls):
            return name
    raise TypeError(f"not a report block: {block!r}")


def render_page(doc: Document) -> str:
    """The page of ``doc``; links are relative to ``doc.directory``, where the page is written."""

    def link(path: str | os.PathLike) -> str:
        return relative_link(Path(path), doc.directory)

    def explained(table: Table) -> bool:
        return any(c.better for c in table.columns) and any(isinstance(x, Measure) for r in table.rows for x in r)

    return _environment().get_template("page.html").render(
        doc=doc, kind=kind, link=link, arrows=ARROWS, best_note=BEST_NOTE, explained=explained)


def write_page(path: str | os.PathLike, doc: Document) -> Path:
    """Write the page of ``doc`` at ``path`` (atomically)."""
    atomic_write_text(path, render_page(doc))
    return Path(path)
