"""Built-in face detectors.

* ``blazeface`` (default): MediaPipe's BlazeFace full-range CNN, shipped inside this package and
  run with LiteRT (:mod:`emonet_face.faces.blazeface`); gives eye landmarks.
* ``dlib``: dlib's HOG + linear SVM frontal-face detector. Its weights are compiled into the
  ``dlib-bin`` wheel, so it works offline on a fresh machine (see ``benchmarks/bench_faces.py``).
* ``haar``: OpenCV's Viola-Jones cascade shipped in ``cv2.data`` (OpenCV 4.x only: OpenCV 5 dropped
  ``CascadeClassifier`` and the XML files).
* ``lbp``: scikit-image's LBP cascade (``skimage.data.lbp_frontal_face_cascade_filename()``).
* ``yunet``: OpenCV's YuNet CNN (``cv2.FaceDetectorYN``), stronger on small, rotated and profile
  faces; its ONNX weights come from the Hugging Face Hub (cached, offline-aware) or a local file:
  ``--detector yunet`` or ``--detector yunet:/path/face_detection_yunet_2023mar.onnx``.

Every detector runs on a copy resized to a working size (large photos shrunk for speed, small ones
enlarged so that small faces are found) and maps boxes back to the original pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from emonet_face.errors import ModelLoadError, require_extra
from emonet_face.faces.base import DetectorError, Face, sort_faces
from emonet_face.hub import resolve_model_file

__all__ = ["DlibHogDetector", "HaarCascadeDetector", "LbpCascadeDetector", "YuNetDetector"]

MAX_DETECT_SIDE = 1600
"""Long side of the working copy for big photos: faces under ~1/40 of the long side are not looked for."""
MIN_DETECT_SIDE = 640
"""Short images are enlarged to this long side, so that faces of ~20 px in a thumbnail are still found."""


def _working_copy(image: Image.Image, *, max_side: int = MAX_DETECT_SIDE, min_side: int = MIN_DETECT_SIDE):
    """(RGB uint8 array of the resized image, factor back to original pixels)."""
    long_side = max(image.size)
    scale = 1.0
    if long_side > max_side:
        scale = max_side / long_side
    elif long_side < min_side:
        scale = min_side / long_side
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.BICUBIC)
    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return arr, 1.0 / scale


def _clip_to_image(face: Face, width: int, height: int) -> Face | None:
    """Detectors may return boxes that reach past the border; keep the part inside the image."""
    x0, y0 = max(0.0, face.box_x), max(0.0, face.box_y)
    x1, y1 = min(float(width), face.box_x + face.box_w), min(float(height), face.box_y + face.box_h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return Face(x0, y0, x1 - x0, y1 - y0, face.score, face.eyes)


def _finish(faces: list[Face], factor: float, image: Image.Image) -> list[Face]:
    out = [_clip_to_image(f.scaled(factor), image.width, image.height) for f in faces]
    return sort_faces([f for f in out if f is not None])


class DlibHogDetector:
    """dlib's HOG frontal-face detector (weights inside the ``dlib-bin`` wheel; offline).

    ``threshold`` is on dlib's SVM margin: 0.3 removed the false positives seen on the offline test
    photos (e.g. the mission patch in ``skimage.data.astronaut()`` scores 0.12) while keeping all
    true faces (which score above 0.9 there); see ``benchmarks/bench_faces.py``.
    """

    name = "dlib"

    def __init__(self, *, threshold: float = 0.3, upsample: int = 1) -> None:
        dlib = require_extra(
            "dlib", feature="--detector dlib", extra="dlib", error=DetectorError, otherwise="or choose another --detector"
        )
        self._detector = dlib.get_frontal_face_detector()
        self.threshold = threshold
        self.upsample = upsample

    def detect(self, image: Image.Image) -> list[Face]:
        # dlib's window is 80 px: at the 640-px minimum working size plus one upsampling step,
        # faces of ~1/16 of the long side are found; bigger photos are shrunk to 1600 px first.
        arr, factor = _working_copy(image)
        upsample = self.upsample if max(arr.shape[:2]) <= MIN_DETECT_SIDE * 1.5 else 0
        rects, scores, _ = self._detector.run(arr, upsample, self.threshold)
        faces = [
            Face(float(r.left()), float(r.top()), float(r.width()), float(r.height()), float(s))
            for r, s in zip(rects, scores)
        ]
        return _finish(faces, factor, image)


class HaarCascadeDetector:
    """OpenCV's Viola-Jones frontal-face cascade (``haarcascade_frontalface_default.xml``)."""

    name = "haar"

    def __init__(
        self,
        *,
        cascade: str = "haarcascade_frontalface_default.xml",
        min_neighbors: int = 5,
        threshold: float | None = None,
    ) -> None:
        import cv2

        data = getattr(cv2, "data", None)
        folder = Path(getattr(data, "haarcascades", "") or ".")
        path = folder / cascade
        if not hasattr(cv2, "CascadeClassifier") or not path.is_file():
            raise DetectorError(
                f"--detector haar needs OpenCV 4.x with its bundled cascades (found OpenCV {cv2.__version__}, "
                "which has none); pip install 'opencv-python-headless<5' or choose --detector dlib"
            )
        self._cascade = cv2.CascadeClassifier(str(path))
        self.min_neighbors = min_neighbors
        self.threshold = threshold
        """Minimum cascade level weight (``--min-face-score``); ``None`` keeps every detection."""

    def detect(self, image: Image.Image) -> list[Face]:
        import cv2

        arr, factor = _working_copy(image)
        grey = cv2.equalizeHist(cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = self._cascade.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(24, 24), outputRejectLevels=True
        )
        faces = [Face(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(w)) for b, w in zip(boxes, np.ravel(weights))]
        if self.threshold is not None:
            faces = [f for f in faces if f.score >= self.threshold]
        return _finish(faces, factor, image)


class LbpCascadeDetector:
    """scikit-image's LBP frontal-face cascade (the XML file ships inside scikit-image)."""

    name = "lbp"

    def __init__(self, *, min_neighbour_number: int = 2, threshold: float | None = None) -> None:
        require_extra("skimage.feature", feature="--detector lbp", extra="lbp", package="scikit-image", error=DetectorError)
        from skimage import data
        from skimage.feature import Cascade

        self._cascade = Cascade(data.lbp_frontal_face_cascade_filename())
        self.min_neighbour_number = min_neighbour_number
        self.threshold = threshold
        """The cascade gives no score (every face scores 1.0): a threshold above 1 drops all faces."""

    def detect(self, image: Image.Image) -> list[Face]:
        arr, factor = _working_copy(image, max_side=1024)
        found = self._cascade.detect_multi_scale(
            img=arr,
            scale_factor=1.2,
            step_ratio=1,
            min_size=(24, 24),
            max_size=(max(arr.shape[:2]),) * 2,
            min_neighbor_number=self.min_neighbour_number,
        )
        faces = [Face(float(d["c"]), float(d["r"]), float(d["width"]), float(d["height"]), 1.0) for d in found]
        if self.threshold is not None and self.threshold > 1.0:
            faces = []
        return _finish(faces, factor, image)


YUNET_HUB_FILE = "opencv/face_detection_yunet/face_detection_yunet_2023mar.onnx"
"""Default YuNet weights: ``<owner>/<repo>/<file>`` on the Hugging Face Hub (OpenCV Zoo, MIT)."""


class YuNetDetector:
    """OpenCV's YuNet CNN face detector through ``cv2.FaceDetectorYN`` (ONNX weights, ~230 kB).

    ``source`` is a local ``.onnx`` file or ``owner/repo/file`` on the Hub (default
    :data:`YUNET_HUB_FILE`).
    """

    name = "yunet"

    def __init__(self, *, source: str | None = None, threshold: float = 0.7, nms: float = 0.3) -> None:
        import cv2

        weights = resolve_model_file(source or YUNET_HUB_FILE, what="YuNet face detector weights")
        try:
            self._net = cv2.FaceDetectorYN.create(str(weights), "", (320, 320), threshold, nms, 5000)
        except cv2.error as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"{weights}: not a usable YuNet ONNX model ({first}); download face_detection_yunet_2023mar.onnx again"
            ) from None

    def detect(self, image: Image.Image) -> list[Face]:
        arr, factor = _working_copy(image, max_side=1280, min_side=320)
        bgr = np.ascontiguousarray(arr[:, :, ::-1])
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, found = self._net.detect(bgr)
        rows = [] if found is None else found
        faces = [Face(float(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[-1])) for r in rows]
        return _finish(faces, factor, image)
