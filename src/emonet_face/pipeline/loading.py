"""Loading a model from :class:`~emonet_face.options.ModelOptions`: the three kinds of ``--model``.

* a released model name (``large``, ``small``; :data:`emonet_face.hub.MODELS`), with ``--heads`` /
  ``--encoder`` overrides: Hub ids or local folders, through the Hugging Face cache;
* a bundle folder written by ``emonet-face download`` (encoder + heads checked against its
  manifest, no network);
* a folder written by ``emonet-face export`` (one graph that holds the encoder and the heads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emonet_face.bundle import Bundle, is_bundle, load_bundle_encoder, open_bundle
from emonet_face.errors import InputError, ModelLoadError
from emonet_face.heads import FusedHeads
from emonet_face.hub import MODELS, fetch_heads, split_revision
from emonet_face.options import ModelOptions
from emonet_face.runtime import Encoder, ExportedGraph, is_exported, load_encoder, resolve_device

__all__ = ["LoadedModel", "describe_loaded", "load_model"]


@dataclass
class LoadedModel:
    """What a load produced: heads (``None`` for an exported graph), encoder (``None`` for heads-only
    scoring), where the heads came from, and the bundle they were read from (if any)."""

    heads: FusedHeads | None
    encoder: Encoder | None
    heads_ref: str
    bundle: Bundle | None = None
    options: ModelOptions = field(default_factory=ModelOptions)


def load_model(
    options: ModelOptions,
    *,
    encoder: Encoder | None = None,
    heads: FusedHeads | None = None,
    with_encoder: bool = True,
) -> LoadedModel:
    """Load what ``options`` names; ``encoder`` / ``heads`` are ready objects that replace the named ones."""
    if options.model not in MODELS and is_exported(options.model):
        return _load_exported(options, given=encoder is not None or heads is not None)
    if options.model not in MODELS and is_bundle(options.model):
        return _load_bundle(options, given=encoder is not None or heads is not None, with_encoder=with_encoder)
    if options.model not in MODELS:
        raise ModelLoadError(
            f"{options.model}: unknown model; choose one of {', '.join(MODELS)}, an `emonet-face download` bundle "
            "or an `emonet-face export` folder"
        )
    return _load_released(options, encoder=encoder, heads=heads, with_encoder=with_encoder)


def _load_exported(options: ModelOptions, *, given: bool) -> LoadedModel:
    model = options.model
    if given or options.encoder is not None or options.heads is not None:
        raise ModelLoadError(f"{model}: an exported folder holds its encoder and heads; drop --encoder/--heads")
    if resolve_device(options.device).type != "cpu":
        raise InputError(f"{model}: an exported folder runs on the CPU (ONNX Runtime / OpenVINO); use --device cpu")
    graph = ExportedGraph(model, backend=options.backend, dtype=options.dtype)
    return LoadedModel(None, graph, str(model), options=options)


def _load_bundle(options: ModelOptions, *, given: bool, with_encoder: bool) -> LoadedModel:
    model = options.model
    if given or options.encoder is not None or options.heads is not None or options.revision is not None:
        raise ModelLoadError(
            f"{model}: a bundle holds its encoder and heads at fixed revisions; drop --encoder/--heads/--revision"
        )
    bundle = open_bundle(model, verify=False)  # loading checks each file it reads
    encoder = None
    if with_encoder:
        encoder = load_bundle_encoder(
            bundle,
            backend=options.backend,
            device=options.device,
            dtype=options.dtype,
            normalize=options.normalize,
            compiled_dir=options.compiled_dir,
            force_precision=options.force_precision,
        )
    return LoadedModel(bundle.load_heads(), encoder, str(bundle.heads_dir), bundle, options)


def _load_released(
    options: ModelOptions, *, encoder: Encoder | None, heads: FusedHeads | None, with_encoder: bool
) -> LoadedModel:
    spec = MODELS[options.model]
    heads_ref: str | Path
    if heads is not None:
        heads_ref = "<FusedHeads>"
    else:
        heads_ref, heads_rev = split_revision(options.heads or spec.heads, options.revision)
        heads = fetch_heads(
            heads_ref, heads_rev, cache_dir=options.cache_dir, local_files_only=options.local_files_only
        )
    if encoder is None and with_encoder:
        enc_ref, enc_rev = split_revision(options.encoder or spec.encoder, None)
        encoder = load_encoder(
            enc_ref,
            backend=options.backend,
            device=resolve_device(options.device),
            dtype=options.dtype,
            revision=enc_rev,
            cache_dir=options.cache_dir,
            local_files_only=options.local_files_only,
            normalize=options.normalize,
            compiled_dir=options.compiled_dir,
            force_precision=options.force_precision,
        )
    return LoadedModel(heads, encoder, str(heads_ref), options=options)


def describe_loaded(loaded: LoadedModel, keys: Any) -> dict[str, Any]:
    """What produces the scores (encoder with backend, precision and device; heads; bundle)."""
    encoder = loaded.encoder.describe() if loaded.encoder is not None else {}
    described = {"encoder": encoder, "heads": loaded.heads_ref, "keys": list(keys)}
    return described | ({"bundle": loaded.bundle.describe()} if loaded.bundle is not None else {})
