"""Face detection and portrait crops: a pluggable detector (``--detector NAME``, default
BlazeFace shipped in the package), square crops with a margin like the training portraits
(optionally eye-aligned), and the ``--faces detect|none|auto`` policy."""

from emonet_face.faces.base import Detector, DetectorError, Face
from emonet_face.faces.blazeface import BlazeFaceDetector
from emonet_face.faces.crop import DEFAULT_MARGIN, crop_face, crop_placement, eye_angle, square_box
from emonet_face.faces.regions import EYE_COLUMNS, FACE_COLUMNS, FaceMode, Region, face_regions, looks_like_portrait
from emonet_face.faces.registry import DEFAULT_DETECTOR, available_detectors, get_detector, register_detector

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_MARGIN",
    "EYE_COLUMNS",
    "FACE_COLUMNS",
    "BlazeFaceDetector",
    "Detector",
    "DetectorError",
    "Face",
    "FaceMode",
    "Region",
    "available_detectors",
    "crop_face",
    "crop_placement",
    "eye_angle",
    "face_regions",
    "get_detector",
    "looks_like_portrait",
    "register_detector",
    "square_box",
]
