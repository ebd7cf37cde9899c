"""A results page opened in headless Chromium (Debian's chromium and chromium-driver, driven by
selenium): what its console said, whether every image and audio source loaded, how wide it is
on a phone, and a screenshot.

Outside CI a machine without the browser skips, naming the install command; in CI (CI set) a
missing browser fails, since `.ci/run` installs it (tools/install.sh --with-browser).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL = "tools/install.sh --with-browser (as root: apt-get install chromium chromium-driver)"
# Headless on a machine without network: without these Chromium waits on refused connections.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required")
PHONE_WIDTH = 390

# Resolves when every <audio> has its metadata (or failed): [src, duration, error code] each.
_AUDIO = """
const done = arguments[arguments.length - 1];
const players = Array.from(document.querySelectorAll('audio'));
const state = a => [a.getAttribute('src'), a.duration, a.error ? a.error.code : null];
Promise.all(players.map(a => (a.readyState >= 1 || a.error) ? null : new Promise(ok => {
    a.addEventListener('loadedmetadata', ok, {once: true});
    a.addEventListener('error', ok, {once: true});
    a.load();
}))).then(() => done(players.map(state)));
"""
_IMAGES = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
Promise.all(images.map(i => i.complete ? null : new Promise(ok => { i.onload = ok; i.onerror = ok; })))
    .then(() => done(images.map(i => [i.getAttribute('src'), i.naturalWidth])));
"""


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver), or skip (fail in CI) naming the install command."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        driver = None
    if chromium and driver:
        return chromium, driver
    missing = ", ".join(n for n, p in (("chromium", chromium), ("chromedriver or selenium", driver)) if not p)
    message = f"no headless browser ({missing} missing): install it with {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class PageCheck:
    """What a page showed: console errors, (src, natural width) of every image, (src, duration,
    error code) of every audio player, the page width at phone size, and a screenshot (PNG)."""

    console_errors: list[str]
    images: list[tuple[str, int]]
    audio: list[tuple[str, float, int | None]]
    phone_overflow: int
    screenshot: bytes


def open_page(page: Path, width: int = 1280) -> PageCheck:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},900")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(chromedriver), options=options)
        try:
            driver.set_script_timeout(60)
            driver.get(page.resolve().as_uri())
            images = [tuple(x) for x in driver.execute_async_script(_IMAGES)]
            audio = [tuple(x) for x in driver.execute_async_script(_AUDIO)]
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, min(int(height) + 100, 16000))
            screenshot = driver.get_screenshot_as_png()
            # a phone: its width, and the page's viewport meta honoured as a mobile browser does
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": PHONE_WIDTH, "height": 800, "deviceScaleFactor": 1, "mobile": True})
            inner, overflow = driver.execute_script(
                "return [window.innerWidth, document.documentElement.scrollWidth - window.innerWidth]")
            assert inner == PHONE_WIDTH, f"phone emulation gave a {inner} px wide window"
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        finally:
            driver.quit()
    return PageCheck(errors, images, audio, int(overflow), screenshot)
