"""Face detection quality and speed on the real photos available offline, for every detector.

Photos (all ship inside installed packages, no network):
* one face each: ``skimage.data.astronaut()``, ``skimage.data.camera()`` (cameraman, three-quarter
  view), matplotlib's ``grace_hopper.jpg``;
* a 3-face group: those three photos side by side at their own sizes (1 face each);
* 100 face and 100 non-face 25×25 crops from ``skimage.data.lfw_subset()`` (Labeled Faces in the
  Wild), each tested alone (the detector enlarges them): a hard small-face recall test;
* 16 photos without faces from ``skimage.data`` (coffee, cat, rocket, horse, coins, …): false positives.

Run: ``PYTHONPATH=src python benchmarks/bench_faces.py`` (``--detectors dlib,lbp,haar,yunet:/path.onnx``).
Detectors that cannot be built here (e.g. ``haar`` on OpenCV 5, ``yunet`` without weights) are
reported as unavailable.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _rgb(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr).convert("RGB")


def one_face_photos() -> dict[str, Image.Image]:
    import matplotlib
    from skimage import data

    hopper = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    return {"astronaut": _rgb(data.astronaut()), "camera": _rgb(data.camera()), "grace_hopper": hopper}


def group_photo(photos: dict[str, Image.Image]) -> Image.Image:
    width = sum(p.width for p in photos.values())
    height = max(p.height for p in photos.values())
    canvas = Image.new("RGB", (width, height), (128, 128, 128))
    x = 0
    for photo in photos.values():
        canvas.paste(photo, (x, 0))
        x += photo.width
    return canvas


def no_face_photos() -> dict[str, Image.Image]:
    from skimage import data

    names = [
        "coffee", "chelsea", "rocket", "horse", "coins", "moon", "hubble_deep_field", "retina",
        "page", "text", "brick", "grass", "gravel", "immunohistochemistry", "cell", "logo",
    ]  # fmt: skip
    out = {}
    for name in names:
        arr = getattr(data, name)()
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        out[name] = _rgb(arr.astype(np.uint8))
    return out


def lfw() -> tuple[list[Image.Image], list[Image.Image]]:
    from skimage import data

    crops = (data.lfw_subset() * 255).astype(np.uint8)
    images = [_rgb(c) for c in crops]
    return images[:100], images[100:]


def run(spec: str) -> dict[str, object]:
    from emonet_face.errors import EmoNetError
    from emonet_face.faces import get_detector

    try:
        detector = get_detector(spec)
    except EmoNetError as exc:
        return {"detector": spec, "unavailable": str(exc)}
    singles = one_face_photos()
    group = group_photo(singles)
    empties = no_face_photos()
    lfw_faces, lfw_other = lfw()
    timed: list[float] = []

    def detect(image: Image.Image) -> int:
        start = time.perf_counter()
        faces = detector.detect(image)
        timed.append(time.perf_counter() - start)
        return len(faces)

    singles_found = {name: detect(img) for name, img in singles.items()}
    photo_times = list(timed)
    group_found = detect(group)
    photo_times.append(timed[-1])
    false_pos = {name: n for name, img in empties.items() if (n := detect(img))}
    photo_times.extend(timed[-len(empties) :])
    lfw_hits = sum(detect(img) >= 1 for img in lfw_faces)
    lfw_fp = sum(detect(img) >= 1 for img in lfw_other)
    return {
        "detector": spec,
        "single (1 face each)": singles_found,
        "group (3 faces)": group_found,
        "false positives in 16 no-face photos": sum(false_pos.values()),
        "fp detail": false_pos,
        "LFW 25px faces found /100": lfw_hits,
        "LFW non-faces flagged /100": lfw_fp,
        "ms per photo (median)": round(1000 * float(np.median(photo_times)), 1),
        "ms per 25px crop (median)": round(1000 * float(np.median(timed[-200:])), 1),
    }


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # yunet: local cache or a local file only
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detectors", default="dlib,haar,lbp,yunet")
    args = parser.parse_args()
    results = []
    for spec in args.detectors.split(","):
        result = run(spec)
        results.append(result)
        print(" | ".join(f"{k}: {v}" for k, v in result.items()), flush=True)
    timed = [r for r in results if "ms per photo (median)" in r]
    if len(timed) > 1:  # side by side against the first detector (the default, dlib) as baseline
        base = timed[0]
        for r in timed:
            ratio = r["ms per photo (median)"] / base["ms per photo (median)"]
            print(f"{r['detector']}: {ratio:.2f}x the time of {base['detector']} per photo")


if __name__ == "__main__":
    main()
