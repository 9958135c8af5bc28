"""The page at / in a real browser: Debian's Chromium driven by Playwright (no browser download).

Loads the page, uploads two photos, checks the face boxes, the per-face charts and the table,
downloads the CSV, shows a readable error for a file that is not a picture, and takes a webcam
snapshot from Chromium's fake camera. Screenshots go to ``$EMONET_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from emonet_face import taxonomy as tx
from emonet_face.serve import ServeConfig, create_app
from serve_helpers import running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run does)"),
]
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def url(tiny_encoder_dir, tiny_heads_dir):
    config = ServeConfig(encoder=str(tiny_encoder_dir), heads=str(tiny_heads_dir), device="cpu", workers=2)
    with running_server(create_app(config)) as base:
        yield base


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    from skimage import data

    folder = tmp_path_factory.mktemp("browser-photos")
    astronaut = Image.fromarray(data.astronaut())
    group = Image.new("RGB", (1024, 512), (235, 235, 235))
    group.paste(astronaut, (0, 0))
    group.paste(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    paths = [folder / "astronaut.png", folder / "two people.jpg"]
    astronaut.save(paths[0])
    group.save(paths[1], quality=92)
    return paths


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS + FAKE_CAMERA)
        yield browser
        browser.close()


def shoot(page, name: str) -> None:
    folder = os.environ.get("EMONET_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_page_scores_two_photos_draws_boxes_and_charts_and_downloads_csv(browser, url, photos, tmp_path):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(url) or r.url.startswith("blob:") else outside.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('#legend span').length === 7")
    page.set_input_files("#picker", [str(p) for p in photos])
    page.wait_for_selector(".picture canvas >> nth=1", timeout=60_000)

    headings = page.locator(".picture h3").all_inner_texts()
    assert headings == ["astronaut.png", "two people.jpg"]
    # 3 faces in all (1 + 2): 3 charts of 40 coloured bars and 4 dimension markers each
    assert page.locator(".face").count() == 3
    assert page.locator("svg.chart rect.bar").count() == 3 * 40
    assert page.locator("svg.chart circle.dimension").count() == 3 * 4
    bar_colours = set(page.locator("svg.chart rect.bar").evaluate_all("els => els.map(e => e.getAttribute('fill'))"))
    assert len(bar_colours) == len(tx.FAMILIES)
    # the box is drawn: the pixel in the middle of the astronaut's top box edge has its family colour
    edge = page.evaluate(
        """() => {
          const row = state.rows[0], c = document.querySelector('.picture canvas');
          const x = Math.round(row.box_x + row.box_w / 2), y = Math.round(row.box_y);
          const d = c.getContext('2d').getImageData(x, y, 1, 1).data;
          const hex = '#' + [d[0], d[1], d[2]].map(v => v.toString(16).padStart(2, '0')).join('');
          return {pixel: hex.toUpperCase(), colour: familyColour(row.top1).toUpperCase(), w: c.width};
        }"""
    )
    assert edge["w"] == 512 and edge["pixel"] == edge["colour"]
    rows_shown = page.locator("#rows tr").count() - 1
    assert rows_shown == 3
    assert page.locator("#error").is_hidden()
    shoot(page, "page-two-photos")

    with page.expect_download() as download_info:
        page.click("#download-csv")
    target = tmp_path / "scores.csv"
    download_info.value.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["path"] for r in rows] == ["astronaut.png", "two people.jpg", "two people.jpg"]
    assert list(rows[0])[:2] == ["path", "face"] and f"prob.{tx.EMOTION_KEYS[0]}" in rows[0]
    assert all(r["top1"] in tx.EMOTION_KEYS for r in rows)

    # a file that is not a picture: a readable message, the page keeps working
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    page.set_input_files("#picker", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    message = page.locator("#error").inner_text()
    assert "notes.png" in message and "not a readable image" in message and "{" not in message
    shoot(page, "page-error")
    assert not outside, f"the page fetched from outside the server: {outside}"
    assert not errors, errors
    context.close()


def test_webcam_snapshot_with_a_fake_camera(browser, url):
    context = browser.new_context(permissions=["camera"], viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('#legend span').length === 7")
    page.select_option("#faces", "none")  # the fake camera shows no face: score the whole frame
    page.click("#camera-button")
    page.wait_for_function("document.getElementById('camera-video').videoWidth > 0", timeout=20_000)
    page.click("#snap")
    page.wait_for_selector(".picture h3:text('webcam-1.png')", timeout=60_000)
    assert page.locator("svg.chart rect.bar").count() == 40
    assert page.locator("#rows tr").count() == 2
    shoot(page, "page-webcam")
    page.click("#camera-close")
    context.close()
