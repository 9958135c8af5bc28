"""Written explanation runs: ``OUT/explanations.parquet`` part by part, and the pictures.

:class:`ExplainOptions` says what to explain and where it goes (``emonet-face explain``'s own
options, checked when built), :func:`write_explanations` writes what
:func:`~emonet_face.explain.explain_refs` yields as it comes (a killed run keeps the parts written)
and counts the maps and errors. :func:`emonet_face.pipeline.explain_run` puts the two together with
a loaded model; a notebook can call either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emonet_face.errors import InputError
from emonet_face.explain.methods import DEFAULT_METHOD, DEFAULT_STEPS, METHODS
from emonet_face.explain.table import ExplainedImage, explanation_table
from emonet_face.faces import DEFAULT_MARGIN
from emonet_face.outputs import keep_errors, open_writer
from emonet_face.runfolder import claim_output, refuse_if_in_use

__all__ = ["EXPLANATIONS_FILE", "PICTURES_FOLDER", "ROWS_PER_PART", "ExplainOptions", "ExplainSummary", "write_explanations"]

EXPLANATIONS_FILE = "explanations.parquet"
PICTURES_FOLDER = "pictures"
ROWS_PER_PART = 64
"""Rows per Parquet part written while the run goes on (a killed run keeps the parts)."""
RERUN_HINT = "run the command again once fixed"
"""The end of a write error's message: an explanation run has no --resume."""


@dataclass(frozen=True)
class ExplainOptions:
    """What an explanation run explains and where it writes (``--out``, ``--emotions``, ``--top``,
    ``--method``, ``--batch-size``, ``--window``, ``--stride``, ``--steps``, ``--pictures``)."""

    out: Path
    """Folder for :data:`EXPLANATIONS_FILE` and :data:`PICTURES_FOLDER`."""
    emotions: str | None = None
    """Head keys or names for every face, comma-separated; ``None``: each face's ``top`` emotions."""
    top: int = 3
    method: str = DEFAULT_METHOD
    batch_size: int = 8
    window: int = 1
    stride: int | None = None
    steps: int = DEFAULT_STEPS
    pictures: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"--out {self.out}: is a file; give a folder for explanations.parquet and pictures/")
        if self.method not in METHODS:
            raise InputError(f"--method {self.method}: use one of {', '.join(METHODS)}")
        refuse_if_in_use(self.out)  # before the model loads; the run holds the folder while it writes

    @property
    def explainer_options(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`EmoNetFace.explain_images <emonet_face.pipeline.EmoNetFace.explain_images>`."""
        return {
            "emotions": self.emotions, "top": self.top, "method": self.method, "batch_size": self.batch_size,
            "window": self.window, "stride": self.stride, "steps": self.steps,
        }

    @property
    def settings(self) -> dict[str, Any]:
        """The settings recorded in the Parquet schema metadata (``explain``): those the method used."""
        settings: dict[str, Any] = {"method": self.method, "emotions": self.emotions}
        settings["top"] = None if self.emotions else self.top
        if self.method == "occlusion":
            settings.update(window=self.window, stride=self.stride or self.window)
        if self.method == "integrated-gradients":
            settings["steps"] = self.steps
        return settings


@dataclass
class ExplainSummary:
    """What a run wrote: maps (rows with a saliency map), rows with an error (the first ones'
    messages), pictures drawn (``None`` when pictures were not asked for)."""

    maps: int = 0
    errors: int = 0
    pictures: int | None = None
    out: Path | None = None
    first_errors: list[str] = field(default_factory=list)
    """The ``error`` of the first failed rows (each names its input), for a summary."""


def write_explanations(
    explained: Iterable[ExplainedImage],
    options: ExplainOptions,
    *,
    metadata: dict[str, Any] | None = None,
    margin: float = DEFAULT_MARGIN,
    align: bool = False,
) -> ExplainSummary:
    """Write each explained picture's rows to ``options.out`` (:data:`ROWS_PER_PART` rows per part)
    and, with ``options.pictures``, its pictures (``margin``/``align``: the run's face crops).
    ``metadata`` goes into the Parquet schema metadata, beside ``explain``: :attr:`ExplainOptions.settings`."""
    pictures = None
    if options.pictures:
        from emonet_face.explain.figures import MapPictureWriter  # matplotlib: only when drawing

        pictures = MapPictureWriter(options.out / PICTURES_FOLDER, margin=margin, align=align)
    summary = ExplainSummary(out=options.out)
    rows: list[dict] = []
    table = options.out / EXPLANATIONS_FILE
    with claim_output(options.out, then=RERUN_HINT), open_writer(
        table, metadata={**(metadata or {}), "explain": options.settings}, then=RERUN_HINT
    ) as writer:
        for image in explained:
            rows.extend(image.rows())
            if pictures is not None:
                pictures.add(image)
            if len(rows) >= ROWS_PER_PART:
                _write_part(writer, rows, summary)
                rows = []
        if rows:
            _write_part(writer, rows, summary)
    if pictures is not None:
        summary.pictures = len(pictures.written)
    return summary


def _write_part(writer: Any, rows: list[dict], summary: ExplainSummary) -> None:
    table = explanation_table(rows)
    writer.write(table)
    summary.maps += int(table["saliency"].notna().sum())
    summary.errors += keep_errors(summary.first_errors, table)
