"""Make the pictures of the documentation (docs/images/*.png) from the tiny test models.

    PYTHONPATH=src python docs/make_pictures.py            # all pictures
    PYTHONPATH=src python docs/make_pictures.py --only page

The encoder and heads are the tests' tiny random ones (tests/conftest.py: a 2-layer SigLIP and 44
random heads), so the pictures show the real layout and the real output format, but the emotions
they name are random. The photos come with the installed packages (skimage.data.astronaut(),
matplotlib's grace_hopper.jpg); the benchmark figure is `bench binary` on the real EmoNet-Face
BINARY votes shipped in tests/data/emonet-face. The page screenshot drives Debian's Chromium
through Playwright. The explanation pictures use tests/explain_toy.py's model instead (trained here in
seconds to fire on a red square), on the astronaut with a red square on her cheek: a model whose
answer is known. Everything runs offline; pictures are shrunk to a palette PNG to stay small.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
PICTURES = ("photo", "bars", "timeline", "benchmark", "page", "explain")
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builders and the test server helper


def shrink(source: Path, target: Path, *, width: int, colours: int = 128) -> None:
    """``source`` at most ``width`` px wide, as a palette PNG (a fraction of a full-colour PNG)."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
        image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            target, optimize=True
        )
    print(f"{target.name}: {target.stat().st_size / 1024:.0f} KB")


def emonet_face(*args: object) -> None:
    """Run the CLI as a user would (a subprocess), offline, on the torch backend."""
    command = [sys.executable, "-m", "emonet_face.cli.main", *map(str, args)]
    subprocess.run(command, check=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})


def group_photo(path: Path) -> Path:
    """Three faces on one canvas: the astronaut, Grace Hopper, the astronaut mirrored."""
    import matplotlib.cbook
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as hopper:
        hopper = hopper.convert("RGB").resize((410, 512))
    canvas = Image.new("RGB", (512 + 410 + 512, 512), (236, 236, 236))
    canvas.paste(astronaut, (0, 0))
    canvas.paste(hopper, (512, 0))
    canvas.paste(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (922, 0))
    canvas.save(path, quality=92)
    return path


def face_video(path: Path) -> Path:
    """Four seconds of the astronaut's head moving right across a grey frame (as the tests make it)."""
    from skimage import data

    head = Image.fromarray(data.astronaut()).crop((130, 20, 330, 220))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 480, 240, "yuv420p"
        for i in range(40):
            canvas = Image.new("RGB", (480, 240), (128, 128, 128))
            canvas.paste(head, (6 * i, 20))
            for packet in stream.encode(av.VideoFrame.from_image(canvas)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def page_screenshot(work: Path, encoder: Path, heads: Path, photo: Path, target: Path) -> None:
    """The served page after dropping the group photo on it."""
    from playwright.sync_api import sync_playwright

    from emonet_face.serve import ServeConfig, create_app
    from serve_helpers import running_server

    config = ServeConfig(encoder=str(encoder), heads=str(heads), device="cpu", workers=1)
    with running_server(create_app(config)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#legend span').length === 7")
        page.set_input_files("#picker", str(photo))
        page.wait_for_selector(".picture canvas", timeout=120_000)
        page.wait_for_function("document.querySelectorAll('svg.chart rect.bar').length >= 40")
        page.screenshot(path=str(work / "page.png"))
        browser.close()
    shrink(work / "page.png", target, width=1100)


def explain_pictures(work: Path, out: Path) -> None:
    """`emonet-face explain` on the astronaut with a red square on her cheek, by the toy model trained
    to fire on red squares: the map should light the square, not the expression."""
    import numpy as np
    from skimage import data

    from emonet_face.faces import DEFAULT_MARGIN, get_detector
    from explain_toy import IMAGE, SQUARE, TOY_KEY, build_toy

    toy = build_toy(work / "toy")
    photo = Image.fromarray(data.astronaut())
    face = get_detector("blazeface").detect(photo)[0]
    side = round(max(face.box_w, face.box_h) * (1 + 2 * DEFAULT_MARGIN))
    cue = round(side * SQUARE / IMAGE)  # the square is as large in the crop as in the toy's pictures
    array = np.asarray(photo).copy()
    top, left = round(face.box_y + 0.55 * face.box_h), round(face.box_x + 0.15 * face.box_w)
    array[top : top + cue, left : left + cue] = (255, 0, 0)
    path = Path("astronaut-square.png")  # relative (the working folder): picture titles show the input as given
    Image.fromarray(array).save(work / path)
    model = ["--encoder", toy.encoder_dir, "--heads", toy.heads_dir, "--quiet"]
    emonet_face("explain", path, "--faces", "detect", "--top", "1", "--out", work / "explained", *model)
    pictures = work / "explained" / "pictures"
    shrink(pictures / f"astronaut-square.face0.{TOY_KEY}.png", out / "explain-face.png", width=800)
    shrink(pictures / "astronaut-square.png", out / "explain-photo.png", width=560)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=PICTURES, action="append", help="make only these (repeatable)")
    parser.add_argument("--out", type=Path, default=IMAGES, help="folder for the PNG files")
    args = parser.parse_args()
    wanted = set(args.only or PICTURES)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EMONET_FACE_BACKEND", "torch")  # tiny models: nothing to convert
    os.environ.setdefault("MPLBACKEND", "Agg")

    from conftest import build_tiny_heads, build_tiny_siglip

    with tempfile.TemporaryDirectory(prefix="emonet-face-pictures-") as tmp:
        work = Path(tmp)
        args.out = args.out.resolve()
        os.chdir(work)  # relative model folders: the page shows "tiny-test-heads", not a temporary path
        os.environ["EMONET_FACE_CACHE"] = str(work / "cache")
        encoder, heads = Path("tiny-test-encoder"), Path("tiny-test-heads")
        encoder.mkdir()
        heads.mkdir()
        build_tiny_siglip(encoder)
        build_tiny_heads(heads)
        model = ["--encoder", encoder, "--heads", heads, "--quiet"]
        photo = group_photo(work / "group.jpg")
        if wanted & {"photo", "bars"}:
            emonet_face("predict", photo, "--out", work / "group.csv", "--save-vis", work / "vis", *model)
            if "photo" in wanted:
                shrink(work / "vis" / "group.png", args.out / "scored-group-photo.png", width=1000)
            if "bars" in wanted:
                shrink(work / "vis" / "group.face1.bars.png", args.out / "face-bars.png", width=800, colours=64)
        if "timeline" in wanted:
            video = face_video(work / "clip.mp4")
            emonet_face("predict", video, "--fps", 4, "--out", work / "clip.csv", "--save-vis", work / "vis", *model)
            shrink(work / "vis" / "clip.track0.timeline.png", args.out / "video-timeline.png", width=900, colours=64)
        if "benchmark" in wanted:
            votes = work / "emonet-face_binary.csv"
            with gzip.open(ROOT / "tests" / "data" / "emonet-face" / "emonet-face_binary.csv.gz", "rb") as packed:
                votes.write_bytes(packed.read())
            emonet_face("bench", "binary", votes, "--out", work / "binary")
            shrink(work / "binary" / "binary_agreement.png", args.out / "benchmark-binary.png", width=900, colours=64)
        if "page" in wanted:
            if shutil.which("chromium") is None:
                sys.exit("the page screenshot needs Debian's chromium (apt-get install chromium)")
            page_screenshot(work, encoder, heads, photo, args.out / "served-page.png")
        if "explain" in wanted:
            explain_pictures(work, args.out)


if __name__ == "__main__":
    main()
