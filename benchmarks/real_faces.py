"""Real photographs with hand-labelled face boxes for ``bench_faces.py --real DIR``.

Labels are read in dlib's imglab XML (``<image file=...><box top= left= width= height= [ignore='1']/>``),
the format of dlib's ``examples/faces/testing.xml`` and ``training.xml``: every ``*.xml`` under the
folder is read, image paths relative to the XML's own folder. A box with ``ignore='1'`` counts
neither way (a detection on it is neither a hit nor a mistake); an image with no other box is
face-free, so every detection on it is a false face.

``gather`` builds such a folder from shallow clones of public repositories (their photos carry
third-party rights, so they are not in this repository: only our labels, ``faces_real/extra.xml``)
and from photos that installed packages ship (written with their labels to ``package/``).
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
EXTRA_XML = HERE / "faces_real" / "extra.xml"

Box = tuple[float, float, float, float]  # x0, y0, x1, y1

REAL_SIZE_BINS = [(0, 32), (32, 48), (48, 96), (96, 192), (192, 384), (384, 100_000)]
KINDS = ["profile", "edge", "close-up"]
CLOSE_UP = 0.3
"""A face is a close-up where its box spans at least this fraction of the photo's long side."""


@dataclass
class LabelledPhoto:
    """One photo of a labelled folder: its face boxes, the boxes to ignore, its subset (the XML's
    name) and each face's ``<label>`` tags (``profile``, ``edge``)."""

    path: Path
    subset: str
    faces: list[Box]
    ignored: list[Box] = field(default_factory=list)
    tags: list[set[str]] = field(default_factory=list)

    @property
    def face_free(self) -> bool:
        return not self.faces

    def kinds(self, index: int) -> set[str]:
        """The face's tags, plus ``close-up`` where it spans at least :data:`CLOSE_UP` of the photo's long side."""
        box = self.faces[index]
        with Image.open(self.path) as image:
            long_side = max(image.size)
        close = max(box[2] - box[0], box[3] - box[1]) >= CLOSE_UP * long_side
        return (self.tags[index] if index < len(self.tags) else set()) | ({"close-up"} if close else set())


def read_dlib_xml(path: Path) -> list[LabelledPhoto]:
    """The images of one imglab XML file (paths resolved against the file's folder)."""
    root = ET.parse(path).getroot()
    photos = []
    for image in root.iter("image"):
        faces, ignored, tags = [], [], []
        for box in image.iter("box"):
            left, top = float(box.get("left", 0)), float(box.get("top", 0))
            x1, y1 = left + float(box.get("width", 0)), top + float(box.get("height", 0))
            if box.get("ignore", "0") not in ("0", ""):
                ignored.append((left, top, x1, y1))
            else:
                faces.append((left, top, x1, y1))
                tags.append({(label.text or "").strip() for label in box.iter("label")})
        photos.append(LabelledPhoto(path.parent / image.get("file", ""), path.stem, faces, ignored, tags))
    return photos


def real_photos(folder: Path) -> tuple[list[LabelledPhoto], list[Path]]:
    """Every labelled image under ``folder`` (all ``*.xml``, recursively) and the listed images that are missing."""
    photos, missing, seen = [], [], set()
    for xml in sorted(folder.rglob("*.xml")):
        try:
            listed = read_dlib_xml(xml)
        except ET.ParseError:
            continue  # not a label file
        for photo in listed:
            key = photo.path.resolve()
            if key in seen:
                continue
            seen.add(key)
            (photos if photo.path.is_file() else missing).append(photo if photo.path.is_file() else photo.path)
    return photos, missing


def load_photo(path: Path) -> Image.Image:
    """As ``predict`` reads it: EXIF orientation applied (the labels are on the upright photo)."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


# --- scoring -------------------------------------------------------------------------------------
def _centre_in(face, box: Box) -> bool:
    cx, cy = face.box_x + face.box_w / 2, face.box_y + face.box_h / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def _box_of(face) -> Box:
    return (face.box_x, face.box_y, face.box_x + face.box_w, face.box_y + face.box_h)


def matches(face, truth: Box) -> bool:
    """The synthetic set's rule: the detection's centre lies in the face's box and its size is 0.4–2.5× the face's."""
    side = max(truth[2] - truth[0], truth[3] - truth[1])
    return _centre_in(face, truth) and 0.4 <= max(face.box_w, face.box_h) / side <= 2.5


def judge(faces: list, photo: LabelledPhoto) -> dict[str, object]:
    """Hits per labelled face, and the other detections sorted into duplicates (a second box on a
    face that has one: its centre inside a matched face's box or inside a kept detection, or a kept
    detection's centre inside it), boxes on ignored faces, and extra boxes (anything else: a false
    face where the photo is face-free)."""
    order = sorted(range(len(faces)), key=lambda i: -faces[i].score)
    hit = [False] * len(photo.faces)
    matched: dict[int, int] = {}
    for i in order:
        j = next((j for j, t in enumerate(photo.faces) if not hit[j] and matches(faces[i], t)), None)
        if j is not None:
            hit[j], matched[i] = True, j
    duplicates = on_ignored = extra = 0
    kept: list[int] = list(matched)
    for i in order:
        if i in matched:
            continue
        face = faces[i]
        others = [faces[k] for k in kept]
        if any(_centre_in(face, photo.faces[j]) for j in matched.values()) or any(
            _centre_in(face, _box_of(o)) or _centre_in(o, _box_of(face)) for o in others
        ):
            duplicates += 1
        elif any(_centre_in(face, box) for box in photo.ignored):
            on_ignored += 1
        else:
            extra += 1
        kept.append(i)
    return {"hits": hit, "duplicates": duplicates, "on_ignored": on_ignored, "extra": extra}


def score_real(label: str, found: dict[Path, list], seconds: dict[Path, float], photos: list[LabelledPhoto]) -> dict:
    """One row: recall (all, by face size, ≥ 48 px, by subset), duplicates, extra boxes on labelled
    photos, false faces on face-free ones, median and max ms per photo."""
    sizes, hits, subsets, kinds = [], [], {}, {k: [] for k in KINDS}
    duplicates = extra = false = 0
    false_detail = {}
    for photo in photos:
        verdict = judge(found[photo.path], photo)
        duplicates += verdict["duplicates"]
        if photo.face_free:
            false += verdict["extra"]
            if verdict["extra"]:
                false_detail[photo.path.name] = verdict["extra"]
        else:
            extra += verdict["extra"]
        for index, (box, ok) in enumerate(zip(photo.faces, verdict["hits"])):
            sizes.append(max(box[2] - box[0], box[3] - box[1]))
            hits.append(ok)
            subsets.setdefault(photo.subset, []).append(ok)
            for kind in photo.kinds(index) & set(KINDS):
                kinds[kind].append(ok)
    sizes_a, hits_a = np.asarray(sizes), np.asarray(hits, bool)
    by_size = {}
    for lo, hi in REAL_SIZE_BINS:
        part = hits_a[(sizes_a >= lo) & (sizes_a < hi)]
        name = f"{lo}-{hi}px" if hi < 100_000 else f"≥{lo}px"
        by_size[name] = f"{part.mean():.2f} ({len(part)})" if len(part) else "-"
    big = hits_a[sizes_a >= 48]
    times = [1000 * seconds[p.path] for p in photos]
    n_free = sum(p.face_free for p in photos)
    return {
        "detector": label,
        "recall": f"{hits_a.mean():.3f} ({len(hits_a)})" if len(hits_a) else "-",
        "recall ≥48px": f"{big.mean():.3f} ({len(big)})" if len(big) else "-",
        "by size": by_size,
        "by kind": {k: f"{np.mean(v):.2f} ({len(v)})" if v else "-" for k, v in kinds.items()},
        "by subset": {k: f"{np.mean(v):.2f} ({len(v)})" for k, v in subsets.items()},
        "duplicate boxes": duplicates,
        "extra boxes on labelled photos": extra,
        f"false faces on face-free photos ({n_free})": false,
        "false detail": false_detail,
        "ms/photo median": round(float(np.median(times)), 1),
        "ms/photo max": round(float(np.max(times)), 1),
    }


# --- close-ups: one face filling 30–100 % of the frame ------------------------------------------
SWEEP_FILLS = tuple(round(0.3 + 0.05 * k, 2) for k in range(15))


def close_up_sweep(photos: list[LabelledPhoto]) -> list[tuple[str, Image.Image, Box]]:
    """Every photo with one labelled face of 48 px or more, cropped square around the face so that
    it fills 30, 35, … 100 % of the frame, at 512 px: (name, picture, face box)."""
    out = []
    for photo in photos:
        if len(photo.faces) != 1 or photo.ignored:
            continue
        box = photo.faces[0]
        if max(box[2] - box[0], box[3] - box[1]) < 48:
            continue
        image = load_photo(photo.path)
        for fill in SWEEP_FILLS:
            crop, moved = close_up(image, box, fill)
            out.append((f"{photo.path.name}@{fill:.2f}", crop, moved))
    return out


def score_sweep(label: str, found: dict[str, list], sweep: list[tuple[str, Image.Image, Box]]) -> dict:
    """Framings where the face was missed, where it got more than one box, and other boxes."""
    missed = doubled = other = 0
    doubled_at = []
    for name, _, box in sweep:
        faces = found[name]
        on_face = [f for f in faces if _centre_in(f, box)]
        missed += not any(matches(f, box) for f in on_face)
        if len(on_face) > 1:
            doubled += 1
            doubled_at.append(name)
        other += len(faces) - len(on_face)
    return {
        "detector": label,
        "framings": len(sweep),
        "face missed": missed,
        "face with >1 box": doubled,
        "other boxes": other,
        "where >1": doubled_at[:8],
    }


# --- video: one person, one track ----------------------------------------------------------------
def video_frames(path: Path, first: int, last: int, step: int) -> list[tuple[int, Image.Image]]:
    import av

    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index > last:
                break
            if index >= first and (index - first) % step == 0:
                frames.append((index, frame.to_image().convert("RGB")))
    return frames


def tracks_of(found_per_frame: list[list]) -> dict[str, object]:
    """Tracks that ``predict`` would make from these detections by box overlap alone (the embedding
    is NaN here, as no encoder runs in this benchmark; with embeddings the tracker only joins more),
    and frames with no box or with more than one."""
    from emonet_face.tracking import FaceTracker

    tracker, ids = FaceTracker(), []
    for faces in found_per_frame:
        boxes = np.array([[f.box_x, f.box_y, f.box_w, f.box_h] for f in faces], float).reshape(-1, 4)
        ids += tracker.update("video", boxes, np.full((len(faces), 8), np.nan))
    counts = [len(f) for f in found_per_frame]
    return {
        "tracks": len(set(ids)),
        "frames": len(counts),
        "frames without a face": sum(c == 0 for c in counts),
        "frames with >1 box": sum(c > 1 for c in counts),
    }


# --- building the folder -------------------------------------------------------------------------
DLIB_FILES = (
    "testing.xml", "training.xml",  # dlib's labels of its PASCAL VOC photos
    "2008_002470.jpg", "2008_002506.jpg", "2008_004176.jpg", "2008_007676.jpg", "2009_004587.jpg",
    "2007_007763.jpg", "2008_002079.jpg", "2008_001009.jpg", "2008_001322.jpg",
    "Tom_Cruise_avp_2014_4.jpg", "bald_guys.jpg", "dogs.jpg",
)  # fmt: skip
FACE_RECOGNITION_FILES = (
    "examples/alex-lacamoire.png", "examples/lin-manuel-miranda.png", "examples/biden.jpg",
    "examples/obama-1080p.jpg", "examples/obama2.jpg", "examples/two_people.jpg",
    "examples/knn_examples/test/alex_lacamoire1.jpg", "examples/knn_examples/test/johnsnow_test1.jpg",
    "examples/knn_examples/test/kit_with_rose.jpg", "examples/knn_examples/test/obama_and_biden.jpg",
    "examples/knn_examples/train/biden/biden2.jpg", "examples/knn_examples/train/rose_leslie/img1.jpg",
    "examples/knn_examples/train/rose_leslie/img2.jpg", "examples/knn_examples/train/kit_harington/john1.jpeg",
    "examples/knn_examples/train/kit_harington/john2.jpeg", "tests/test_images/obama3.jpg",
    "tests/test_images/obama_partial_face.jpg", "tests/test_images/obama_partial_face2.jpg",
    "examples/short_hamilton_clip.mp4",
)  # fmt: skip
DEEPFACE_FILES = (
    "couple", "img4", "img5", "img19", "img24", "img25", "img32", "img35", "img37", "img47", "img49", "img51",
    "img57", "img58", "img59", "img61", "selfie-many-people",
)  # fmt: skip
# (destination in the folder, paths tried in the clones given to ``gather``)
CLONED_FILES: list[tuple[str, list[str]]] = [
    *[(f"dlib/{n}", [f"examples/faces/{n}"]) for n in DLIB_FILES],
    *[(f"dlib/ff_{n}.jpg", [f"dlib/test/ffmpeg_data/{n}.jpg"]) for n in ("dog", "eagle", "giraffe", "horses")],
    *[(f"face_recognition/{Path(p).name}", [p]) for p in FACE_RECOGNITION_FILES],
    ("yolov5/bus.jpg", ["data/images/bus.jpg"]),
    ("yolov5/zidane.jpg", ["data/images/zidane.jpg"]),
    *[(f"deepface/{n}.jpg", [f"tests/unit/dataset/{n}.jpg", f"tests/dataset/{n}.jpg"]) for n in DEEPFACE_FILES],
]
HAMILTON = "face_recognition/short_hamilton_clip.mp4"
HAMILTON_STILLS = (25, 40, 100, 150, 200, 230)
HAMILTON_ONE_PERSON = (85, 210)
"""Frames of the clip where one performer is alone on screen (moving, turning, gesturing)."""


def gather(dest: Path, clones: list[Path]) -> list[str]:
    """Copy the labelled photos from ``clones`` (shallow clones of dlib, face_recognition, yolov5,
    deepface) into ``dest``, cut the stills out of the clip, add our labels and the package photos.
    Returns what could not be found."""
    dest.mkdir(parents=True, exist_ok=True)
    missing = []
    for target, sources in CLONED_FILES:
        found = next((c / s for c in clones for s in sources if (c / s).exists()), None)
        if found is None:
            missing.append(target)
        else:
            (dest / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, dest / target)
    if (dest / HAMILTON).is_file():
        for index, image in video_frames(dest / HAMILTON, min(HAMILTON_STILLS), max(HAMILTON_STILLS), 1):
            if index in HAMILTON_STILLS:
                image.save(dest / f"face_recognition/hamilton_f{index:03d}.png")
    shutil.copyfile(EXTRA_XML, dest / "extra.xml")
    write_package_photos(dest / "package")
    return missing


# --- photos that installed packages ship ---------------------------------------------------------
# Face boxes measured by eye on a grid over each picture (x0, y0, x1, y1).
ASTRONAUT_FACE: Box = (178, 75, 266, 180)  # Eileen Collins, frontal (same box as tests/test_faces.py)
HOPPER_FACE: Box = (160, 122, 368, 330)  # Grace Hopper, frontal, brow to chin
CAMERA_FACE: Box = (188, 124, 260, 196)  # the cameraman, seen from the side: ear to nose tip, brow to chin


def _package_sources() -> dict[str, tuple[Image.Image, Box]]:
    import matplotlib.cbook
    from skimage import data

    hopper = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    return {
        "astronaut": (Image.fromarray(data.astronaut()), ASTRONAUT_FACE),
        "hopper": (hopper, HOPPER_FACE),
        "camera": (Image.fromarray(data.camera()).convert("RGB"), CAMERA_FACE),
    }


def _mirror(image: Image.Image, box: Box) -> tuple[Image.Image, Box]:
    return ImageOps.mirror(image), (image.width - box[2], box[1], image.width - box[0], box[3])


def _clip(box: Box, width: int, height: int) -> Box:
    return (max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3]))


def close_up(
    image: Image.Image, box: Box, fill: float, side: int = 512, shift: tuple[float, float] = (0, 0)
) -> tuple[Image.Image, Box]:
    """A ``side``-px square crop in which the face spans ``fill`` of the width, its centre moved by
    ``shift`` (fractions of the crop) from the middle, the crop kept inside the picture where it
    fits; the face box comes back clipped to the crop."""
    fw = max(box[2] - box[0], box[3] - box[1])
    window = round(fw / fill)
    cx, cy = (box[0] + box[2]) / 2 - shift[0] * window, (box[1] + box[3]) / 2 - shift[1] * window
    left = round(min(max(cx - window / 2, 0), max(image.width - window, 0)))
    top = round(min(max(cy - window / 2, 0), max(image.height - window, 0)))
    crop = image.crop((left, top, left + window, top + window)).resize((side, side), Image.Resampling.BICUBIC)
    scale = side / window
    moved = ((box[0] - left) * scale, (box[1] - top) * scale, (box[2] - left) * scale, (box[3] - top) * scale)
    return crop, _clip(moved, side, side)


def cut_by_border(image: Image.Image, box: Box) -> tuple[Image.Image, Box]:
    """The picture cut vertically through the middle of the face (its left half gone), from 0.6 face
    heights above the face to 0.6 below: a face at the left border."""
    fh = box[3] - box[1]
    left, top, bottom = (
        round((box[0] + box[2]) / 2),
        max(0, round(box[1] - 0.6 * fh)),
        min(image.height, round(box[3] + 0.6 * fh)),
    )
    crop = image.crop((left, top, image.width, bottom))
    return crop, _clip((box[0] - left, box[1] - top, box[2] - left, box[3] - top), crop.width, crop.height)


def touching_pair(image: Image.Image, box: Box, margin: float = 0.35) -> tuple[Image.Image, list[Box]]:
    """The head around ``box`` (``margin`` face widths of context) and its mirror image beside it,
    pasted so that the two face boxes touch (the right copy cut at its face's left edge)."""
    fw, fh = box[2] - box[0], box[3] - box[1]
    head_box = (
        round(box[0] - margin * fw),
        round(box[1] - margin * fh),
        round(box[2] + margin * fw),
        round(box[3] + margin * fh / 2),
    )
    head = image.crop(head_box)
    face = (box[0] - head_box[0], box[1] - head_box[1], box[2] - head_box[0], box[3] - head_box[1])
    right, rface = _mirror(head, face)
    right = right.crop((round(rface[0]), 0, right.width, right.height))
    pair = Image.new("RGB", (round(face[2]) + right.width, head.height))
    pair.paste(head, (0, 0))
    pair.paste(right, (round(face[2]), 0))
    second = (round(face[2]), face[1], round(face[2]) + rface[2] - round(rface[0]), face[3])
    return pair, [face, second]


def _listed(pair: tuple[Image.Image, Box]) -> tuple[Image.Image, list[Box]]:
    return pair[0], [pair[1]]


def package_tags(name: str) -> set[str]:
    """The ``<label>`` tags of the package photos' faces: the cameraman is seen from the side."""
    return ({"profile"} if name.startswith("camera") else set()) | ({"edge"} if "border" in name else set())


def package_photos() -> list[tuple[str, Image.Image, list[Box]]]:
    """Real photos from scikit-image, matplotlib and scikit-learn, whole and as close-ups, mirrored,
    at the border, side by side, big and grey; plus face-free photos. (name, image, face boxes)."""
    from skimage import data

    sources = _package_sources()
    out: list[tuple[str, Image.Image, list[Box]]] = []
    for name, (image, box) in sources.items():
        out.append((name, image, [box]))
        for fill in (0.4, 0.7, 1.0):
            crop, moved = close_up(image, box, fill)
            out.append((f"{name}_closeup{round(fill * 100)}", crop, [moved]))
        out.append((f"{name}_at_left_border", *_listed(cut_by_border(image, box))))
    camera, box = sources["camera"]
    mirrored, mbox = _mirror(camera, box)
    out.append(("camera_mirrored", mirrored, [mbox]))
    crop, moved = close_up(mirrored, mbox, 0.6, shift=(-0.3, 0.2))
    out.append(("camera_mirrored_closeup60_low_right", crop, [moved]))
    big = camera.convert("L").resize((2560, 2560), Image.Resampling.BICUBIC).crop((0, 0, 2560, 1912))
    out.append(("camera_2560x1912_grey", big.convert("RGB"), [tuple(v * 5 for v in box)]))
    # two faces that touch: the astronaut's head, and its mirror image pasted from its face's edge on
    out.append(("astronaut_touching_mirror", *touching_pair(*sources["astronaut"])))
    for name in ("coffee", "chelsea", "rocket", "hubble_deep_field", "brick", "grass", "gravel"):
        out.append((name, Image.fromarray(getattr(data, name)()).convert("RGB"), []))
    out.append(("motorcycle", Image.fromarray(data.stereo_motorcycle()[0]).convert("RGB"), []))
    from sklearn.datasets import load_sample_image

    for name in ("china.jpg", "flower.jpg"):
        out.append((name.removesuffix(".jpg"), Image.fromarray(load_sample_image(name)), []))
    return out


def write_package_photos(folder: Path) -> None:
    """The package photos as PNG files with their labels in ``package.xml``."""
    folder.mkdir(parents=True, exist_ok=True)
    root = ET.Element("dataset")
    ET.SubElement(root, "name").text = "Photos that scikit-image, matplotlib and scikit-learn ship"
    ET.SubElement(root, "comment").text = (
        "Written by benchmarks/real_faces.py from face boxes measured by eye on the source pictures "
        "(close-ups, mirrors, crops and pastes keep the box exact)."
    )
    images = ET.SubElement(root, "images")
    for name, image, boxes in package_photos():
        image.save(folder / f"{name}.png")
        node = ET.SubElement(images, "image", file=f"{name}.png")
        for x0, y0, x1, y1 in boxes:
            box = ET.SubElement(
                node,
                "box",
                top=str(round(y0)),
                left=str(round(x0)),
                width=str(round(x1 - x0)),
                height=str(round(y1 - y0)),
            )
            for tag in sorted(package_tags(name)):
                ET.SubElement(box, "label").text = tag
    ET.indent(root)
    ET.ElementTree(root).write(folder / "package.xml", encoding="ISO-8859-1", xml_declaration=True)
