"""``emonet-face embed`` as a library call: open a dataset, resolve the encoder (Hub id, local folder or
bundle) and embed it with the local or the Ray engine into an embedding store
(:func:`emonet_face.data.store.write_store`: its layout, manifest and resume rules)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emonet_face.engines import ENGINES, RayOptions
from emonet_face.errors import InputError
from emonet_face.options import ModelOptions
from emonet_face.runfolder import refuse_if_in_use

if TYPE_CHECKING:
    from emonet_face.engines.ray_engine import DescribedEncoder
    from emonet_face.runtime import Encoder

__all__ = ["EmbedRun", "embed_dataset", "encoder_kwargs"]


@dataclass
class EmbedRun:
    """What an :func:`embed_dataset` run wrote, and what the user should hear about it."""

    out: Path
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    """Warnings of the run (skipped images) and the dataset's coverage report, one line each."""

    def summary(self) -> str:
        m = self.manifest
        skipped = f", {len(m['skipped'])} image(s) skipped" if m["skipped"] else ""
        return f"{self.out}: {m['count']} embeddings (dim {m['dim']}) in {len(m['shards'])} shard(s){skipped}"


def encoder_kwargs(model: ModelOptions) -> dict[str, Any]:
    """:func:`~emonet_face.runtime.load_encoder` arguments for the model options' encoder (default: the
    released one); a bundle is checked once here, so that Ray actors get plain arguments."""
    from emonet_face.bundle import is_bundle, open_bundle
    from emonet_face.hub import DEFAULT_ENCODER

    kwargs = {
        "ref": model.encoder or DEFAULT_ENCODER,
        "backend": model.backend,
        "device": model.device,
        "dtype": model.dtype,
        "revision": model.revision,
        "cache_dir": model.cache_dir,
        "normalize": model.normalize,
        "force_precision": model.force_precision,
    }
    if model.encoder and is_bundle(model.encoder):
        if model.revision is not None:
            raise InputError(f"--revision {model.revision}: a bundle holds a fixed encoder revision; drop --revision")
        kwargs |= open_bundle(model.encoder).encoder_kwargs(model.dtype)
    return kwargs


def embed_dataset(
    dataset: str,
    out: str | Path,
    *,
    encoder: dict[str, Any],
    engine: str = "local",
    ray: RayOptions | None = None,
    batch_size: int = 32,
    shard_size: int = 4096,
    num_workers: int | None = None,
    resume: bool = False,
    progress: bool = True,
    **dataset_options: Any,
) -> EmbedRun:
    """Embed every image of ``dataset`` (see :func:`~emonet_face.data.open_dataset`, which takes
    ``dataset_options``) with the encoder of ``encoder`` (:func:`encoder_kwargs`) into the store ``out``.

    ``engine`` ``"ray"`` reads and decodes shards in Ray tasks and encodes in ``ray``'s actor pool
    (``batch_size`` images per call); the store is the same either way.
    """
    from emonet_face.data import open_dataset
    from emonet_face.data.store import write_store
    from emonet_face.runtime import load_encoder

    if engine not in ENGINES:
        raise InputError(f"--engine {engine}: use {' or '.join(ENGINES)}")
    refuse_if_in_use(out)  # before loading anything; write_store holds the store while it writes
    data = open_dataset(dataset, **dataset_options)
    with contextlib.ExitStack() as stack, warnings.catch_warnings(record=True) as caught:
        embedder = None
        if engine == "ray":
            from emonet_face.engines.ray_engine import describe_encoder, ray_embedder, ray_session

            options = dataclasses.replace(ray or RayOptions(), batch_size=batch_size)
            stack.enter_context(ray_session(options))
            embedder = ray_embedder(data, encoder, options, Path(out))
            model: DescribedEncoder | Encoder = describe_encoder(encoder)
        else:
            model = load_encoder(**encoder)
        warnings.simplefilter("always")
        manifest = write_store(
            data,
            out,
            model,
            batch_size=batch_size,
            shard_size=shard_size,
            num_workers=min(2, os.cpu_count() or 1) if num_workers is None else num_workers,
            resume=resume,
            progress=progress,
            embedder=embedder,
        )
    notes = [str(w.message) for w in caught]
    notes += data.coverage_report().splitlines()
    return EmbedRun(Path(out), manifest, notes)
