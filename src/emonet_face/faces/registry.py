"""Face detectors by name, so that ``--detector NAME`` picks any detector without the pipeline
knowing about it: the built-in ones are registered here, and :func:`register_detector` adds more."""

from __future__ import annotations

from collections.abc import Callable

from emonet_face.faces.base import Detector, DetectorError
from emonet_face.faces.blazeface import BlazeFaceDetector
from emonet_face.faces.detectors import DlibHogDetector, HaarCascadeDetector, LbpCascadeDetector, YuNetDetector

__all__ = ["DEFAULT_DETECTOR", "available_detectors", "get_detector", "register_detector"]

DEFAULT_DETECTOR = "blazeface"

_REGISTRY: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str, factory: Callable[..., Detector]) -> None:
    """Make ``factory`` available as ``--detector name`` (later registrations replace earlier ones)."""
    _REGISTRY[name.lower()] = factory


def available_detectors() -> list[str]:
    """Registered detector names (registration does not import heavy packages)."""
    return sorted(_REGISTRY)


def get_detector(spec: str | Detector | None = None, **options: object) -> Detector:
    """Build a detector from ``NAME`` or ``NAME:ARGUMENT`` (e.g. ``yunet:/models/yunet.onnx``).

    The part after the first colon is passed to the factory as its ``source`` (a weights file,
    Hub id, …). A ready :class:`Detector` is returned unchanged.
    """
    if spec is not None and not isinstance(spec, str):
        return spec
    names = available_detectors()
    text = (spec or DEFAULT_DETECTOR).strip()
    name, _, source = text.partition(":")
    factory = _REGISTRY.get(name.lower())
    if factory is None:
        raise DetectorError(f"--detector {text}: unknown face detector; choose one of {', '.join(names)}")
    if source:
        options["source"] = source
    return factory(**options)


register_detector("blazeface", BlazeFaceDetector)
register_detector("dlib", DlibHogDetector)
register_detector("haar", HaarCascadeDetector)
register_detector("lbp", LbpCascadeDetector)
register_detector("yunet", YuNetDetector)
