"""Images (or cached embeddings) → EmoNet-Face score table: :class:`EmoNetFace` and its batched loop.

This module only orchestrates. The stages an input goes through (source, face expansion,
preprocessing) and the :class:`~emonet_face.media.Item` they produce live in :mod:`emonet_face.media`
and :mod:`emonet_face.inputs`; encoders in :mod:`emonet_face.runtime`; heads in
:mod:`emonet_face.heads`; Hub resolution in :mod:`emonet_face.hub`; the output table in
:mod:`emonet_face.outputs`. Here they are put together: decoding and preprocessing run in DataLoader
workers (order preserved) while the main process encodes batches (``torch.inference_mode``) and the
fused heads score them; a failure in a stage becomes an error row for that input and the rest of
the batch is scored.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from emonet_face.bundle import Bundle, is_bundle, load_bundle_encoder, open_bundle
from emonet_face.errors import InputError, ModelLoadError
from emonet_face.explain import (
    DEFAULT_METHOD,
    GRADIENT_METHODS,
    ExplainedCrop,
    ExplainedImage,
    Explainer,
    explanation_table,
    parse_emotions,
    ranked_emotions,
)
from emonet_face.heads import FusedHeads
from emonet_face.hub import MODELS, fetch_heads, split_revision
from emonet_face.inputs import discover_inputs
from emonet_face.inputs.shards import is_shard, json_columns
from emonet_face.inputs.sources import Ids, ImageSource
from emonet_face.media import (
    Expand,
    Item,
    MediaSource,
    Preprocess,
    error_text,
    feature_matrix,
    prepare_item,
    prepare_ref,
)
from emonet_face.outputs import build_score_table, row_key
from emonet_face.runtime import (
    ExportedGraph,
    ImageEncoder,
    is_exported,
    load_encoder,
    resolve_device,
    resolve_dtype,
)

# Besides EmoNetFace: names that lived here before the stages moved to media/inputs/runtime, kept
# importable from this module for code written against earlier versions.
__all__ = [
    "EmoNetFace",
    "Expand",
    "ImageSource",
    "Item",
    "feature_matrix",
    "prepare_ref",
    "resolve_device",
    "resolve_dtype",
]

Annotate = Callable[[pd.DataFrame, np.ndarray], pd.DataFrame]
"""After scoring: ``(score table, per-row image features)`` → the table with added columns (e.g. ``track``)."""
Encoder = Any
"""An encoder backend: :class:`~emonet_face.runtime.ImageEncoder`, :class:`~emonet_face.runtime.CompiledEncoder`
or :class:`~emonet_face.runtime.ExportedGraph` (``preprocess``, ``__call__``, ``dim``, ``describe``)."""


class _PreparedInputs(Dataset):
    """Map-style dataset: ref ``i`` → list of :class:`Item` (decoded, expanded, preprocessed).

    Runs in DataLoader workers, so decoding and resizing overlap the model; order is preserved.
    """

    def __init__(
        self,
        refs: Sequence[tuple[Ids, Any]],
        source: ImageSource,
        preprocess: Preprocess,
        expand: Expand | None = None,
        skip: frozenset[tuple] | set[tuple] = frozenset(),
    ) -> None:
        self.refs = list(refs)
        self.source = source
        self.preprocess = preprocess
        self.expand = expand
        self.skip = skip

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> list[Item]:
        ids, ref = self.refs[index]
        return prepare_ref(ids, ref, self.source, self.preprocess, self.expand, self.skip)


def _as_is(batch: Any) -> Any:
    return batch


def _input_refs(images: Any) -> list[tuple[Ids, Any]]:
    """Paths (files, folders, globs) and PIL images → ``(ids, ref)``; folders and globs expand."""
    if isinstance(images, (str, Path, Image.Image)):
        images = [images]
    refs: list[tuple[Ids, Any]] = []
    for index, image in enumerate(images):
        if isinstance(image, Image.Image):
            name = getattr(image, "filename", "") or f"<image {index}>"
            refs.append(({"path": str(name)}, image))
            continue
        text = str(image)
        path = Path(text).expanduser()
        if path.is_dir() or (not path.exists() and (glob.has_magic(text) or "{" in text)):
            refs.extend(({"path": str(p)}, p) for p in discover_inputs([text]))
        else:  # a named file is kept: missing or unreadable ones become error rows
            refs.append(({"path": str(path)}, path))
    return refs


def _default_source(inputs: Sequence[tuple[Ids, Any]]) -> ImageSource:
    """Images: :class:`ImageSource`; with shards among the inputs, a source that plans and reads them."""
    shards = [ref for _, ref in inputs if isinstance(ref, Path) and is_shard(ref)]
    if not shards:
        return ImageSource()
    return MediaSource(shard_columns=True, json_map=json_columns(shards))


def _default_workers() -> int:
    return max(0, min(4, (os.cpu_count() or 1) - 1))


# --- the model -----------------------------------------------------------------------------------
class EmoNetFace(nn.Module):
    """SigLIP2 image encoder + fused Empathic-Insight-Face heads → EmoNet-Face score tables.

    Build with :meth:`from_pretrained`. ``encoder`` may be ``None`` for a heads-only model that
    scores cached embeddings (:meth:`score`), and ``heads`` may be ``None`` when the encoder is an
    exported one-graph model (:class:`~emonet_face.runtime.ExportedGraph`) that computes the heads itself.
    """

    def __init__(self, heads: FusedHeads | None, encoder: Encoder | None = None) -> None:
        super().__init__()
        if heads is None and not hasattr(encoder, "keys"):
            raise ModelLoadError("no heads: pass FusedHeads, or an exported one-graph model as the encoder")
        if heads is not None and encoder is not None and encoder.dim and encoder.dim != heads.in_dim:
            raise ModelLoadError(
                f"encoder {encoder.name or ''} gives {encoder.dim}-dim features but the heads expect {heads.in_dim}; "
                "use the encoder the heads were trained on (--encoder)"
            )
        self.encoder = encoder
        self.heads = heads.eval() if heads is not None else None
        self.heads_ref = ""
        self.bundle: Bundle | None = None
        self.load_options: dict[str, Any] = {}
        """How :meth:`from_pretrained` found the encoder (cache, offline, precision): a PyTorch copy
        for gradient explanations is loaded the same way."""
        self._torch_twin: list[ImageEncoder] = []  # a list: not registered as a submodule

    @classmethod
    def from_pretrained(
        cls,
        model: str = "large",
        *,
        encoder: str | Path | Encoder | None = None,
        heads: str | Path | FusedHeads | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        normalize: bool = True,
        with_encoder: bool = True,
        backend: str = "auto",
        compiled_dir: str | Path | None = None,
    ) -> EmoNetFace:
        """Load a released model (or your own heads/encoder, or an exported folder) ready to score images.

        Args:
            model: released model name from :data:`emonet_face.hub.MODELS` (``"large"``, ``"small"``),
                picking the default heads repository and its encoder; a bundle folder written by
                ``emonet-face download`` (encoder + heads, checked against its manifest, no network:
                see :mod:`emonet_face.bundle`); or a folder written by ``emonet-face export`` (one
                graph, run by ONNX Runtime or OpenVINO).
            encoder: override the encoder: a Hub id (``owner/name``, optionally ``@revision``), a
                local folder, or a loaded encoder (:func:`emonet_face.runtime.load_encoder`).
                Default: the model's SigLIP2 encoder.
            heads: override the heads: a Hub id (optionally ``@revision``), a local folder in the
                released layout (``model_<key>_best.pth`` + neutral stats) or our safetensors
                export, or a :class:`FusedHeads`.
            revision: Hub revision (branch, tag or commit) of the heads repository.
            cache_dir: Hugging Face cache folder (default: the HF cache, ``HF_HOME``).
            local_files_only: use the local cache only (also on with ``HF_HUB_OFFLINE=1``); a model
                not in the cache is a one-line :class:`ModelLoadError` saying how to get it.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; default CUDA when available.
            dtype: encoder precision: ``None``/``"auto"`` (bfloat16 where the hardware computes it
                natively: CPUs with AVX512_BF16 or AMX, bf16 GPUs; float32 elsewhere), ``"float32"``
                (exact, on every backend), ``"bfloat16"``, ``"float16"``. Heads always run in float32:
                they are tiny and the released scores are float32.
            normalize: L2-normalise image features before the heads (as the released usage does).
            with_encoder: ``False`` loads the heads only (for :meth:`score` on cached embeddings).
            backend: encoder backend, ``"auto"`` (PyTorch on CUDA, OpenVINO on CPU), ``"torch"``,
                ``"openvino"`` or ``"onnx"`` (ONNX Runtime); see :func:`emonet_face.runtime.load_encoder`.
            compiled_dir: cache folder for converted encoders (default: ``$EMONET_FACE_CACHE`` or
                ``~/.cache/emonet-face``).

        Raises:
            ModelLoadError: unknown model name, missing/unsafe weights, offline cache miss, or an
                encoder whose feature width does not match the heads.
        """
        if model not in MODELS and is_exported(model):
            if encoder is not None or heads is not None:
                raise ModelLoadError(f"{model}: an exported folder holds its encoder and heads; drop --encoder/--heads")
            if resolve_device(device).type != "cpu":
                raise InputError(f"{model}: an exported folder runs on the CPU (ONNX Runtime / OpenVINO); use --device cpu")
            result = cls(None, ExportedGraph(model, backend=backend, dtype=None if dtype is None else str(dtype)))
            result.heads_ref = str(model)
            return result
        if model not in MODELS and is_bundle(model):
            if encoder is not None or heads is not None or revision is not None:
                raise ModelLoadError(
                    f"{model}: a bundle holds its encoder and heads at fixed revisions; drop --encoder/--heads/--revision"
                )
            bundle = open_bundle(model, verify=False)  # loading checks each file it reads
            image_encoder = None
            if with_encoder:
                image_encoder = load_bundle_encoder(
                    bundle, backend=backend, device=device, dtype=dtype, normalize=normalize, compiled_dir=compiled_dir
                )
            result = cls(bundle.load_heads(), image_encoder).to(resolve_device(device))
            result.heads_ref, result.bundle = str(bundle.heads_dir), bundle
            result.load_options = {"local_files_only": True, "dtype": dtype}
            return result
        if model not in MODELS:
            raise ModelLoadError(
                f"{model}: unknown model; choose one of {', '.join(MODELS)}, an `emonet-face download` bundle "
                "or an `emonet-face export` folder"
            )
        spec = MODELS[model]
        dev = resolve_device(device)
        if isinstance(heads, FusedHeads):
            fused, heads_ref = heads, "<FusedHeads>"
        else:
            heads_ref, heads_rev = split_revision(heads or spec.heads, revision)
            fused = fetch_heads(heads_ref, heads_rev, cache_dir=cache_dir, local_files_only=local_files_only)
        image_encoder: Encoder | None = None
        if encoder is not None and not isinstance(encoder, (str, Path)):
            image_encoder = encoder
        elif with_encoder:
            enc_ref, enc_rev = split_revision(encoder or spec.encoder, None)
            image_encoder = load_encoder(
                enc_ref,
                backend=backend,
                device=dev,
                dtype=dtype,
                revision=enc_rev,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                normalize=normalize,
                compiled_dir=compiled_dir,
            )
        result = cls(fused, image_encoder).to(dev)
        result.heads_ref = str(heads_ref)
        result.load_options = {"cache_dir": cache_dir, "local_files_only": local_files_only, "dtype": dtype}
        return result

    # --- properties ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.heads.neutral_mean.device if self.heads is not None else torch.device("cpu")

    @property
    def keys(self) -> tuple[str, ...]:
        return self.heads.keys if self.heads is not None else self.encoder.keys  # type: ignore[union-attr]

    def describe(self) -> dict[str, Any]:
        """What produces the scores (encoder with backend, precision and device; heads): written into
        Parquet schema metadata by ``predict``."""
        encoder = self.encoder.describe() if self.encoder is not None else {}
        described = {"encoder": encoder, "heads": self.heads_ref, "keys": list(self.keys)}
        return described | ({"bundle": self.bundle.describe()} if self.bundle is not None else {})

    def _require_encoder(self) -> Encoder:
        if self.encoder is None:
            raise ModelLoadError("this model was loaded without an encoder; load it with with_encoder=True")
        return self.encoder

    # --- scoring -------------------------------------------------------------------------------
    @torch.inference_mode()
    def raw_scores(self, embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
        """Raw head outputs ``(N, H)`` (float64) for embeddings ``(N, D)``."""
        if not isinstance(embeddings, torch.Tensor):
            array = np.asarray(embeddings)
            if not array.flags.writeable:  # memory-mapped stores: read-only, and we only read
                array = array.copy()
            embeddings = torch.from_numpy(array)
        if self.heads is None:
            raise ModelLoadError(
                "an exported one-graph model scores images only; load the heads (--heads) to score embeddings"
            )
        emb = embeddings
        if emb.ndim != 2 or emb.shape[1] != self.heads.in_dim:
            raise InputError(
                f"embeddings have shape {tuple(emb.shape)} but the heads expect (N, {self.heads.in_dim}); "
                "use embeddings from the encoder these heads were trained on"
            )
        emb = emb.to(self.device, torch.float32)
        return self.heads(emb).double().cpu().numpy()

    def score(
        self,
        embeddings: np.ndarray | torch.Tensor,
        ids: pd.DataFrame | Sequence[Ids] | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Score cached image features ``(N, D)`` (already normalised as the encoder produced them).

        ``ids`` become the leading columns: a DataFrame (its columns), a list of dicts, or a list
        of strings (a ``path`` column). Default: an ``index`` column ``0..N-1``.
        """
        raw = self.raw_scores(embeddings)
        n = raw.shape[0]
        if ids is None:
            id_rows: list[Ids] = [{"index": i} for i in range(n)]
        elif isinstance(ids, pd.DataFrame):
            id_rows = ids.to_dict("records")
        else:
            id_rows = [dict(i) if isinstance(i, dict) else {"path": str(i)} for i in ids]
        if len(id_rows) != n:
            raise InputError(f"{len(id_rows)} ids for {n} embeddings; pass one id per row")
        return build_score_table(id_rows, raw, [None] * n, self.keys, self._means())

    def predict(
        self,
        images: Any,
        *,
        batch_size: int = 16,
        num_workers: int | None = None,
        progress: bool | None = None,
        source: ImageSource | None = None,
        expand: Expand | None = None,
    ) -> pd.DataFrame:
        """Score images: paths (files, folders, globs) or PIL images → one row per scored item.

        Unreadable inputs become rows with an ``error`` message; see :mod:`emonet_face.outputs`
        for the columns. ``progress=None`` shows a bar only on a terminal.
        """
        frames = list(
            self.predict_batches(
                images, batch_size=batch_size, num_workers=num_workers, progress=progress, source=source, expand=expand
            )
        )
        if not frames:
            return build_score_table([], np.zeros((0, len(self.keys))), [], self.keys, self._means())
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def predict_batches(
        self,
        images: Any,
        *,
        batch_size: int = 16,
        num_workers: int | None = None,
        progress: bool | None = None,
        source: ImageSource | None = None,
        expand: Expand | None = None,
        skip: set[tuple] | frozenset[tuple] = frozenset(),
        annotate: Annotate | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Like :meth:`predict` but yields the table batch by batch (for incremental writing).

        Every yielded frame holds only complete inputs (all faces/frames of an input together),
        about ``batch_size`` rows. ``skip`` holds resume keys (:func:`emonet_face.outputs.row_key`)
        already done; those inputs are not scored again. ``annotate(table, features)`` may add
        columns from each row's image features ``(N, D)`` (NaN rows where nothing was scored)
        before the batch is yielded; it runs in this process, batch after batch, in input order
        (e.g. :class:`emonet_face.tracking.FaceTracker`).
        """
        for items, features in self._feature_batches(images, batch_size, num_workers, progress, source, expand, skip):
            table = self.items_table(items, self.head_scores(features, items))
            if annotate is not None:
                table = annotate(table, feature_matrix(features))
            yield table

    # --- seams for callers that batch items themselves (the HTTP server, the Ray engine) ---------
    def score_items(self, items: Sequence[Item], *, threads: int = 1) -> pd.DataFrame:
        """Preprocess (crops left in :attr:`Item.image`, in ``threads`` threads), encode and score
        prepared items in one batch: the encoder side of :meth:`predict_batches`, for engines that
        decode elsewhere."""
        encoder = self._require_encoder()

        def preprocess(item: Item) -> None:
            prepared = prepare_item(item.ids, item.image, encoder.preprocess)
            item.inputs, item.error, item.image = prepared.inputs, prepared.error, None

        todo = [item for item in items if item.image is not None]
        if threads > 1 and len(todo) > 1:  # PIL resizing and numpy release the GIL
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(preprocess, todo))
        else:
            for item in todo:
                preprocess(item)
        pairs = self._encode_items(encoder, list(items))
        scored = [i for i, _ in pairs]
        return self.items_table(scored, self.head_scores([f for _, f in pairs], scored))

    def prepare(
        self, ids: Ids, ref: Any, *, source: ImageSource | None = None, expand: Expand | None = None
    ) -> list[Item]:
        """Stages 1–4 for one input, in the calling thread: its :class:`Item` list exactly as
        :meth:`predict` builds it (one per face/frame, error rows included). ``ids`` is the input's
        identifier dict (``{"path": name}``), ``ref`` what ``source`` decodes (a path, a PIL image)."""
        source = source or ImageSource()
        preprocess = self._require_encoder().preprocess
        return [item for sub in source.plan(ids, ref) for item in prepare_ref(*sub, source, preprocess, expand)]

    def encode_items(self, items: Sequence[Item]) -> list[torch.Tensor | None]:
        """Stage 5a: image features for ``items`` in one encoder batch (``None`` where an item has
        nothing to encode)."""
        return [feature for _, feature in self._encode_items(self._require_encoder(), list(items))]

    def head_scores(self, features: Sequence[torch.Tensor | None], items: Sequence[Item] | None = None) -> np.ndarray:
        """Stage 5b: raw head outputs ``(N, H)`` in one call; NaN rows where a feature is ``None``.
        (The large released heads hold ~80 M weights: one call per batch, not per row, matters.)
        ``items`` (the features' items): an exported one-graph model has put its raw outputs there."""
        raw = np.full((len(features), len(self.keys)), np.nan)
        rows = [i for i, f in enumerate(features) if f is not None]
        if rows and items is not None and items[rows[0]].raw is not None:  # the encoder ran the heads too
            raw[rows] = torch.stack([items[i].raw for i in rows]).double().cpu().numpy()  # type: ignore[misc]
        elif rows:
            raw[rows] = self.raw_scores(torch.stack([features[i] for i in rows]))
        return raw

    def items_table(self, items: Sequence[Item], raw: np.ndarray) -> pd.DataFrame:
        """The score table for ``items`` and their raw head outputs (one row per item, in order)."""
        return build_score_table([it.ids for it in items], raw, [it.error for it in items], self.keys, self._means())

    def encode(
        self, images: Any, *, batch_size: int = 16, num_workers: int | None = None, progress: bool | None = None
    ) -> np.ndarray:
        """Image features ``(N, D)`` float32, one row per input, in input order.

        Raises :class:`InputError` for the first input that cannot be decoded (an array has no
        room for error messages; use :meth:`predict` to get error rows instead).
        """
        out: list[torch.Tensor] = []
        for items, features in self._feature_batches(
            images, batch_size, num_workers, progress, None, None, frozenset()
        ):
            for item, feat in zip(items, features):
                if feat is None:
                    raise InputError(item.error or f"{item.ids.get('path')}: nothing to encode")
                out.append(feat)
        dim = self._require_encoder().dim
        return torch.stack(out).cpu().numpy() if out else np.zeros((0, dim), dtype=np.float32)

    # --- explanations --------------------------------------------------------------------------
    def explain(
        self,
        inputs: Any,
        *,
        emotions: str | Sequence[str] | None = None,
        top: int = 3,
        method: str = DEFAULT_METHOD,
        batch_size: int = 8,
        source: ImageSource | None = None,
        expand: Expand | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> pd.DataFrame:
        """Which patches of each crop drive its emotions: one row per (input, face, emotion).

        ``inputs`` as for :meth:`predict`. ``emotions``: head keys or names to explain for every
        crop (``"bitterness,awe"`` or a list); default: each crop's ``top`` emotions as
        :meth:`predict` ranks them (``top1..top3`` for ``top=3``). ``method``:
        ``integrated-gradients`` (the PyTorch encoder, loaded beside a compiled one when needed) or
        ``occlusion`` (forward passes only: every backend); see :mod:`emonet_face.explain.methods`.
        ``batch_size``: crops per forward pass. ``options``: ``steps`` (integrated gradients),
        ``window``/``stride`` (occlusion, in patches).
        Columns: :mod:`emonet_face.explain.table`.
        """
        rows = [
            row
            for image in self.explain_images(
                inputs,
                emotions=emotions,
                top=top,
                method=method,
                batch_size=batch_size,
                source=source,
                expand=expand,
                progress=progress,
                **options,
            )
            for row in image.rows()
        ]
        return explanation_table(rows)

    def explainer(self, method: str = DEFAULT_METHOD, *, batch_size: int = 8, **options: Any) -> Explainer:
        """The :class:`~emonet_face.explain.Explainer` for this model's encoder and heads."""
        encoder = self._require_encoder()
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
        source: ImageSource | None = None,
        expand: Expand | None = None,
        progress: bool | None = None,
        explainer: Explainer | None = None,
        **options: Any,
    ) -> Iterator[ExplainedImage]:
        """Like :meth:`explain`, one :class:`~emonet_face.explain.ExplainedImage` per decoded picture
        (the picture, its crops and their maps: what ``emonet-face explain`` draws). Runs in this
        process: forward and backward passes, not decoding, take the time. ``explainer``: a ready
        :class:`~emonet_face.explain.Explainer` (then ``method``, ``batch_size`` and ``options`` are
        its own), e.g. one that scores with :meth:`torch_encoder` (the server)."""
        from tqdm.auto import tqdm

        if top < 1:
            raise InputError(f"--top {top}: must be at least 1")
        wanted = parse_emotions(emotions, self.keys) if emotions is not None else None
        explainer = explainer or self.explainer(method, batch_size=batch_size, **options)
        refs = _input_refs(inputs)
        source = source or _default_source(refs)
        planned = [p for ids, ref in refs for p in source.plan(ids, ref)]
        show = progress if progress is not None else sys.stderr.isatty()
        for ids, ref in tqdm(planned, disable=not show, unit="img", desc="explaining", dynamic_ncols=True):
            try:
                for sub_ids, image in source(ids, ref):
                    if isinstance(image, Exception):
                        yield self._failed(sub_ids, error_text(sub_ids, image), explainer.method)
                        continue
                    try:
                        pairs = expand(sub_ids, image) if expand else [(sub_ids, image)]
                    except Exception as exc:
                        yield self._failed(sub_ids, error_text(sub_ids, exc), explainer.method)
                        continue
                    yield self._explain_pairs(explainer, sub_ids, image, pairs, wanted, top)
            except Exception as exc:  # a bad input is an error row, never the end of the run
                yield self._failed(ids, error_text(ids, exc), explainer.method)

    @staticmethod
    def _failed(ids: Ids, error: str, method: str) -> ExplainedImage:
        return ExplainedImage(ids, None, [ExplainedCrop(ids, None, error=error)], method)

    def _explain_pairs(
        self,
        explainer: Explainer,
        ids: Ids,
        image: Image.Image,
        pairs: list[tuple[Ids, Image.Image | None]],
        wanted: list[str] | None,
        top: int,
    ) -> ExplainedImage:
        """All crops of one picture: scores (one batch, as :meth:`predict` gives them), then maps."""
        crops = [ExplainedCrop(row_ids, crop) for row_ids, crop in pairs]
        ready: list[tuple[ExplainedCrop, torch.Tensor]] = []
        for crop in crops:
            item = prepare_item(crop.ids, crop.crop, self._require_encoder().preprocess)
            crop.error = item.error
            if item.inputs is not None:
                ready.append((crop, item.inputs["pixel_values"]))
        if ready:
            pixels = torch.cat([p for _, p in ready])
            centred = explainer.centred_scores(pixels)
            for (crop, _), row in zip(ready, centred):
                crop.emotions = list(wanted) if wanted is not None else ranked_emotions(row, self.keys, top)
                crop.scores = [float(row[self.keys.index(k)]) for k in crop.emotions]
            targets = [[self.keys.index(k) for k in crop.emotions] for crop, _ in ready]
            for (crop, _), maps in zip(ready, explainer.explain(pixels, targets)):
                crop.maps = maps
        return ExplainedImage(ids, image, crops, explainer.method)

    def torch_encoder(self) -> ImageEncoder:
        """The PyTorch encoder gradient methods differentiate: the model's own, or a copy of the
        compiled one loaded from the same checkpoint (once, at the model's precision)."""
        encoder = self._require_encoder()
        if isinstance(encoder, ImageEncoder):
            return encoder
        if not self._torch_twin:
            if isinstance(encoder, ExportedGraph):
                raise ModelLoadError(
                    f"{encoder.name}: an exported folder has no PyTorch encoder for gradients; use --method occlusion"
                )
            dtype = self.load_options.get("dtype")
            self._torch_twin.append(
                load_encoder(  # type: ignore[arg-type]
                    encoder.name,
                    backend="torch",
                    device=self.device,
                    dtype=None if str(dtype) == "int8" else dtype,
                    revision=encoder.revision,
                    cache_dir=self.load_options.get("cache_dir"),
                    local_files_only=self.load_options.get("local_files_only"),
                    normalize=encoder.normalize,
                )
            )
        return self._torch_twin[0]

    def _means(self) -> np.ndarray:
        source = self.heads if self.heads is not None else self.encoder
        return source.neutral_mean.detach().cpu().numpy()  # type: ignore[union-attr]

    # --- the batched loop ----------------------------------------------------------------------
    def _feature_batches(
        self,
        images: Any,
        batch_size: int,
        num_workers: int | None,
        progress: bool | None,
        source: ImageSource | None,
        expand: Expand | None,
        skip: set[tuple] | frozenset[tuple],
    ) -> Iterator[tuple[list[Item], list[torch.Tensor | None]]]:
        """Yield ``(items, features)`` groups of about ``batch_size`` complete inputs."""
        from tqdm.auto import tqdm

        encoder = self._require_encoder()
        if batch_size < 1:
            raise InputError(f"batch size {batch_size}: must be at least 1")
        inputs = _input_refs(images)
        source = source or _default_source(inputs)
        refs = [planned for ids, ref in inputs for planned in source.plan(ids, ref)]
        if skip:
            refs = [(ids, ref) for ids, ref in refs if row_key(ids) not in skip]
        dataset = _PreparedInputs(refs, source, encoder.preprocess, expand, skip)
        workers = min(_default_workers() if num_workers is None else num_workers, len(refs))
        loader = DataLoader(
            dataset,
            batch_size=None,
            shuffle=False,
            num_workers=workers,
            collate_fn=_as_is,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=max(2, batch_size // max(workers, 1) + 1) if workers else None,
        )
        show = progress if progress is not None else sys.stderr.isatty()
        pending: list[Item] = []
        done: list[tuple[Item, torch.Tensor | None]] = []
        with tqdm(total=len(refs), disable=not show, unit="img", desc="scoring", dynamic_ncols=True) as bar:
            for group in loader:
                for item in group:
                    if len(pending) >= batch_size and item.starts_image:  # all faces of an image together
                        done.extend(self._encode_items(encoder, pending))
                        pending = []
                    pending.append(item)
                bar.update(1)
                if len(done) + len(pending) >= batch_size:  # only at input boundaries
                    done.extend(self._encode_items(encoder, pending))
                    pending = []
                    yield [i for i, _ in done], [f for _, f in done]
                    done = []
            done.extend(self._encode_items(encoder, pending))
            if done:
                yield [i for i, _ in done], [f for _, f in done]

    @staticmethod
    def _encode_items(encoder: Encoder, items: list[Item]) -> list[tuple[Item, torch.Tensor | None]]:
        ready = [it for it in items if it.inputs is not None]
        features: dict[int, torch.Tensor] = {}
        if ready:
            names = ready[0].inputs.keys()  # type: ignore[union-attr]
            batch = {k: torch.cat([it.inputs[k] for it in ready]) for k in names}  # type: ignore[index]
            with torch.inference_mode():
                feats = encoder(**batch)
            if isinstance(feats, dict):  # one-graph model: embedding + raw head outputs
                for it, raw in zip(ready, feats["raw"]):
                    it.raw = raw
                feats = feats["embedding"]
            features = {id(it): f for it, f in zip(ready, feats)}
        return [(it, features.get(id(it))) for it in items]
