"""Decode images into RGB PIL images, with a clear error for anything that is not one.

Any Pillow mode is accepted (RGBA/LA/P with transparency composited on white, L, 1, I;16 and
32-bit/float greys rescaled, CMYK, YCbCr, LAB); animated GIF/WebP and multi-page TIFF give their
first frame; HEIC/HEIF through ``pillow-heif`` when installed; AVIF natively (Pillow ≥ 11.2) or
through ``pillow-heif``. Images over :data:`MAX_IMAGE_PIXELS` are refused before decoding.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from emonet_face.errors import InputError

__all__ = ["MAX_IMAGE_PIXELS", "MIN_IMAGE_SIDE", "empty_file_error", "ensure_min_size", "load_image"]

MAX_IMAGE_PIXELS = 178_956_970
"""Decompression-bomb limit (Pillow's default, ~179 megapixels, e.g. 16000×11000): larger images
are refused with a clear error instead of exhausting memory."""
MIN_IMAGE_SIDE = 32
"""Images (and face crops) whose short side is below this (icons, thumbnails, faces of a few
pixels) are enlarged with bicubic resampling before scoring, so that they reach the encoder
smoothly interpolated instead of as a few blocky pixels. Larger images go to the encoder's own
processor untouched, exactly as in the released usage (so scores match the reference). Face
detection separately looks at a copy enlarged to 640 px (see ``emonet_face.faces.detectors``)."""

Image.MAX_IMAGE_PIXELS = 2 * MAX_IMAGE_PIXELS  # Pillow's own hard stop; ours is checked first
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey pixels

try:  # HEIC/HEIF (and AVIF on older Pillow) when the optional plugin is installed
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pass


def empty_file_error(source: Path | io.BytesIO, name: Path) -> InputError | None:
    """The error for a 0-byte file or byte string (an interrupted copy or download), else ``None``:
    said in those words rather than as "not a readable image"."""
    try:
        size = source.getbuffer().nbytes if isinstance(source, io.BytesIO) else source.stat().st_size
    except OSError:
        return None
    if size:
        return None
    return InputError(f"{name}: empty file (0 bytes), not an image or video; copy it again or remove it")


def load_image(
    path: str | Path | bytes, *, max_pixels: int = MAX_IMAGE_PIXELS, name: str | None = None
) -> Image.Image:
    """Open ``path`` (or encoded image ``bytes``, e.g. a shard member) fully decoded, EXIF
    orientation applied, converted to RGB.

    Raises :class:`InputError` naming the file (or ``name``) when it is missing, not an image,
    truncated, in a colour mode that cannot be converted, or over ``max_pixels``.
    """
    source = io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else Path(path)
    path = Path(name) if name is not None else source if isinstance(source, Path) else Path("<bytes>")
    try:
        with Image.open(source) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise InputError(
                    f"{path}: image too large to decode safely ({width}×{height} = {width * height:,} pixels, "
                    f"limit {max_pixels:,}); downscale it first"
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated images and multi-page files: first frame
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img, path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not an image") from None
    except UnidentifiedImageError:
        raise empty_file_error(source, path) or InputError(
            f"{path}: not a readable image; remove it or convert it to JPEG/PNG"
        ) from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image too large to decode safely ({exc}); downscale it first") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: image is corrupt or truncated ({exc}); re-export or remove it") from None


def ensure_min_size(image: Image.Image, min_side: int = MIN_IMAGE_SIDE) -> Image.Image:
    """Enlarge ``image`` (bicubic, aspect kept) so that its short side is at least ``min_side``."""
    short = min(image.size)
    if short >= min_side:
        return image
    scale = min_side / max(1, short)
    size = (max(min_side, round(image.width * scale)), max(min_side, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    """Convert any mode to RGB; transparency is composited on white, high-bit-depth greys rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        lo = min(0.0, float(finite.min())) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        scale = 255.0 / (hi - lo) if hi - lo > 255 or (img.mode == "F" and hi - lo > 0) else 1.0
        grey = np.clip(np.nan_to_num((arr - lo) * scale), 0, 255).astype("uint8")
        return Image.fromarray(grey).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "LAB":
        from PIL import ImageCms

        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        converted = ImageCms.applyTransform(img, transform)
        assert converted is not None, "applyTransform returns None only in place (inPlace=True)"
        return converted
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise InputError(f"{path}: colour mode {img.mode} cannot be converted to RGB ({exc}); save it as RGB") from None
