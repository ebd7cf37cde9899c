"""The results pages of the tiny mini and Sprites runs (conftest.py), opened in headless Chromium
from a copy of exp/ made elsewhere (the pages are relocatable): no console error, every image and
audio source loads, nothing wider than a phone, and the screenshot is not blank.

Set CDSVAE_SCREENSHOTS=DIR to keep the screenshots.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from _browser import PageCheck, browser_paths, open_page


@pytest.fixture(scope="session")
def browser():
    """Skips (fails in CI) before the recipe runs when there is no browser to open the pages."""
    return browser_paths()


def check_page(page: Path, name: str) -> PageCheck:
    assert page.is_file(), page
    got = open_page(page)
    keep = os.environ.get("CDSVAE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / f"{name}.png").write_bytes(got.screenshot)
    assert got.console_errors == []
    assert got.images and all(width > 0 for _, width in got.images), got.images
    assert all(error is None and duration > 0 for _, duration, error in got.audio), got.audio
    assert got.phone_overflow <= 0, f"{page} is {got.phone_overflow} px wider than a phone"
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(got.screenshot))[..., :3]
    assert pixels.shape[0] > 900 and (pixels < 0.9).any(axis=-1).mean() > 0.02, "blank screenshot"
    return got


def srcs(check: PageCheck) -> set[str]:
    return {src for src, _ in check.images} | {src for src, _, _ in check.audio}


def test_mini_results_pages_in_chromium(browser, mini_recipe):
    exp = mini_recipe.pages
    page = check_page(exp / "index.html", "mini")
    html = (exp / "index.html").read_text()
    assert "<table>" in html and "C-DSVAE" in html and "DSVAE" in html
    # every experiment's DET and t-SNE plots and its demo players, on the comparison page itself
    for tag in ("cdsvae_seed1", "cdsvae_seed2", "dsvae_seed1", "dsvae_seed2"):
        assert {f"{tag}/report/test/det.png", f"{tag}/report/test/tsne.png",
                f"{tag}/demo/A_content_B_speaker.wav"} <= srcs(page), tag
        assert f'href="{tag}/index.html"' in html
    assert len(page.audio) == 4 * 8  # A, B, their reconstructions, two swaps, random s, random z
    own = check_page(exp / "cdsvae_seed1" / "index.html", "mini_cdsvae_seed1")
    assert {"report/test/det.png", "demo/B_content_A_speaker.wav"} <= srcs(own)


def test_sprites_results_pages_in_chromium(browser, sprites_recipe):
    exp = sprites_recipe.pages
    page = check_page(exp / "index.html", "sprites")
    for tag in ("cdsvae_cpu", "dsvae_cpu"):
        assert {f"{tag}/demo/swap_grid.png", f"{tag}/demo/samples.png"} <= srcs(page), tag
    assert page.audio == []
    check_page(exp / "cdsvae_cpu" / "index.html", "sprites_cdsvae_cpu")
