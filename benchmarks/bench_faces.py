"""Labelled face-detection benchmark: recall by face size and by condition, duplicate boxes, false
faces on face-free pictures, and median time per photo, for every detector in one run.

**Synthetic set** (built offline from pictures that installed packages ship, no network):

* Faces: the heads of ``skimage.data.astronaut()`` and matplotlib's ``grace_hopper.jpg`` (sharp
  portraits), and the 100 face crops of ``skimage.data.lfw_subset()`` (Labeled Faces in the Wild,
  25×25 grey: used only up to 60 px, where their blur is realistic). The cameraman of
  ``skimage.data.camera()`` is the one three-quarter/profile-like face (pasted whole).
* Labelled photos: each of ``--photos`` canvases is a face-free picture (below) scaled to an
  ordinary photo size (640×480 … 1600×1200), with 2–5 faces pasted at 20–400 px (log-uniform),
  each under one condition: plain, rotated ±15–45°, grayscale, partly covered (a dark band over
  the eyes like sunglasses, or a hand-coloured block over the mouth/forehead), small (LFW).
  A detection finds a face when its centre lies inside the face's box and its size is within
  0.4–2.5× (detectors draw boxes differently); unmatched detections are counted as extra boxes.
* Face-free: 22 ``skimage.data`` pictures (photos, micrographs, text, logos, a cat), 4 matplotlib
  sample pictures, 6 drawings rendered with matplotlib (charts, text, a map), 4 mosaics of the
  100 LFW non-face crops: 36 in all.

**Real photographs** (``--real DIR``): any folder of photos with face boxes in dlib's imglab XML
(``<image file=...><box top= left= width= height= [ignore='1']><label>profile</label></box>``;
every ``*.xml`` under DIR, paths relative to the XML; see ``real_faces.py``). Reported: recall by
face size, for faces of 48 px and more, by kind (``<label>`` profile / edge, and close-ups: faces
spanning ≥ 30 % of the photo's long side) and by XML file; duplicate boxes (a second box on a face
that has one); extra boxes on labelled photos; false faces on face-free photos (images with no
box); median ms per photo. Then a close-up sweep (every one-face photo cropped so that the face
fills 30, 35, … 100 % of a 512-px frame: faces missed, faces with more than one box) and a video
(``--video``; by default the Hamilton clip below, frames 85–210, where one performer is alone on
screen: tracks that ``predict``'s tracker makes from the boxes, frames with no box or more than one).

How to get the real photos (their rights belong to their authors: they are NOT in this repository,
only our labels, ``benchmarks/faces_real/extra.xml``)::

    git clone --depth 1 https://github.com/davisking/dlib            clones/dlib
    git clone --depth 1 https://github.com/ageitgey/face_recognition clones/face_recognition
    git clone --depth 1 https://github.com/ultralytics/yolov5        clones/yolov5
    git clone --depth 1 https://github.com/serengil/deepface         clones/deepface
    PYTHONPATH=src python benchmarks/bench_faces.py --gather faces-real clones/*

``--gather`` copies dlib's ``examples/faces/`` (9 PASCAL VOC photos with 43 hand-labelled faces of
37–109 px in dlib's own ``testing.xml`` / ``training.xml``, a celebrity collage, a close-up, dogs)
and four face-free photos of ``dlib/test/ffmpeg_data``; 18 photos of face_recognition's examples
and tests (portraits, couples, faces cut by the border) and six frames of its
``short_hamilton_clip.mp4`` (a man in profile close to the camera, the performer, the audience
turned aside); yolov5's ``bus.jpg`` and ``zidane.jpg``; 17 photos of deepface's tests (close-ups,
three-quarter faces, a selfie of seven); and writes ``package/``: scikit-image's, matplotlib's and
scikit-learn's photos (the astronaut, Grace Hopper, the cameraman in profile; close-ups at 40, 70,
100 %, cut by the border, mirrored, a 2560×1912 grey copy, two heads cheek to cheek) with their
labels, and 10 face-free photos. A clone that is missing is reported and skipped; the benchmark
runs on whatever the folder holds.

Run: ``PYTHONPATH=src python benchmarks/bench_faces.py`` (``--detectors blazeface,dlib,lbp``;
``--real faces-real``; ``--photos 0`` for the real photos only). BlazeFace is also reported
at other score thresholds (one run at 0.4, re-filtered) and with a coarser / finer second pyramid
level (``grid=2`` / ``grid=4``: the long side in 352 / 640 model pixels instead of 480).
``--compare before=FILE.py`` runs the BlazeFaceDetector of another ``blazeface.py`` beside the
installed one, picture by picture in the same run (e.g. ``git show
main:src/emonet_face/faces/blazeface.py > before.py``).
Detectors that cannot be built here (``haar`` on OpenCV 5, ``yunet`` without cached weights) are
reported as unavailable. Timing is interleaved: each picture goes through every detector in turn
(the first one rotating), so a slow spell of the shared virtual machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import real_faces

SIZES = [(640, 480), (800, 600), (960, 640), (1024, 768), (1280, 960), (1600, 1200)]
SIZE_BINS = [(20, 32), (32, 48), (48, 80), (80, 160), (160, 400)]
CONDITIONS = ["plain", "rotated", "grayscale", "covered", "small-lfw"]


def _rgb(arr: np.ndarray) -> Image.Image:
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = (255 * (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-9)).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return Image.fromarray(arr).convert("RGBA").convert("RGB")
    return Image.fromarray(arr).convert("RGB")


@dataclass
class FaceSource:
    """A picture of one face and where its face box is (x0, y0, x1, y1 in the picture)."""

    image: Image.Image
    box: tuple[float, float, float, float]


def face_sources() -> tuple[list[FaceSource], list[FaceSource]]:
    """(sharp portraits, small LFW faces)."""
    import matplotlib.cbook
    from skimage import data

    astronaut = _rgb(data.astronaut())
    hopper = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    sharp = [
        # head crops with context; face boxes (brow to chin) measured on the pictures
        FaceSource(astronaut.crop((140, 20, 320, 220)), (36, 52, 138, 160)),
        FaceSource(hopper.crop((120, 60, 420, 400)), (40, 62, 248, 270)),
    ]
    lfw = (data.lfw_subset()[:100] * 255).astype(np.uint8)
    # LFW crops are centred faces: the face fills about the middle 70%
    small = [FaceSource(_rgb(c), (4.0, 5.0, 21.0, 24.0)) for c in lfw]
    return sharp, small


def face_free_pictures() -> dict[str, Image.Image]:
    import matplotlib
    import matplotlib.cbook
    from skimage import data

    names = [
        "coffee", "chelsea", "rocket", "horse", "coins", "moon", "hubble_deep_field", "retina", "page", "text",
        "brick", "grass", "gravel", "immunohistochemistry", "cell", "logo", "binary_blobs", "checkerboard", "clock",
        "colorwheel", "microaneurysms", "shepp_logan_phantom",
    ]  # fmt: skip
    out = {name: _rgb(getattr(data, name)()) for name in names}
    for name in ("Minduka_Present_Blue_Pack.png", "logo2.png"):
        out[name] = Image.open(matplotlib.cbook.get_sample_data(name)).convert("RGB")
    dem = matplotlib.cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"]
    out["jacksboro_dem"] = _rgb(dem.astype(float))
    topo = matplotlib.cbook.get_sample_data("topobathy.npz")["topo"]
    out["topobathy"] = _rgb(topo.astype(float))
    out.update(_drawings())
    from skimage import data as skdata

    other = (skdata.lfw_subset()[100:] * 255).astype(np.uint8)
    for m in range(4):  # 25 non-face LFW crops per mosaic, 4× enlarged
        mosaic = np.block([[other[m * 25 + r * 5 + c] for c in range(5)] for r in range(5)])
        out[f"lfw_nonfaces_{m}"] = _rgb(mosaic).resize((500, 500), Image.Resampling.BICUBIC)
    return out


def _drawings() -> dict[str, Image.Image]:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    out = {}

    def render(name, draw):
        fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
        draw(ax)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        out[name] = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    render("draw_lines", lambda ax: ax.plot(np.cumsum(rng.normal(size=(200, 4)), axis=0)))
    render("draw_bars", lambda ax: ax.bar(list("ABCDEFGH"), rng.uniform(1, 9, 8), color="tab:orange"))
    render("draw_scatter", lambda ax: ax.scatter(*rng.normal(size=(2, 300)), c=rng.uniform(size=300), s=40))
    render("draw_pie", lambda ax: ax.pie(rng.uniform(1, 5, 6), labels=list("UVWXYZ"), autopct="%1.0f%%"))
    waves = np.add.outer(np.sin(np.linspace(0, 6, 80)), np.cos(np.linspace(0, 9, 80)))
    render("draw_contour", lambda ax: ax.contourf(waves))
    words = (" ".join(f"word{rng.integers(99)}" for _ in range(9)) for _ in range(14))
    text = "Emotion recognition benchmark\n" + "\n".join(words)
    render("draw_text", lambda ax: (ax.axis("off"), ax.text(0, 1, text, va="top", family="serif", fontsize=12)))
    return out


@dataclass
class Truth:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    size: float  # face side in px
    condition: str


def _paste_face(canvas: Image.Image, source: FaceSource, side: float, condition: str, rng) -> Truth | None:
    """Paste ``source`` so that its face is ``side`` px wide; returns the face's truth box."""
    x0, y0, x1, y1 = source.box
    scale = side / (x1 - x0)
    picture = source.image.resize(
        (max(1, round(source.image.width * scale)), max(1, round(source.image.height * scale))),
        Image.Resampling.LANCZOS,
    )
    fx0, fy0, fx1, fy1 = x0 * scale, y0 * scale, x1 * scale, y1 * scale
    mask = None
    if condition == "grayscale":
        picture = picture.convert("L").convert("RGB")
    elif condition == "covered":
        draw = ImageDraw.Draw(picture)
        fh = fy1 - fy0
        if rng.uniform() < 0.5:  # sunglasses: a dark band over the eyes
            draw.rectangle((fx0 + 0.05 * side, fy0 + 0.22 * fh, fx1 - 0.05 * side, fy0 + 0.42 * fh), fill=(15, 15, 20))
        else:  # a hand-coloured block over the forehead or the mouth
            top = fy0 if rng.uniform() < 0.5 else fy0 + 0.62 * fh
            draw.rectangle((fx0 - 0.1 * side, top, fx1 + 0.1 * side, top + 0.38 * fh), fill=(214, 170, 140))
    elif condition == "rotated":
        angle = float(rng.choice([-1, 1]) * rng.uniform(15, 45))
        cx, cy = picture.width / 2, picture.height / 2
        mask = Image.new("L", picture.size, 255).rotate(angle, expand=True)
        picture = picture.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
        # the face centre rotates with the picture (PIL: counter-clockwise, y down)
        fcx, fcy = (fx0 + fx1) / 2 - cx, (fy0 + fy1) / 2 - cy
        a = math.radians(angle)
        ncx = fcx * math.cos(a) + fcy * math.sin(a) + picture.width / 2
        ncy = -fcx * math.sin(a) + fcy * math.cos(a) + picture.height / 2
        half_w, half_h = (fx1 - fx0) / 2, (fy1 - fy0) / 2
        fx0, fx1, fy0, fy1 = ncx - half_w, ncx + half_w, ncy - half_h, ncy + half_h
    free_x, free_y = canvas.width - picture.width, canvas.height - picture.height
    if free_x < 0 or free_y < 0:
        return None
    left, top = int(rng.integers(0, free_x + 1)), int(rng.integers(0, free_y + 1))
    canvas.paste(picture, (left, top), mask)
    return Truth((left + fx0, top + fy0, left + fx1, top + fy1), side, condition)


def labelled_photos(n: int, seed: int = 0) -> list[tuple[Image.Image, list[Truth]]]:
    rng = np.random.default_rng(seed)
    sharp, small = face_sources()
    backgrounds = list(face_free_pictures().values())
    photos = []
    for i in range(n):
        width, height = SIZES[i % len(SIZES)]
        canvas = backgrounds[int(rng.integers(len(backgrounds)))].resize((width, height), Image.Resampling.BILINEAR)
        truths: list[Truth] = []
        for _ in range(int(rng.integers(2, 6))):
            condition = CONDITIONS[int(rng.integers(len(CONDITIONS)))]
            if condition == "small-lfw":
                source, side = small[int(rng.integers(len(small)))], float(rng.uniform(20, 60))
            else:
                source = sharp[int(rng.integers(len(sharp)))]
                side = float(np.exp(rng.uniform(np.log(20), np.log(min(400, height / 2)))))
            for _attempt in range(20):  # keep faces apart: a new face must not overlap another's picture
                trial = canvas.copy()
                truth = _paste_face(trial, source, side, condition, rng)
                if truth is None:
                    break
                if all(not _overlaps(truth.box, t.box, pad=0.6 * max(t.size, truth.size)) for t in truths):
                    canvas = trial
                    truths.append(truth)
                    break
        photos.append((canvas, truths))
    return photos


def _overlaps(a, b, pad: float) -> bool:
    return not (a[2] + pad < b[0] or b[2] + pad < a[0] or a[3] + pad < b[1] or b[3] + pad < a[1])


def _matches(face, truth: Truth) -> bool:
    cx, cy = face.box_x + face.box_w / 2, face.box_y + face.box_h / 2
    x0, y0, x1, y1 = truth.box
    inside = x0 <= cx <= x1 and y0 <= cy <= y1
    ratio = max(face.box_w, face.box_h) / truth.size
    return inside and 0.4 <= ratio <= 2.5


@dataclass
class Run:
    """One detector configuration: what it found on every picture and how long each took."""

    label: str
    detector: object | None
    thresholds: list[float] | None = None
    unavailable: str | None = None
    found: dict[object, list] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)


def make_run(label: str, spec: str, *, thresholds: list[float] | None = None, **options) -> Run:
    from emonet_face.errors import EmoNetError
    from emonet_face.faces import get_detector

    try:
        return Run(label, get_detector(spec, **options), thresholds)
    except EmoNetError as exc:
        return Run(label, None, unavailable=str(exc))


def cpu_times() -> list[int]:
    """The machine's CPU time counters (``/proc/stat``: user … steal), for the steal share."""
    try:
        with open("/proc/stat") as fh:
            return [int(v) for v in fh.readline().split()[1:9]]
    except OSError:
        return []


def detect_interleaved(runs: list[Run], pictures: dict[object, Image.Image]) -> None:
    """Every picture through every detector in turn, the first one rotating: a slow spell of the
    (shared, virtual) machine then falls on all detectors alike instead of on whichever ran then."""
    ready = [run for run in runs if run.detector is not None]
    for n, (key, image) in enumerate(pictures.items()):
        for run in ready[n % len(ready) :] + ready[: n % len(ready)]:
            start = time.perf_counter()
            run.found[key] = run.detector.detect(image)
            run.seconds.append(time.perf_counter() - start)


def score(run: Run, photos, free) -> list[dict[str, object]]:
    """Recall by face size and condition, extra boxes and false faces, per threshold of ``run``."""
    if run.detector is None:
        return [{"detector": run.label, "unavailable": run.unavailable}]
    ms = round(1000 * float(np.median(run.seconds)), 1)
    found_photos = [run.found[("photo", i)] for i in range(len(photos))]
    found_free = {key: run.found[("free", key)] for key in free}
    results = []
    for threshold in run.thresholds or [None]:
        keep = (lambda f: True) if threshold is None else (lambda f, t=threshold: f.score >= t)
        hits: list[tuple[Truth, bool]] = []
        extra = 0
        for (_, truths), faces in zip(photos, found_photos):
            faces = [f for f in faces if keep(f)]
            used = set()
            for truth in truths:
                match = next((i for i, f in enumerate(faces) if i not in used and _matches(f, truth)), None)
                hits.append((truth, match is not None))
                if match is not None:
                    used.add(match)
            extra += len(faces) - len(used)
        false = {k: n for k, faces in found_free.items() if (n := sum(keep(f) for f in faces))}
        by_size = {}
        for lo, hi in SIZE_BINS:
            part = [ok for t, ok in hits if lo <= t.size < hi]
            by_size[f"{lo}-{hi}px"] = f"{np.mean(part):.2f} ({len(part)})" if part else "-"
        by_condition = {}
        for condition in CONDITIONS:
            part = [ok for t, ok in hits if t.condition == condition]
            by_condition[condition] = f"{np.mean(part):.2f} ({len(part)})" if part else "-"
        results.append(
            {
                "detector": run.label + ("" if threshold is None else f"@{threshold:g}"),
                "recall": round(float(np.mean([ok for _, ok in hits])), 3),
                "by size": by_size,
                "by condition": by_condition,
                "extra boxes on labelled photos": extra,
                f"false faces / face-free photo ({len(free)})": round(sum(false.values()) / len(free), 3),
                "false detail": false,
                "ms/photo median": ms,
            }
        )
    return results


def load_compare(spec: str) -> Run:
    """``LABEL=FILE.py``: a BlazeFace module from a file (e.g. ``git show main:src/emonet_face/faces/blazeface.py``),
    run beside the installed one in the same process, picture by picture."""
    import importlib.util
    import sys

    label, _, path = spec.rpartition("=")
    name = f"_compare_{len(sys.modules)}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return Run(label or path, module.BlazeFaceDetector())


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # yunet: local cache or a local file only
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--detectors", default="blazeface,dlib,lbp,haar,yunet")
    parser.add_argument("--photos", type=int, default=48, help="synthetic labelled photos (2–5 faces each); 0: none")
    parser.add_argument("--thresholds", default="0.4,0.5,0.6,0.7,0.8", help="BlazeFace score thresholds to report ('' none)")
    parser.add_argument("--grids", default="2,4", help="BlazeFace finer pyramid levels to report besides the default ('' none)")
    parser.add_argument("--real", type=Path, help="a folder of photos with dlib imglab XML labels (see --gather)")
    parser.add_argument("--video", type=Path, help="a clip in which one person is alone on screen (default with --real: "
                        "the Hamilton clip of face_recognition, frames 85–210)")  # fmt: skip
    parser.add_argument("--video-frames", default="85:210:2", help="first:last:step frame indices of --video")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false",
                        help="with --real: skip the close-up sweep (each one-face photo at 15 framings)")  # fmt: skip
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=FILE.py",
                        help="also run the BlazeFaceDetector of another blazeface.py, in the same run")  # fmt: skip
    parser.add_argument("--gather", type=Path, metavar="DIR", help="build the --real folder from CLONES, then stop")
    parser.add_argument("clones", nargs="*", type=Path, help="with --gather: clones of dlib, face_recognition, yolov5, deepface")
    args = parser.parse_args()
    if args.gather:
        missing = real_faces.gather(args.gather, args.clones)
        print(f"wrote {args.gather}; not found in the clones: {missing or 'none'}")
        return
    photos = labelled_photos(args.photos) if args.photos else []
    free = face_free_pictures() if args.photos else {}
    real, absent = real_faces.real_photos(args.real) if args.real else ([], [])
    n_faces = sum(len(t) for _, t in photos)
    print(f"{len(photos)} synthetic labelled photos with {n_faces} faces; {len(free)} face-free pictures; "
          f"CPU: {os.cpu_count()} cores")  # fmt: skip
    if args.real:
        print(f"real photos: {len(real)} ({sum(len(p.faces) for p in real)} faces, "
              f"{sum(p.face_free for p in real)} face-free) from {args.real}; listed but absent: {len(absent)}")  # fmt: skip
    runs = []
    for spec in args.detectors.split(","):
        if spec == "blazeface":
            runs.append(make_run("blazeface (default)", spec))
            if args.thresholds:
                thresholds = [float(t) for t in args.thresholds.split(",")]
                runs.append(make_run("blazeface", spec, thresholds=thresholds, threshold=min(thresholds)))
            runs += [make_run(f"blazeface grid={g}", spec, grid=int(g)) for g in args.grids.split(",") if g]
        else:
            runs.append(make_run(spec, spec))
    runs += [load_compare(spec) for spec in args.compare]
    pictures = {("photo", i): image for i, (image, _) in enumerate(photos)}
    pictures |= {("free", key): image for key, image in free.items()}
    before = cpu_times()
    detect_interleaved(runs, pictures)
    sweep = real_faces.close_up_sweep(real) if real and args.sweep else []
    if real:
        detect_interleaved(runs, {("real", p.path): real_faces.load_photo(p.path) for p in real})
        detect_interleaved(runs, {("sweep", name): image for name, image, _ in sweep})
    spent = [b - a for a, b in zip(before, cpu_times())]
    if spent:  # on a virtual machine the host may take cycles: absolute times then mean little
        print(f"CPU time stolen by the host during the run: {100 * spent[7] / max(1, sum(spent)):.1f}%; "
              f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    if photos:
        print("== synthetic set (faces pasted on face-free pictures) ==")
        results = [result for run in runs for result in score(run, photos, free)]
        for result in results:
            print(" | ".join(f"{k}: {v}" for k, v in result.items()), flush=True)
        timed = [r for r in results if "ms/photo median" in r]
        base = next((r for r in timed if r["detector"] == "dlib"), None)
        if base:  # side by side against dlib HOG (the previous default), same run
            for r in timed:
                print(f"{r['detector']}: {r['ms/photo median'] / base['ms/photo median']:.2f}x the time of dlib per photo")
    if real:
        print("== real photos ==")
        for run in runs:
            if run.detector is None:
                continue
            found = {p.path: [f for f in run.found[("real", p.path)] if keep_face(run, f)] for p in real}
            seconds = {p.path: s for p, s in zip(real, run.seconds[len(run.seconds) - len(sweep) - len(real) :])}
            print(" | ".join(f"{k}: {v}" for k, v in real_faces.score_real(run.label, found, seconds, real).items()))
    if sweep:
        print(f"== close-ups: {len(sweep) // len(real_faces.SWEEP_FILLS)} one-face photos, each cropped so that the face "
              f"fills 30, 35, … 100 % of a 512-px frame ==")  # fmt: skip
        for run in runs:
            if run.detector is not None:
                found = {name: [f for f in run.found[("sweep", name)] if keep_face(run, f)] for name, _, _ in sweep}
                print(" | ".join(f"{k}: {v}" for k, v in real_faces.score_sweep(run.label, found, sweep).items()))
    video = args.video or (args.real / real_faces.HAMILTON if args.real else None)
    if video and video.is_file():
        first, last, step = (int(v) for v in args.video_frames.split(":"))
        frames = real_faces.video_frames(video, first, last, step)
        print(f"== video: {video.name}, frames {first}–{last} every {step} ({len(frames)}), one person on screen ==")
        for run in runs:
            if run.detector is not None and not run.thresholds:
                found = [run.detector.detect(image) for _, image in frames]
                print(" | ".join(f"{k}: {v}" for k, v in {"detector": run.label, **real_faces.tracks_of(found)}.items()))


def keep_face(run: Run, face) -> bool:
    """Threshold runs are scored on the real set at the default threshold only (0.5)."""
    return not run.thresholds or face.score >= 0.5


if __name__ == "__main__":
    main()
