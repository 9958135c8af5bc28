""":class:`EmoNetFace`: the public face of the pipeline. It holds a loaded model and delegates:
loading to :mod:`~emonet_face.pipeline.loading`, rows to the one :class:`~emonet_face.pipeline.scorer.Scorer`,
the batched loop to :mod:`~emonet_face.pipeline.batching`, runs to :mod:`~emonet_face.pipeline.runs`
and explanations to :mod:`emonet_face.explain`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from emonet_face.errors import InputError, ModelLoadError
from emonet_face.explain import (
    DEFAULT_METHOD,
    GRADIENT_METHODS,
    ExplainedImage,
    Explainer,
    explain_refs,
    explanation_table,
)
from emonet_face.heads import FusedHeads
from emonet_face.inputs.sources import Ids, ImageSource
from emonet_face.media import Expand, Item, media_stages, prepare_ref
from emonet_face.options import DEFAULT_BATCH_SIZE, FaceOptions, MediaOptions, ModelOptions
from emonet_face.pipeline.batching import item_groups
from emonet_face.pipeline.loading import LoadedModel, describe_loaded, load_model
from emonet_face.pipeline.refs import Ref, input_refs
from emonet_face.pipeline.runs import RunOptions, RunSummary, execute_run
from emonet_face.pipeline.scorer import Annotate, Scorer
from emonet_face.runtime import Encoder, ImageEncoder, differentiable_encoder, quiet_transformers, resolve_device

__all__ = ["EmoNetFace"]

Faces = FaceOptions | str | None
"""Face options, or just the ``--faces`` mode (``"auto"``, ``"detect"``, ``"none"``)."""


def _face_options(faces: Faces) -> FaceOptions:
    return faces if isinstance(faces, FaceOptions) else FaceOptions() if faces is None else FaceOptions(faces)


def _stages(
    refs: list[Ref], faces: Faces, media: MediaOptions | None, source: Any, expand: Any
) -> tuple[ImageSource, Expand | None]:
    """A run's source and face stages: built from the options as the CLI builds them, unless given
    (then a missing ``expand`` means whole images)."""
    if source is not None or expand is not None:
        built_source, _ = media_stages([ref for _, ref in refs], FaceOptions("none"), media)
        return source or built_source, expand
    return media_stages([ref for _, ref in refs], _face_options(faces), media)


def _model_options(model: Any, encoder: Any, heads: Any, options: dict[str, Any]) -> ModelOptions:
    """``from_pretrained``'s arguments as :class:`ModelOptions` (a given ``options=`` first, then the
    names and paths among ``model``/``encoder``/``heads``, then the other keywords)."""
    given = options.pop("options", None)
    named = {k: str(v) for k, v in {"model": model, "encoder": encoder, "heads": heads}.items() if isinstance(v, (str, Path))}
    return ModelOptions(**{**(given.load_kwargs if given else {}), **named, **options})


class _Features:
    """An ``annotate`` hook that keeps each row's features; a row without any (an unreadable input)
    raises its error, since a feature matrix has no room for error messages."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def __call__(self, table: pd.DataFrame, matrix: np.ndarray) -> pd.DataFrame:
        for path, error, row in zip(table["path"], table["error"], matrix):
            if np.isnan(row).any():
                raise InputError(error or f"{path}: nothing to encode")
            self.rows.append(row)
        return table

    def matrix(self, dim: int) -> np.ndarray:
        return np.stack(self.rows) if self.rows else np.zeros((0, dim), np.float32)


def _id_rows(ids: pd.DataFrame | Sequence[Ids] | Sequence[str] | None, n: int) -> list[Ids]:
    """Identifier columns for ``n`` cached embeddings: a DataFrame's columns, dicts, or paths; default ``index``."""
    if ids is None:
        return [{"index": i} for i in range(n)]
    if isinstance(ids, pd.DataFrame):
        return ids.to_dict("records")
    return [dict(i) if isinstance(i, dict) else {"path": str(i)} for i in ids]


class EmoNetFace(nn.Module):
    """SigLIP2 image encoder + fused Empathic-Insight-Face heads → EmoNet-Face score tables.

    Build with :meth:`from_pretrained`. ``encoder`` may be ``None`` for a heads-only model that scores
    cached embeddings (:meth:`score`), and ``heads`` may be ``None`` when the encoder is an exported
    one-graph model that computes the heads itself.
    """

    def __init__(self, heads: FusedHeads | None, encoder: Encoder | None = None, loaded: LoadedModel | None = None) -> None:
        super().__init__()
        self.scorer = Scorer(encoder, heads.eval() if heads is not None else None)
        self.encoder = encoder
        self.heads = self.scorer.heads
        self.loaded = loaded or LoadedModel(self.heads, encoder, "")
        self.heads_ref, self.bundle = self.loaded.heads_ref, self.loaded.bundle
        self._torch_twin: list[ImageEncoder] = []  # a list: not registered as a submodule

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path | None = None,
        *,
        encoder: str | Path | Encoder | None = None,
        heads: str | Path | FusedHeads | None = None,
        with_encoder: bool = True,
        **options: Any,
    ) -> EmoNetFace:
        """Load a released model (or your own heads/encoder, a bundle, or an exported folder) ready to score.

        Args:
            model: released model name from :data:`emonet_face.hub.MODELS` (``"large"``, the default, or ``"small"``);
                a bundle folder written by ``emonet-face download`` (encoder + heads, checked against its
                manifest, no network); or a folder written by ``emonet-face export`` (one graph).
            encoder: a Hub id (``owner/name``, optionally ``@revision``), a local folder, or a loaded
                encoder (:func:`emonet_face.runtime.load_encoder`). Default: the model's SigLIP2 encoder.
            heads: a Hub id (optionally ``@revision``), a local folder in the released layout
                (``model_<key>_best.pth`` + neutral stats) or our safetensors export, or a :class:`FusedHeads`.
            with_encoder: ``False`` loads the heads only (for :meth:`score` on cached embeddings).
            **options: the other :class:`~emonet_face.options.ModelOptions` fields: ``revision`` (of the
                heads), ``cache_dir`` (Hugging Face cache), ``local_files_only`` (cache only; also
                ``HF_HUB_OFFLINE=1``), ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``; default CUDA when
                available), ``backend`` (``"auto"``: PyTorch on CUDA, OpenVINO on CPU; ``"torch"``,
                ``"openvino"``, ``"onnx"`` or a registered one), ``dtype`` (``None``/``"auto"``: bfloat16
                where the hardware computes it natively, else float32; ``"float32"`` exact; ``"bfloat16"``,
                ``"float16"``, ``"int8"``; heads always run in float32), ``normalize`` (L2-normalise
                features, as the released usage does), ``compiled_dir`` (converted-encoder cache).
                A ready :class:`ModelOptions` may be passed as ``options=``.

        Raises:
            ModelLoadError: unknown model name, missing/unsafe weights, offline cache miss, or an
                encoder whose feature width does not match the heads.
            InputError: an option out of range (named as its CLI option).
        """
        opts = _model_options(model, encoder, heads, options)
        with quiet_transformers():  # restored after: a notebook's own transformers logging stays as it was
            loaded = load_model(
                opts,
                encoder=None if isinstance(encoder, (str, Path)) else encoder,
                heads=heads if isinstance(heads, FusedHeads) else None,
                with_encoder=with_encoder,
            )
        result = cls(loaded.heads, loaded.encoder, loaded)
        return result.to(resolve_device(opts.device)) if loaded.heads is not None else result

    # --- what it is ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.heads.neutral_mean.device if self.heads is not None else torch.device("cpu")

    @property
    def keys(self) -> tuple[str, ...]:
        return self.scorer.keys

    def describe(self) -> dict[str, Any]:
        """What produces the scores (encoder with backend, precision and device; heads): written into
        Parquet schema metadata by ``predict``."""
        return describe_loaded(self.loaded, self.keys)

    # --- scoring -------------------------------------------------------------------------------
    def raw_scores(self, embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
        """Raw head outputs ``(N, H)`` (float64) for embeddings ``(N, D)``."""
        return self.scorer.raw_scores(embeddings)

    def score(
        self, embeddings: np.ndarray | torch.Tensor, ids: pd.DataFrame | Sequence[Ids] | Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Score cached image features ``(N, D)`` (already normalised as the encoder produced them).

        ``ids`` become the leading columns: a DataFrame (its columns), a list of dicts, or a list of
        strings (a ``path`` column). Default: an ``index`` column ``0..N-1``.
        """
        return self.scorer.score_embeddings(embeddings, _id_rows(ids, len(embeddings)))

    def predict(self, images: Any, *, faces: Faces = None, **options: Any) -> pd.DataFrame:
        """Score images and videos: one row per face (or per image with ``faces="none"``), as
        ``emonet-face predict`` gives them.

        ``images``: paths (files, folders, globs, videos, WebDataset/Parquet shards), PIL images, numpy
        arrays (``H × W × 3`` uint8 RGB), or a list of them. ``faces``: ``"auto"`` (default: detect;
        a face-less close-up portrait is scored whole), ``"detect"``, ``"none"``, or
        :class:`~emonet_face.options.FaceOptions`. Other options as :meth:`predict_batches`. Unreadable
        inputs become rows with an ``error``; see :mod:`emonet_face.outputs` for the columns.
        """
        frames = list(self.predict_batches(images, faces=faces, **options))
        if not frames:
            return self.scorer.rows([], np.zeros((0, len(self.keys))), [])
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def predict_batches(
        self, images: Any, *, faces: Faces = None, media: MediaOptions | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE, num_workers: int | None = None, progress: bool | None = None,
        source: ImageSource | None = None, expand: Expand | None = None,
        skip: set[tuple] | frozenset[tuple] = frozenset(), annotate: Annotate | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Like :meth:`predict`, batch by batch (for incremental writing): each frame holds complete
        inputs only, about ``batch_size`` rows.

        ``media``: video and shard options (``fps``, ``max_frames``…). ``source`` / ``expand`` replace
        the stages built from ``faces`` and ``media``. ``skip``: resume keys
        (:func:`emonet_face.outputs.row_key`) already done. ``annotate(table, features)`` adds columns
        from each row's features before the batch is yielded (e.g. a :class:`~emonet_face.tracking.FaceTracker`).
        """
        yield from self._scored_batches(
            input_refs(images), faces=faces, media=media, batch_size=batch_size, num_workers=num_workers,
            progress=progress, source=source, expand=expand, skip=skip, annotate=annotate,
        )

    def _scored_batches(
        self, refs: list[Ref], *, faces: Faces = None, media: MediaOptions | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE, num_workers: int | None = None, progress: bool | None = None,
        source: ImageSource | None = None, expand: Expand | None = None, skip: Any = frozenset(),
        annotate: Annotate | None = None,
    ) -> Iterator[pd.DataFrame]:
        source, expand = _stages(refs, faces, media, source, expand)
        encoder = self.scorer.require_encoder()
        groups = item_groups(
            refs, source=source, preprocess=encoder.preprocess, expand=expand, batch_size=batch_size,
            num_workers=num_workers, progress=progress, skip=skip, pin_memory=self.device.type == "cuda",
        )
        for group in groups:
            yield self.scorer.score(group, batch_size=batch_size, annotate=annotate)

    def run(
        self, images: Any, run: RunOptions | None = None, *, faces: Faces = None, **options: Any
    ) -> RunSummary:
        """Faces → scores → tracks → pictures → a written table, with resume: ``emonet-face predict``'s run.

        ``run``: :class:`~emonet_face.pipeline.RunOptions` (``out``, ``resume``, ``tracks_out``,
        ``save_vis``, ``smooth``), or pass those as keywords. Other keywords as :meth:`predict_batches`.
        Returns a :class:`~emonet_face.pipeline.RunSummary` (rows, errors, skipped; the table when
        nothing is written).
        """
        run_fields = {k: options.pop(k) for k in ("out", "resume", "tracks_out", "save_vis", "smooth") if k in options}
        run = RunOptions(**run_fields) if run is None else run
        face_options = _face_options(faces)
        refs = input_refs(images)

        def batches(skip: set[tuple], annotate: Annotate | None) -> Iterator[pd.DataFrame]:
            return self._scored_batches(refs, faces=face_options, skip=skip, annotate=annotate, **options)

        return execute_run(
            batches, [ref for _, ref in refs], run, keys=self.keys, faces=face_options, metadata=self.describe()
        )

    def prepare(self, ids: Ids, ref: Any, *, source: ImageSource | None = None, expand: Expand | None = None) -> list[Item]:
        """Decode, expand and preprocess one input in the calling thread: its items exactly as
        :meth:`predict` builds them (one per face/frame, error rows included)."""
        source = source or ImageSource()
        preprocess = self.scorer.require_encoder().preprocess
        return [item for sub in source.plan(ids, ref) for item in prepare_ref(*sub, source, preprocess, expand)]

    def encode(self, images: Any, *, batch_size: int = DEFAULT_BATCH_SIZE, **options: Any) -> np.ndarray:
        """Image features ``(N, D)`` float32, one row per input (whole images), in input order.

        Raises :class:`InputError` for the first input that cannot be decoded (an array has no room for
        error messages; use :meth:`predict` to get error rows instead).
        """
        features = _Features()
        for _ in self.predict_batches(images, faces="none", batch_size=batch_size, annotate=features, **options):
            pass
        return features.matrix(self.scorer.require_encoder().dim)

    # --- explanations --------------------------------------------------------------------------
    def explain(self, inputs: Any, **options: Any) -> pd.DataFrame:
        """Which patches of each crop drive its emotions: one row per (input, face, emotion).

        Options as :meth:`explain_images`. Columns: :mod:`emonet_face.explain.table`.
        """
        return explanation_table([row for image in self.explain_images(inputs, **options) for row in image.rows()])

    def explainer(self, method: str = DEFAULT_METHOD, *, batch_size: int = 8, **options: Any) -> Explainer:
        """The :class:`~emonet_face.explain.Explainer` for this model's encoder and heads."""
        encoder = self.scorer.require_encoder()
        if self.heads is None:
            raise ModelLoadError(
                f"{self.heads_ref}: an exported one-graph model cannot be explained; load the model with its heads "
                "(--model large or small)"
            )
        twin = self.torch_encoder() if method in GRADIENT_METHODS else None
        return Explainer(encoder, self.heads, method=method, torch_encoder=twin, batch_size=batch_size, **options)

    def explain_images(
        self,
        inputs: Any,
        *,
        emotions: str | Sequence[str] | None = None,
        top: int = 3,
        method: str = DEFAULT_METHOD,
        batch_size: int = 8,
        faces: Faces = None,
        media: MediaOptions | None = None,
        source: ImageSource | None = None,
        expand: Expand | None = None,
        progress: bool | None = None,
        explainer: Explainer | None = None,
        **options: Any,
    ) -> Iterator[ExplainedImage]:
        """One :class:`~emonet_face.explain.ExplainedImage` per decoded picture (the picture, its crops
        and their maps: what ``emonet-face explain`` draws).

        ``emotions``: head keys or names for every crop (default: each crop's ``top`` emotions as
        :meth:`predict` ranks them). ``method``: ``integrated-gradients`` (the PyTorch encoder, loaded
        beside a compiled one when needed) or ``occlusion`` (every backend). ``batch_size``: crops per
        forward pass. ``options``: ``steps`` (integrated gradients), ``window``/``stride`` (occlusion).
        ``faces``/``media``/``source``/``expand`` as for :meth:`predict_batches`. ``explainer``: a ready
        one (then ``method``, ``batch_size`` and ``options`` are its own).
        """
        explainer = explainer or self.explainer(method, batch_size=batch_size, **options)
        refs = input_refs(inputs)
        source, expand = _stages(refs, faces, media, source, expand)
        yield from explain_refs(
            refs, source=source, expand=expand, explainer=explainer, keys=self.keys, emotions=emotions, top=top,
            progress=progress,
        )

    def torch_encoder(self) -> ImageEncoder:
        """The PyTorch encoder gradient methods differentiate: the model's own, or a copy of the
        compiled one loaded from the same checkpoint (once, at the model's precision)."""
        if not self._torch_twin:
            options = self.loaded.options
            self._torch_twin.append(
                differentiable_encoder(
                    self.scorer.require_encoder(),
                    device=self.device,
                    dtype=options.dtype,
                    cache_dir=options.cache_dir,
                    local_files_only=True if self.bundle is not None else options.local_files_only,
                )
            )
        return self._torch_twin[0]
