"""Video frames decoded as a stream at the requested rate, and robust image decoding."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from emonet_face.errors import InputError
from emonet_face.inputs.images import MIN_IMAGE_SIDE, ensure_min_size, load_image
from emonet_face.inputs.video import iter_video_frames


def make_video(path: Path, *, seconds: float = 3.0, rate: int = 10, size=(96, 64), codec: str | None = None) -> Path:
    """A video whose frame i is a flat grey of level 8·i (so each decoded frame tells its index)."""
    codecs = {".mp4": "h264", ".mov": "h264", ".webm": "libvpx", ".avi": "mpeg4", ".mkv": "h264"}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec or codecs[path.suffix], rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * rate)):
            arr = np.full((size[1], size[0], 3), 8 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".webm", ".avi"])
def test_frames_sampled_at_requested_rate(tmp_path, suffix):
    video = make_video(tmp_path / f"clip{suffix}")
    frames = list(iter_video_frames(video, fps=2))
    assert [f.time for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], abs=0.02)
    assert [f.frame for f in frames] == [0, 5, 10, 15, 20, 25]
    levels = [np.asarray(f.image).mean() for f in frames]
    assert levels == pytest.approx([8 * f.frame for f in frames], abs=6)  # the right pixels, not just times


def test_max_frames_and_every_frame(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=1)
    assert [f.frame for f in iter_video_frames(video, fps=None)] == list(range(10))
    assert len(list(iter_video_frames(video, fps=4, max_frames=2))) == 2


def test_fps_above_the_video_rate_gives_each_frame_once(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=1, rate=5)
    assert [f.frame for f in iter_video_frames(video, fps=30)] == [0, 1, 2, 3, 4]


def test_bad_videos_give_clear_errors(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match=r"broken\.mp4: not a readable video"):
        list(iter_video_frames(bad))
    with pytest.raises(InputError, match="--fps"):
        list(iter_video_frames(bad, fps=0))


ODD_MODES = ["RGBA", "LA", "P", "L", "1", "I;16", "I", "F", "CMYK", "YCbCr", "LAB"]


def odd_image(mode: str) -> Image.Image:
    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, (40, 50), dtype=np.uint16))
    return base.convert(mode)


@pytest.mark.parametrize("mode", ODD_MODES)
def test_every_mode_decodes_to_rgb_or_errors_clearly(tmp_path, mode):
    image = odd_image(mode)
    suffix = ".tif" if mode in ("I", "F", "CMYK", "LAB", "YCbCr") else ".png"
    path = tmp_path / f"odd{suffix}"
    image.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (50, 40)
    assert np.asarray(out).std() > 0  # real content, not a blank conversion


def test_sixteen_bit_grey_is_rescaled_not_clipped(tmp_path):
    arr = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(arr).save(tmp_path / "deep.png")
    out = np.asarray(load_image(tmp_path / "deep.png"))[..., 0]
    assert out[0, 0] == 0 and out[0, -1] == 255 and 100 < out[0, 32] < 160


def test_transparency_composited_on_white(tmp_path):
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert np.asarray(load_image(tmp_path / "clear.png")).min() == 255


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = np.asarray(load_image(tmp_path / "anim.gif"))
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


@pytest.mark.parametrize("suffix", [".heic", ".avif"])
def test_heic_and_avif(tmp_path, suffix):
    Image.new("RGB", (64, 48), (30, 160, 90)).save(tmp_path / f"x{suffix}")
    out = load_image(tmp_path / f"x{suffix}")
    assert out.size == (64, 48)
    assert np.abs(np.asarray(out, dtype=int).mean(axis=(0, 1)) - (30, 160, 90)).max() < 12


def test_exif_orientation_applied(tmp_path):
    image = Image.new("RGB", (60, 30), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (30, 60)


def test_decompression_bomb_limit(tmp_path):
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    with pytest.raises(InputError, match=r"big.png: image too large to decode safely .*limit 10,000"):
        load_image(tmp_path / "big.png", max_pixels=10_000)


def test_not_an_image(tmp_path):
    (tmp_path / "fake.jpg").write_text("hello")
    with pytest.raises(InputError, match=r"fake\.jpg: not a readable image"):
        load_image(tmp_path / "fake.jpg")


def test_an_empty_file_is_called_empty(tmp_path):
    """A 0-byte file (an interrupted copy) says so, instead of the generic "not a readable image"."""
    (tmp_path / "half-copied.jpg").write_bytes(b"")
    with pytest.raises(InputError, match=r"half-copied\.jpg: empty file \(0 bytes\)"):
        load_image(tmp_path / "half-copied.jpg")
    with pytest.raises(InputError, match=r"member\.png: empty file \(0 bytes\)"):
        load_image(b"", name="member.png")
    (tmp_path / "clip.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"clip\.mp4: empty file \(0 bytes\)"):
        list(iter_video_frames(tmp_path / "clip.mp4"))


def test_tiny_images_upscaled():
    tiny = Image.new("RGB", (8, 16), (1, 2, 3))
    out = ensure_min_size(tiny)
    assert out.size == (MIN_IMAGE_SIDE, 2 * MIN_IMAGE_SIDE)
    big = Image.new("RGB", (100, 100))
    assert ensure_min_size(big) is big
