"""The page's Live mode and its small-screen layout in a real browser: Debian's Chromium (Playwright,
no browser download) with a fake camera that plays a clip made from a real portrait (a Y4M file
written here from numpy frames, no ffmpeg needed).

Checks: the Live button streams the camera to /v1/stream, boxes are drawn over the video, the
per-track timeline grows, the recorded rows download as CSV, Stop closes the stream; labels over
small faces are never cut; at a 390-px phone width nothing scrolls sideways. Screenshots go to
``$EMONET_SCREENSHOTS`` when set (look at them).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers_browser import FAKE_CAMERA, chromium, download_csv, needs_chromium, open_page, shoot

pytestmark = [pytest.mark.usefixtures("one_thread"), needs_chromium]
PHONE = {"width": 390, "height": 844}


def write_y4m(path: Path, frames: list[Image.Image], fps: int) -> Path:
    """A raw YUV4MPEG2 clip (4:2:0, full-range JPEG YCbCr), the format Chromium's fake camera plays."""
    width, height = frames[0].size
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            y, cb, cr = frame.convert("YCbCr").split()
            half = (width // 2, height // 2)
            out.write(b"FRAME\n" + np.asarray(y).tobytes())
            out.write(np.asarray(cb.resize(half, Image.Resampling.BOX)).tobytes())
            out.write(np.asarray(cr.resize(half, Image.Resampling.BOX)).tobytes())
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut) -> Path:
    """The astronaut's head moving slowly to and fro across a grey 640×360 frame, 3 s at 10 fps
    (Chromium loops it)."""
    head = astronaut.crop((130, 20, 330, 220))
    frames = []
    for i in range(30):
        canvas = Image.new("RGB", (640, 360), (128, 128, 128))
        canvas.paste(head, (120 + 8 * (i if i < 15 else 30 - i), 70))
        frames.append(canvas)
    return write_y4m(tmp_path_factory.mktemp("camera") / "portrait.y4m", frames, 10)


@pytest.fixture(scope="module")
def browser(clip):
    """Chromium whose fake camera plays ``clip``."""
    with chromium(*FAKE_CAMERA, f"--use-file-for-fake-video-capture={clip}") as launched:
        yield launched


def group_photo(astronaut: Image.Image, path: Path) -> Path:
    """Five small faces side by side (boxes of ~40 px): labels cut to the box width were unreadable."""
    small = astronaut.resize((140, 140))
    group = Image.new("RGB", (720, 170), (235, 235, 235))
    for i in range(5):
        group.paste(small if i % 2 else small.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (i * 145, 15))
    group.save(path, quality=92)
    return path


# --- live --------------------------------------------------------------------------------------------
def test_live_draws_boxes_over_the_video_and_the_timeline_grows(browser, tiny_server, tmp_path):
    url, app = tiny_server
    context, page, errors, outside = open_page(
        browser, url, allowed=("blob:", "data:"), viewport={"width": 1280, "height": 900}
    )
    page.click("#live-button")
    page.wait_for_function("state.live.answered >= 3 && state.live.tracks.size >= 1", timeout=60_000)
    # boxes over the video: the middle of the drawn box's top edge has the top emotion's family colour
    page.wait_for_function("(document.getElementById('live-overlay').labels || []).length >= 1")
    edge = page.evaluate(
        """() => {
          const c = document.getElementById('live-overlay');
          const box = c.boxes.find(Boolean), label = c.labels[0];
          const d = c.getContext('2d').getImageData(Math.round(box.x + box.w / 2), Math.round(box.y), 1, 1).data;
          const hex = '#' + [d[0], d[1], d[2]].map(v => v.toString(16).padStart(2, '0')).join('');
          return {pixel: hex.toUpperCase(), alpha: d[3], colour: familyColour(box.key).toUpperCase(), box,
                  w: c.width, h: c.height, label: label.text, video: document.getElementById('live-video').videoWidth};
        }"""
    )
    assert edge["w"] == edge["video"] == 640 and edge["h"] == 360
    assert edge["pixel"] == edge["colour"] and edge["alpha"] == 255, edge  # the box is drawn over the video
    assert 100 < edge["box"]["x"] < 400 and 30 < edge["box"]["y"] < 160  # where the head is in the clip
    assert edge["label"].startswith("track 0 · ") and "…" not in edge["label"]  # the track column, an uncut top emotion
    assert page.locator("#live-status").inner_text().startswith("live · ")

    first = page.evaluate("state.live.tracks.get(0).points.length")
    page.wait_for_function(f"state.live.tracks.get(0).points.length >= {first + 3}", timeout=60_000)
    page.wait_for_timeout(400)  # the timeline is redrawn at most every 250 ms
    card = page.locator("#timelines .track[data-track='0']")
    assert card.locator("polyline.emotion").count() == 3 and card.locator("polyline.dimension").count() == 4
    drawn = card.locator("polyline.emotion").first.get_attribute("points").split()
    assert len(drawn) >= first + 3  # the timeline grew with the answers
    assert page.locator("#timelines .track").count() == 1  # one person, one track
    shoot(page, "live-desktop")

    rows = download_csv(page, "#live-csv", tmp_path / "live.csv")
    assert len(rows) >= 3 and {"frame", "time", "track", "top1"} <= set(rows[0])
    frames = [int(r["frame"]) for r in rows]
    faces = [r for r in rows if r["face"] != ""]  # a frame where the detector saw no face has an empty row
    assert frames == sorted(frames) and len(faces) >= 3 and {r["track"] for r in faces} == {"0"}

    page.click("#live-stop")
    assert page.evaluate("state.live.ws === null && document.getElementById('live-video').srcObject === null")
    deadline = time.monotonic() + 10
    while app.state.service.streams and time.monotonic() < deadline:  # the server saw the stream close
        time.sleep(0.05)
    assert app.state.service.streams == 0
    assert page.locator("#error").is_hidden()
    assert not outside, f"the page fetched from outside the server: {outside}"
    assert not errors, errors
    context.close()


# --- labels and phones -----------------------------------------------------------------------------------
def test_labels_over_small_faces_are_never_cut(browser, tiny_server, astronaut, tmp_path):
    url, _ = tiny_server
    context, page, errors, _ = open_page(browser, url, viewport={"width": 1280, "height": 900})
    page.select_option("#faces", "detect")
    page.set_input_files("#picker", str(group_photo(astronaut, tmp_path / "five people.jpg")))
    page.wait_for_selector(".picture canvas", timeout=60_000)
    labels = page.evaluate(
        """() => {
          const c = document.querySelector('.picture canvas');
          const names = Object.fromEntries(state.info.emotions.map((e) => [e.key, e.name]));
          return {w: c.width, h: c.height, labels: c.labels.map((l) => ({...l, name: names[l.key]}))};
        }"""
    )
    faces = {label["face"] for label in labels["labels"]}
    assert len(faces) == 5 == page.locator(".face").count()
    for label in labels["labels"]:
        assert "…" not in label["text"] and label["name"] in label["text"] and label["fits"], label
        assert label["x"] >= 0 and label["x"] + label["w"] <= labels["w"] + 0.5
        assert label["y"] >= 0 and label["y"] + label["h"] <= labels["h"] + 0.5
    blocks = {}
    for label in labels["labels"]:  # one block per face: its lines stacked
        x, y, w, h = label["x"], label["y"], label["w"], label["h"]
        bx = blocks.setdefault(label["face"], [x, y, x + w, y + h])
        bx[:] = [min(bx[0], x), min(bx[1], y), max(bx[2], x + w), max(bx[3], y + h)]
    items = list(blocks.values())
    for i, a in enumerate(items):  # no label hides another
        for b in items[i + 1 :]:
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]), (a, b)
    shoot(page, "labels-five-small-faces")
    assert not errors, errors
    context.close()


def test_the_page_fits_a_phone(browser, tiny_server, astronaut, tmp_path):
    url, _ = tiny_server
    context, page, errors, _ = open_page(browser, url, viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                         has_touch=True)  # fmt: skip
    width = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    assert page.evaluate(width) <= PHONE["width"]
    photo = tmp_path / "astronaut.png"
    astronaut.save(photo)
    page.set_input_files("#picker", [str(photo), str(group_photo(astronaut, tmp_path / "group.jpg"))])
    page.wait_for_selector(".picture canvas >> nth=1", timeout=60_000)
    page.click("#live-button")
    page.wait_for_function("state.live.tracks.size >= 1 && state.live.answered >= 3", timeout=60_000)
    page.wait_for_timeout(400)
    assert page.evaluate(width) <= PHONE["width"], "the page scrolls sideways on a phone"
    overlay = page.evaluate(
        """() => { const c = document.getElementById('live-overlay');
                   return {labels: c.labels, w: c.width, shown: c.clientWidth}; }"""
    )
    assert overlay["shown"] < overlay["w"]  # the video is shown smaller than its pixels…
    for label in overlay["labels"]:  # …yet its labels are whole and readable there
        assert label["fits"] and "…" not in label["text"], label
        assert label["font"] * overlay["shown"] / overlay["w"] >= 10, label
    shoot(page, "phone-390")
    page.click("#live-stop")
    assert not errors, errors
    context.close()
