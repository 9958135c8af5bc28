"""`/v1/explain` and the page's maps, on the toy model trained to fire on a red square
(tests/explain_toy.py): the map found the square through the API, and in a real browser a click on
the emotion's bar draws it over the face, red where the square is."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from explain_toy import GRID, PATCH, TOY_KEY, cue_pictures, to_pil
from helpers_browser import needs_chromium, open_page, shoot
from serve_helpers import make_config, serving

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def url(explain_toy):
    with serving(make_config(explain_toy.encoder_dir, explain_toy.heads_dir, workers=1)) as (base, _):
        yield base


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cue() -> tuple[Image.Image, tuple[int, int]]:
    image, cell = cue_pictures(31, 1)[0]
    return to_pil(image), cell


def test_explain_endpoint_finds_the_square(url, cue):
    image, cell = cue
    files = {"file": ("cue.png", png(image), "image/png")}
    response = httpx.post(f"{url}/v1/explain", params={"faces": "none", "emotions": TOY_KEY}, files=files, timeout=60)
    assert response.status_code == 200, response.text
    (row,) = response.json()["rows"]
    assert row["path"] == "cue.png" and row["emotion"] == TOY_KEY and row["face"] is None
    assert (row["grid_rows"], row["grid_cols"]) == (GRID, GRID) and row["method"] == "integrated-gradients"
    saliency = np.asarray(row["saliency"]).reshape(GRID, GRID)
    assert np.unravel_index(np.argmax(saliency), saliency.shape) == cell and row["score"] > 1
    assert row["crop"] == {"cx": 32.0, "cy": 32.0, "width": 64.0, "height": 64.0, "angle": 0.0}
    top = httpx.post(f"{url}/v1/explain", params={"faces": "none", "top": 2}, files=files, timeout=60).json()["rows"]
    assert top[0]["emotion"] == TOY_KEY and len(top) == 2


def test_explain_endpoint_one_face_of_a_photo_and_clear_errors(url, cue):
    image, _ = cue
    photo = Image.new("RGB", (400, 300), (200, 200, 200))
    photo.paste(image.resize((128, 128)), (40, 60))
    files = {"file": ("photo.png", png(photo), "image/png")}
    # no face detector finds a face in a texture: "auto" scores the close-up whole only; this is a wide
    # picture, so asking for face 0 is answered with what to do
    response = httpx.post(f"{url}/v1/explain", params={"faces": "detect", "face": 0}, files=files, timeout=60)
    assert response.status_code == 400 and "face=0" in response.json()["error"]
    response = httpx.post(f"{url}/v1/explain", params={"emotions": "nonsense", "faces": "none"}, files=files, timeout=60)
    assert response.status_code == 400 and "nonsense" in response.json()["error"]
    response = httpx.post(f"{url}/v1/explain", params={"method": "taste"}, files=files, timeout=60)
    assert response.status_code == 422 and "method=taste" in response.json()["error"]
    two = [("file", ("a.png", png(image), "image/png")), ("file", ("b.png", png(image), "image/png"))]
    response = httpx.post(f"{url}/v1/explain", files=two, timeout=60)
    assert response.status_code == 400 and "one still picture" in response.json()["error"]
    broken = {"file": ("broken.png", b"not a picture", "image/png")}
    response = httpx.post(f"{url}/v1/explain", params={"faces": "none"}, files=broken, timeout=60)
    assert response.status_code == 400 and "broken.png" in response.json()["error"]
    assert "/tmp" not in response.json()["error"]


@needs_chromium
def test_page_click_on_an_emotion_draws_its_map_over_the_face(browser, url, cue, tmp_path):
    image, (row, col) = cue
    path = tmp_path / "cue.png"
    image.resize((256, 256), Image.Resampling.NEAREST).save(path)  # the square stays in its patch
    context, page, errors, _ = open_page(browser, url, viewport={"width": 1280, "height": 900})
    page.select_option("#faces", "none")
    page.set_input_files("#picker", str(path))
    page.wait_for_selector("svg.chart rect.bar")
    assert "Click an emotion" in page.locator(".face .explain").inner_text()
    page.click(f"svg.chart rect.bar[data-key='{TOY_KEY}']")
    page.wait_for_selector(".face .explain canvas.explain-map", timeout=60_000)
    assert page.locator(".face .explain").get_attribute("data-emotion") == TOY_KEY
    caption = page.locator(".face .explain p.explain-caption").inner_text()
    shown = page.evaluate(f"percent(state.rows[0]['prob.{TOY_KEY}'])")  # what the bar says
    assert "centred score +" in caption and f"probability {shown}" in caption and "integrated-gradients" in caption
    assert page.locator(".explain-scale i").count() == 1  # the colour scale is shown
    # the square's cell is drawn red over the face; a cell far from it is not
    cells = page.evaluate(
        """([row, col, grid]) => {
          const c = document.querySelector('canvas.explain-map'), g = c.getContext('2d');
          const at = (r, k) => Array.from(g.getImageData((k + 0.5) * c.width / grid, (r + 0.5) * c.height / grid, 1, 1).data);
          return {square: at(row, col), far: at((row + 2) % grid, (col + 2) % grid)};
        }""",
        [row, col, GRID],
    )
    red, green, blue, _ = cells["square"]
    assert red > 100 and red > green + 60 and red > blue + 60, cells
    assert not (cells["far"][0] > cells["far"][1] + 60 and cells["far"][0] > cells["far"][2] + 60), cells
    # …and over the face in the photo, on a see-through layer as large as the picture, which the
    # card's "on the photo" box hides and shows again
    layer = page.evaluate(
        """([row, col, grid]) => {
          const c = document.querySelector('.picture .stage canvas.explain-layer'), g = c.getContext('2d');
          const picture = document.querySelector('.picture .stage canvas'), r = picture.getBoundingClientRect();
          const at = (r, k) => Array.from(g.getImageData((k + 0.5) * c.width / grid, (r + 0.5) * c.height / grid, 1, 1).data);
          const l = c.getBoundingClientRect();
          return {square: at(row, col), size: [c.width, c.height, picture.width, picture.height],
                  same: [l.left - r.left, l.top - r.top, l.width - r.width, l.height - r.height]};
        }""",
        [row, col, GRID],
    )
    red, green, blue, alpha = layer["square"]
    assert red > green + 60 and red > blue + 60 and 0 < alpha < 255, layer  # red, and the face shows through
    assert layer["size"][:2] == layer["size"][2:] and all(abs(d) < 1 for d in layer["same"]), layer
    page.uncheck(".face .explain input.on-photo")
    assert page.locator("canvas.explain-layer").is_hidden()
    page.check(".face .explain input.on-photo")
    assert page.locator("canvas.explain-layer").is_visible()
    # the label of the emotion is clickable too, and dimension markers are charted as before
    assert page.locator("svg.chart circle.dimension").count() == 4
    assert not errors, errors
    shoot(page, "page-explain", selector=".face")
    context.close()
    assert PATCH * GRID == 64
