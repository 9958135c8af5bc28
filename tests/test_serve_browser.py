"""The page at / in a real browser: Debian's Chromium driven by Playwright (no browser download).

Loads the page, uploads two photos, checks the face boxes, the per-face charts and the table,
downloads the CSV, shows a readable error for a file that is not a picture, and takes a webcam
snapshot from Chromium's fake camera. Screenshots go to ``$EMONET_SCREENSHOTS`` when set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from emonet_face import taxonomy as tx
from helpers_browser import download_csv, needs_chromium, open_page, shoot

pytestmark = [pytest.mark.usefixtures("one_thread"), needs_chromium]


@pytest.fixture(scope="module")
def url(tiny_server) -> str:
    return tiny_server[0]


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut) -> list[Path]:
    folder = tmp_path_factory.mktemp("browser-photos")
    group = Image.new("RGB", (1024, 512), (235, 235, 235))
    group.paste(astronaut, (0, 0))
    group.paste(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    paths = [folder / "astronaut.png", folder / "two people.jpg"]
    astronaut.save(paths[0])
    group.save(paths[1], quality=92)
    return paths


def test_page_scores_two_photos_draws_boxes_and_charts_and_downloads_csv(browser, url, photos, tmp_path):
    context, page, errors, outside = open_page(browser, url, viewport={"width": 1280, "height": 900})
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

    rows = download_csv(page, "#download-csv", tmp_path / "scores.csv")
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
    context, page, _, _ = open_page(browser, url, viewport={"width": 1280, "height": 900})
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
