"""Decode images into RGB PIL images, with a clear error for anything that is not one."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from emonet_face.errors import InputError

Image.MAX_IMAGE_PIXELS = 178_956_970  # Pillow's default bomb limit, set explicitly: we rely on it.
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey pixels

try:  # HEIC/AVIF when the optional plugin is installed
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pass


def load_image(path: str | Path) -> Image.Image:
    """Open ``path`` fully decoded, EXIF orientation applied, converted to RGB.

    Raises :class:`InputError` naming the file when it is missing, not an image, truncated,
    or over the decompression-bomb limit.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.seek(0)  # animated images: first frame
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not a readable image; remove it or convert it to JPEG/PNG") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image too large to decode safely ({exc}); downscale it first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: image is corrupt or truncated ({exc}); re-export or remove it") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to RGB; transparency is composited on white, 16-bit greys rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        scale = 255.0 / hi if hi > 255 else 1.0
        return Image.fromarray(np.clip(arr * scale, 0, 255).astype("uint8"), mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
