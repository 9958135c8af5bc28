"""The page at / in a real browser: Debian's Chromium driven by Playwright (no browser download).

Loads the page, uploads two photos, checks the face boxes, the per-face charts and the table,
downloads the CSV, shows a readable error for a file that is not a picture, and takes a webcam
snapshot from Chromium's fake camera; a five-face group photo at a phone's and a desktop's width
keeps its labels apart and inside the picture, numbered as the table's ``face`` column. Screenshots
go to ``$EMONET_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
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


@pytest.fixture(scope="module")
def five_faces(tmp_path_factory, astronaut, grace_hopper) -> Path:
    """Five heads side by side (the astronaut and Grace Hopper, in turn, some mirrored): blazeface
    finds all five; their labels cannot all fit beside them on a phone."""
    heads = [astronaut.crop((120, 0, 340, 260)), grace_hopper.crop((90, 40, 430, 440)).resize((220, 260))]
    group = Image.new("RGB", (5 * 220, 300), (230, 230, 230))
    for i in range(5):
        head = heads[i % 2] if i < 2 else heads[i % 2].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        group.paste(head, (i * 220, 20 if i % 2 else 40))
    path = tmp_path_factory.mktemp("five-faces") / "five people.jpg"
    group.save(path, quality=92)
    return path


def overlaps(a: dict, b: dict) -> bool:
    return min(a["x"] + a["w"], b["x"] + b["w"]) > max(a["x"], b["x"]) and min(a["y"] + a["h"], b["y"] + b["h"]) > max(
        a["y"], b["y"]
    )


LAYOUT = """() => {
  // label and face boxes as shown on the screen (getBoundingClientRect of the canvas, scaled)
  const c = document.querySelector('.picture canvas'), r = c.getBoundingClientRect(), k = r.width / c.width;
  const shown = (b) => ({x: r.left + b.x * k, y: r.top + b.y * k, w: b.w * k, h: b.h * k});
  const select = document.getElementById('faces'), g = document.createElement('canvas').getContext('2d');
  g.font = getComputedStyle(select).font;
  const column = [...document.querySelectorAll('#rows tr:first-child th')].findIndex((th) => th.textContent === 'face');
  return {
    picture: {x: r.left, y: r.top, w: r.width, h: r.height},
    labels: c.labels.map((l) => ({...shown(l), text: l.text, face: l.face, badge: l.badge})),
    boxes: c.boxes.map(shown),
    cards: [...document.querySelectorAll('.face h4')].map((h) => h.textContent),
    table: [...document.querySelectorAll('#rows tr')].slice(1).map((tr) => tr.children[column].textContent),
    faceNumbers: state.rows.map((row) => row.face),
    select: {text: g.measureText(select.selectedOptions[0].text).width, client: select.clientWidth,
             scroll: select.scrollWidth, right: select.getBoundingClientRect().right},
    page: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth), viewport: innerWidth,
  };
}"""


@pytest.mark.parametrize("width", [390, 1280])
def test_group_photo_labels_stay_apart_inside_the_picture_numbered_as_the_table(browser, url, five_faces, width):
    context, page, errors, _ = open_page(browser, url, viewport={"width": width, "height": 844})
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.reload()  # the favicon is asked for on load: count it
    page.wait_for_function("document.querySelectorAll('#legend span').length === 7")
    page.select_option("#faces", "detect")
    page.set_input_files("#picker", str(five_faces))
    page.wait_for_selector(".picture canvas", timeout=60_000)
    layout = page.evaluate(LAYOUT)
    shoot(page, f"five-faces-{width}", selector=".picture .stage")

    # one number per face everywhere: the table's `face` column (0-based) on the picture and the cards
    numbers = [str(n) for n in layout["faceNumbers"]]
    assert numbers == ["0", "1", "2", "3", "4"] and layout["table"] == numbers
    assert layout["cards"] == [f"Face {n}" for n in numbers]
    first_line = {}
    for label in layout["labels"]:
        first_line.setdefault(label["face"], label["text"])
    assert [first_line[i].split(" · ")[0] for i in range(5)] == numbers
    if width == 390:  # no room for names beside five faces on a phone: numbers, the names are in the cards
        assert all(label["badge"] for label in layout["labels"])
    else:
        assert not any(label["badge"] for label in layout["labels"])

    picture, labels = layout["picture"], layout["labels"]
    for i, label in enumerate(labels):
        assert picture["x"] - 0.5 <= label["x"] and label["x"] + label["w"] <= picture["x"] + picture["w"] + 0.5, label
        assert picture["y"] - 0.5 <= label["y"] and label["y"] + label["h"] <= picture["y"] + picture["h"] + 0.5, label
        assert not any(overlaps(label, other) for other in labels[i + 1 :]), (label, labels)
        assert not any(overlaps(label, box) for box in layout["boxes"]), (label, layout["boxes"])

    # the Faces selector's words are whole (a select's scrollWidth never grows: measure its text), the
    # page does not scroll sideways
    select = layout["select"]
    assert select["scroll"] <= select["client"] and select["text"] + 16 <= select["client"], select
    assert select["right"] <= layout["viewport"] and layout["page"] <= layout["viewport"], layout
    assert page.locator("#faces-hint").inner_text().startswith("one row per detected face")
    assert not failed, failed  # no 404: the favicon is served
    assert not errors, errors
    context.close()


def test_favicon_is_served(url):
    icon = httpx.get(f"{url}/favicon.ico", timeout=10)
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/vnd.microsoft.icon"
    with Image.open(io.BytesIO(icon.content)) as image:
        assert image.format == "ICO" and image.size == (32, 32)
    svg = httpx.get(f"{url}/static/favicon.svg", timeout=10)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    page = httpx.get(url, timeout=10).text
    assert 'rel="icon" href="/favicon.ico"' in page and 'href="/static/favicon.svg"' in page
