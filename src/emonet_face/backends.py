"""Old import path, kept working: the encoder backends now live in :mod:`emonet_face.runtime`
(:mod:`~emonet_face.runtime.backends`, :mod:`~emonet_face.runtime.device`)."""

from emonet_face.runtime.backends import *  # noqa: F403
from emonet_face.runtime.backends import __all__ as _backends_all
from emonet_face.runtime.device import *  # noqa: F403
from emonet_face.runtime.device import __all__ as _device_all

__all__ = [*_backends_all, *_device_all]
