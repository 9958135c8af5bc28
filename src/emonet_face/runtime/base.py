"""The encoder interface: what every runtime (PyTorch, OpenVINO, ONNX Runtime, an exported one-graph
model) offers, so that the scorer, the server, live streams and the Ray engine never ask which kind
of encoder they hold.

An encoder carries its own preprocessing (:meth:`Encoder.preprocess`, picklable and safe in
DataLoader workers) and maps a preprocessed batch to :class:`Encoded`: the image features, plus the
raw head outputs when the graph computes the heads itself (an exported folder). A runtime that holds
the heads says so with :attr:`Encoder.graph_heads` (head keys and neutral means), so a model can be
built from it alone.

Backends are registered by name (:func:`register_backend`), as face detectors are: ``--backend
NAME`` picks any registered one, and :func:`emonet_face.runtime.load_encoder` knows no backend by
its name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from PIL import Image

from emonet_face.errors import InputError

__all__ = [
    "Backend",
    "BackendRequest",
    "Encoded",
    "Encoder",
    "GraphHeads",
    "available_backends",
    "get_backend",
    "register_backend",
]


@dataclass
class Encoded:
    """One encoder call's result: features ``(N, D)`` float32, and raw head outputs ``(N, H)`` when the
    runtime computed the heads too (else ``None``: the model's heads score the features)."""

    features: torch.Tensor
    raw: torch.Tensor | None = None

    def head_outputs(self, heads: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Raw head outputs ``(N, H)``: the graph's own where it computed them, else ``heads(features)``."""
        return self.raw if self.raw is not None else heads(self.features)


@dataclass(frozen=True)
class GraphHeads:
    """Heads built into an encoder's graph: their keys in output order and their neutral means."""

    keys: tuple[str, ...]
    neutral_mean: torch.Tensor


@runtime_checkable
class Encoder(Protocol):
    """What every encoder runtime offers (see the module docstring).

    The attributes are read-only here (properties), so that a runtime may hold narrower types: an
    exported folder's ``graph_heads`` is never ``None``, a PyTorch encoder's always is.
    """

    @property
    def name(self) -> str:
        """The checkpoint (Hub id or folder) it was loaded from."""
        ...

    @property
    def revision(self) -> str | None:
        """The checkpoint's revision, where known."""
        ...

    @property
    def normalize(self) -> bool:
        """Features are L2-normalised (inside the graph for compiled runtimes)."""
        ...

    @property
    def graph_heads(self) -> GraphHeads | None:
        """Heads inside the graph (an exported folder), else ``None``."""
        ...

    @property
    def dim(self) -> int:
        """Feature width ``D``."""
        ...

    def preprocess(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """The checkpoint's own preprocessing: PIL images → batch tensors (CPU)."""
        ...

    def encode(self, batch: Mapping[str, torch.Tensor]) -> Encoded:
        """Features (and raw head outputs, where the graph has heads) for a preprocessed batch."""
        ...

    def describe(self) -> dict[str, Any]:
        """What produces the features: id, revision, preprocessing, backend, precision, device."""
        ...


@dataclass(frozen=True)
class BackendRequest:
    """Everything a backend needs to build an encoder from a resolved checkpoint."""

    ref: str
    checkpoint: Any
    """The resolved :class:`~emonet_face.runtime.encoder.EncoderCheckpoint`."""
    processor: Any
    device: torch.device
    precision: str
    revision: str | None
    normalize: bool
    compiled_dir: Path
    """The conversion cache's root folder."""
    converted: Path | None = None
    """A graph converted ahead of time (a bundle's), where the backend can use one."""


@dataclass(frozen=True)
class Backend:
    """A registered encoder runtime: its name, the package it needs and how it loads."""

    name: str
    load: Callable[[BackendRequest], Encoder]
    module: str | None = None
    """Python package that must be importable (``None``: always available)."""
    install_hint: str = ""
    """How to get ``module``, for the one-line error when it is missing."""
    cpu_only: bool = False
    takes_extra_inputs: bool = False
    """Runs checkpoints with extra inputs (SigLIP2 NaFlex); others fall back to PyTorch under ``auto``."""


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    """Make ``backend`` available as ``--backend NAME`` (a later registration replaces an earlier one)."""
    _REGISTRY[backend.name.lower()] = backend


def available_backends() -> tuple[str, ...]:
    """Registered backend names, in registration order."""
    return tuple(_REGISTRY)


def get_backend(name: str) -> Backend:
    """The registered backend ``name``; an unknown name is a one-line :class:`InputError`."""
    backend = _REGISTRY.get(name.lower())
    if backend is None:
        raise InputError(f"--backend {name}: use one of auto, {', '.join(_REGISTRY)}")
    return backend
