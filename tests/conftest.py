"""Shared fixtures. The EmoNet-Face release files the tests compare with ship in tests/data/emonet-face
(source and licence in its README.md and LICENSE); nothing is read from outside the repository."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from PIL import Image

from emonet_face.pipeline import EmoNetFace
from tiny_models import TINY_DIM, TINY_IMAGE_SIZE, build_tiny_heads, build_tiny_siglip  # noqa: F401 (re-exported)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the network
os.environ.setdefault("MPLBACKEND", "Agg")
# The pipeline tests compare with torch float32 references: "auto" means exactly that in the suite
# (tests/test_backends.py checks the other backends and the real "auto" explicitly). Converted
# encoders go to a throw-away cache, never the user's ~/.cache.
os.environ.setdefault("EMONET_FACE_BACKEND", "torch")
os.environ.setdefault("EMONET_FACE_DTYPE", "float32")
if "EMONET_FACE_CACHE" not in os.environ:
    import tempfile

    os.environ["EMONET_FACE_CACHE"] = tempfile.mkdtemp(prefix="emonet-face-test-cache-")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is several times faster than two on a busy 2-core machine.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


RELEASE_DATA = Path(__file__).resolve().parent / "data" / "emonet-face"


@pytest.fixture(scope="session")
def release_data(tmp_path_factory) -> Path:
    """A folder holding the release files under their original names: the ``.gz`` ones unpacked (the
    CLI reads a ``.csv``/``.jsonl`` by its suffix), the small ones copied."""
    import gzip
    import shutil

    folder = tmp_path_factory.mktemp("emonet-face-release")
    for source in sorted(RELEASE_DATA.iterdir()):
        if source.suffix == ".gz":
            with gzip.open(source, "rb") as packed, open(folder / source.stem, "wb") as plain:
                shutil.copyfileobj(packed, plain)
        elif source.suffix in (".json", ".jsonl", ".csv"):
            shutil.copyfile(source, folder / source.name)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    return build_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"))


@pytest.fixture(scope="session")
def tiny_heads_dir(tmp_path_factory) -> Path:
    return build_tiny_heads(tmp_path_factory.mktemp("tiny-heads"))


@pytest.fixture(scope="session")
def explain_toy(tmp_path_factory):
    """tests/explain_toy.py's model (a tiny SigLIP + one head trained to fire on a red square), trained
    once per session (seconds, one thread: fastest for a tiny model on a busy machine)."""
    import torch

    from explain_toy import build_toy

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_toy(tmp_path_factory.mktemp("explain-toy"))
    finally:
        torch.set_num_threads(previous)


# --- photos and the tiny model, shared by the predict / Python API / serve tests ------------------
@pytest.fixture(scope="session")
def model_args(tiny_encoder_dir, tiny_heads_dir) -> list[str]:
    """The tiny model as CLI options (tests that score whole images add ``--faces none``)."""
    return ["--encoder", str(tiny_encoder_dir), "--heads", str(tiny_heads_dir), "--device", "cpu"]


@pytest.fixture(scope="session")
def whole_image_args(model_args) -> list[str]:
    """The tiny model as CLI options that score each picture whole (shards and made-up images hold no face)."""
    return [*model_args, "--faces", "none"]


@pytest.fixture(scope="session")
def net(tiny_encoder_dir, tiny_heads_dir) -> EmoNetFace:
    """The tiny model, loaded once (PyTorch on the CPU unless ``EMONET_FACE_BACKEND`` says otherwise)."""
    return EmoNetFace.from_pretrained(encoder=str(tiny_encoder_dir), heads=str(tiny_heads_dir), device="cpu")


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def grace_hopper() -> Image.Image:
    import matplotlib.cbook

    return Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")


@pytest.fixture(scope="session")
def photos(tmp_path_factory, astronaut) -> dict[str, Path]:
    """A face, a two-face group, a wide landscape and a small square, neither with a face."""
    folder = tmp_path_factory.mktemp("photos")
    group = Image.new("RGB", (1024, 512))
    group.paste(astronaut, (0, 0))
    group.paste(astronaut, (512, 0))
    paths = {
        "astronaut": folder / "a_astronaut.png",
        "group": folder / "b_group.jpg",
        "landscape": folder / "c_landscape.png",
        "portrait": folder / "d_portrait.png",
    }
    astronaut.save(paths["astronaut"])
    group.save(paths["group"], quality=95)
    Image.new("RGB", (1600, 600), (90, 140, 200)).save(paths["landscape"])  # wide, no face
    Image.new("RGB", (200, 200), (180, 150, 130)).save(paths["portrait"])  # small square, no face
    return paths


def face_video(
    path: Path, astronaut: Image.Image, *, seconds: float = 3, rate: int = 10, x: Callable[[int, int], int] | None = None
) -> Path:
    """The astronaut's head moving right across a grey 480×240 background: at ``x(i, n)`` px in frame
    ``i`` of ``n`` (by default 4 px per frame)."""
    head = astronaut.crop((130, 20, 330, 220))
    n = int(seconds * rate)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 480, 240, "yuv420p"
        for i in range(n):
            canvas = Image.new("RGB", (480, 240), (128, 128, 128))
            canvas.paste(head, (12 * i // 3 if x is None else x(i, n), 20))
            for packet in stream.encode(av.VideoFrame.from_image(canvas)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --- a Hub on 127.0.0.1 ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hub(tmp_path_factory, tiny_encoder_dir):
    """tests/hub_server.py's Hub look-alike for one test module, holding the released repositories
    (the tiny encoder under the real names): a ``hub_server.Published``."""
    from hub_server import HubServer, publish_released

    with HubServer() as server:
        yield publish_released(server, tiny_encoder_dir, tmp_path_factory.mktemp("hub-sources"))


# --- the server and the page in a browser ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_server(tiny_encoder_dir, tiny_heads_dir):
    """The app on the tiny model (loaded as ``emonet-face serve`` loads it, two workers), served on
    127.0.0.1 on a free port for one test module: ``(base URL, app)``. A module that needs other
    settings serves them with ``serve_helpers.serving(make_config(...))``."""
    from serve_helpers import make_config, serving

    with serving(make_config(tiny_encoder_dir, tiny_heads_dir)) as started:
        yield started


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, with a fake camera (Chromium's test pattern), for one test module;
    the test skips, saying why, without Chromium or Playwright (tests/helpers_browser.py)."""
    from helpers_browser import FAKE_CAMERA, chromium

    with chromium(*FAKE_CAMERA) as launched:
        yield launched


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """One small local Ray for a module: 2 CPUs, a 256 MB object store, its own short temp folder (Ray's
    socket paths must fit 107 bytes). Skips where Ray is missing (it is in the test extra; CI has it)."""
    ray = pytest.importorskip("ray", reason="Ray is in the test extra; CI installs it")
    ray.init(
        num_cpus=2,
        object_store_memory=256 * 1024**2,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        include_dashboard=False,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
