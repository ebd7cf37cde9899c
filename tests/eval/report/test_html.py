"""The HTML page of a report document: the same cells as its Markdown, the best value in bold only
beyond noise, escaped text, relative links, and nothing fetched from elsewhere."""

from __future__ import annotations

import re

import pytest

from _experiments import CDSVAE_W, DSVAE_W, make_exp, results
from cdsvae.eval.report.document import Column, Document, Figure, Figures, Heading, Measure, Paragraph, Table
from cdsvae.eval.report.html import render_page


def eer_table(c_dsvae: Measure, dsvae: Measure) -> Table:
    return Table([Column("system"), Column("EER s (%)", True, "lower")], [["C-DSVAE", c_dsvae], ["DSVAE", dsvae]])


@pytest.mark.parametrize("c_dsvae, bold", [
    (Measure("2.00 ± 0.50", 2.0, 0.5), True),    # 2.5 < 4 - 1: apart
    (Measure("2.00 ± 1.50", 2.0, 1.5), False),   # 3.5 > 3: the intervals overlap
    (Measure("4.00 ± 0.00", 4.001, 0.0), False),  # no spread, but the same value as shown
])
def test_best_value_is_bold_only_beyond_noise(tmp_path, c_dsvae, bold):
    table = eer_table(c_dsvae, Measure("4.00 ± 1.00", 4.0, 1.0) if c_dsvae.sd else Measure("4.00 ± 0.00", 4.0, 0.0))
    html = render_page(Document("t", [table], tmp_path))
    assert table.best() == ({(0, 1)} if bold else set())
    assert html.count('class="num best"') == (1 if bold else 0)
    assert ('<td class="num best">' + c_dsvae.text + "</td>" in html) == bold
    assert "Bold: a column" in html and "where its interval overlaps no other row" in html
    # higher is better: the other row wins the same comparison
    flipped = Table([Column("system"), Column("EER z (%)", True, "higher")], table.rows)
    assert flipped.best() == ({(1, 1)} if bold else set())


def test_page_and_markdown_render_one_document(tmp_path):
    from cdsvae.eval.report.speech import recipe_document
    from cdsvae.eval.report.results import load_experiment

    rows = [load_experiment(make_exp(tmp_path, f"{name}_seed{k}", w, results(eer, 0.3, 0.5, 0.99, 10, 90), seed=k))
            for name, w, eer in (("cdsvae", CDSVAE_W, 0.05), ("dsvae", DSVAE_W, 0.20)) for k in (1, 2)]
    doc = recipe_document(rows, tmp_path / "RESULTS.md")
    md, html = doc.markdown(), render_page(doc)
    cells = set(re.findall(r"\| ([0-9][^|]*?) (?=\|)", md))
    shown = set(re.findall(r"<td[^>]*>([^<]*)</td>", html))
    assert cells and cells <= shown  # every number of the Markdown tables is on the page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert 'href="cdsvae_seed1/index.html"' in html and "(cdsvae_seed1/RESULTS.md)" in md


def test_page_escapes_text_and_links_relative_to_itself(tmp_path):
    (tmp_path / "sub").mkdir()
    doc = Document("a <b> & c", [Heading(2, "x < y"), Paragraph("run `make demo` | see"),
                                 Figures([Figure("DET <s>", tmp_path / "sub" / "det.png", "lower is better")])],
                   tmp_path / "page")
    html = render_page(doc)
    assert "<title>a &lt;b&gt; &amp; c</title>" in html and "<h2>x &lt; y</h2>" in html
    assert "<p>run <code>make demo</code> | see</p>" in html
    assert 'src="../sub/det.png"' in html and "DET &lt;s&gt;. lower is better" in html
