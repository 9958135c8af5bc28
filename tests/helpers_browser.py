"""The page in a real browser: Debian's Chromium driven by Playwright (no browser download; CI
installs it with apt, see .ci/run). Without Chromium or Playwright the tests that use it skip and
say why."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "Chromium is not installed (apt-get install chromium; .ci/run does)"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
"""Skips a test (or, as ``pytestmark``, a module) before its fixtures start a server."""

ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
"""A camera that needs no device and no permission prompt (add ``--use-file-for-fake-video-capture=``
for a clip of one's own; without it Chromium draws its test pattern)."""


@contextmanager
def chromium(*args: str) -> Iterator:
    """A headless Chromium (``ARGS`` + ``args``) until the block ends; skips without Chromium or Playwright."""
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *args])
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, *, allowed: tuple[str, ...] = ("blob:",), **options):
    """The page at ``url`` in a new context (camera allowed, downloads accepted, then ``options``),
    loaded (its legend drawn). Returns ``(context, page, errors, outside)``: the page's script errors,
    and the requests that went neither to ``url`` nor to an ``allowed`` scheme, as they happen."""
    context = browser.new_context(**{"permissions": ["camera"], "accept_downloads": True, **options})
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith((url, *allowed)) else outside.append(r.url))
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('#legend span').length === 7")
    return context, page, errors, outside


def download_csv(page, button: str, target: Path) -> list[dict[str, str]]:
    """Clicks ``button``, saves what it downloads as ``target``; the CSV's rows."""
    with page.expect_download() as download_info:
        page.click(button)
    download_info.value.save_as(target)
    return list(csv.DictReader(io.StringIO(target.read_text())))


def shoot(page, name: str, *, selector: str | None = None) -> None:
    """A screenshot ``name.png`` in ``$EMONET_SCREENSHOTS`` when it is set (look at them): the whole
    page, or the element ``selector`` picks."""
    folder = os.environ.get("EMONET_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = str(Path(folder) / f"{name}.png")
        if selector is None:
            page.screenshot(path=path, full_page=True)
        else:
            page.locator(selector).screenshot(path=path)
