"""The one scorer: items (faces, frames or whole images, with their ids) → the score table.

This is the single place where image features become rows. :class:`EmoNetFace
<emonet_face.pipeline.EmoNetFace>` (``predict``), the Ray engine's actors, the HTTP server's batcher
and live streams all call it, so their rows are equal by construction:

* :meth:`Scorer.encode`: ready items (preprocessed tensors) → one ``(feature, raw head outputs)``
  per item, in encoder batches. The server's batcher runs this part alone, over items of many
  requests at once.
* :meth:`Scorer.table`: all items of a group (error rows and face-less images included) and the
  results of their ready ones → the table, with optional extra columns from each row's features
  (``annotate``: e.g. a :class:`~emonet_face.tracking.FaceTracker`'s ``track``).
* :meth:`Scorer.score`: both, for callers that encode in the same thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch

from emonet_face.errors import InputError, ModelLoadError
from emonet_face.heads import FusedHeads
from emonet_face.media import Item, feature_matrix, prepare_item
from emonet_face.outputs import build_score_table
from emonet_face.runtime import Encoder, GraphHeads

__all__ = ["Annotate", "Scored", "Scorer"]

Scored = tuple[torch.Tensor, np.ndarray]
"""One ready item's result: its image feature ``(D,)`` and its raw head outputs ``(H,)`` (float64)."""
Annotate = Callable[[pd.DataFrame, np.ndarray], pd.DataFrame]
"""After scoring: ``(score table, per-row image features)`` → the table with added columns (e.g. ``track``)."""


class Scorer:
    """An encoder and heads (either may be absent: heads-only scoring of cached embeddings; an
    exported graph that holds its heads) → score tables."""

    def __init__(self, encoder: Encoder | None, heads: FusedHeads | None) -> None:
        source: FusedHeads | GraphHeads | None = heads
        if source is None and encoder is not None:
            source = encoder.graph_heads
        if source is None:
            raise ModelLoadError("no heads: pass FusedHeads, or an exported one-graph model as the encoder")
        if heads is not None and encoder is not None and encoder.dim and encoder.dim != heads.in_dim:
            raise ModelLoadError(
                f"encoder {encoder.name or ''} gives {encoder.dim}-dim features but the heads expect {heads.in_dim}; "
                "use the encoder the heads were trained on (--encoder)"
            )
        self.encoder = encoder
        self.heads = heads
        self.keys: tuple[str, ...] = tuple(source.keys)
        self.neutral_mean: np.ndarray = source.neutral_mean.detach().cpu().numpy()

    def require_encoder(self) -> Encoder:
        if self.encoder is None:
            raise ModelLoadError("this model was loaded without an encoder; load it with with_encoder=True")
        return self.encoder

    # --- heads ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def head_outputs(self, features: torch.Tensor) -> torch.Tensor:
        """Raw head outputs ``(N, H)`` for features ``(N, D)``, on the heads' device, in float32."""
        if self.heads is None:
            raise ModelLoadError(
                "an exported one-graph model scores images only; load the heads (--heads) to score embeddings"
            )
        if features.ndim != 2 or features.shape[1] != self.heads.in_dim:
            raise InputError(
                f"embeddings have shape {tuple(features.shape)} but the heads expect (N, {self.heads.in_dim}); "
                "use embeddings from the encoder these heads were trained on"
            )
        return self.heads(features.to(self.heads.neutral_mean.device, torch.float32))

    def rows(self, ids: Sequence[dict[str, Any]], raw: np.ndarray, errors: Sequence[str | None]) -> pd.DataFrame:
        """The score table for identifier dicts and raw head outputs (NaN rows: nothing scored)."""
        return build_score_table(ids, raw, errors, self.keys, self.neutral_mean)

    # --- encoder -------------------------------------------------------------------------------
    def preprocess(self, items: Sequence[Item], threads: int = 1) -> None:
        """Preprocess crops left in :attr:`Item.image` (decoded elsewhere: the Ray engine), in place,
        in ``threads`` threads (PIL resizing and numpy release the GIL)."""
        preprocess = self.require_encoder().preprocess

        def one(item: Item) -> None:
            prepared = prepare_item(item.ids, item.image, preprocess)
            item.inputs, item.error, item.image = prepared.inputs, prepared.error, None

        todo = [item for item in items if item.image is not None]
        if threads > 1 and len(todo) > 1:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, todo))
        else:
            for item in todo:
                one(item)

    @torch.inference_mode()
    def encode(self, items: Sequence[Item], batch_size: int | None = None) -> list[Scored]:
        """Features and raw head outputs for ready items (``inputs`` set), in encoder batches of about
        ``batch_size`` (default: all in one): a batch is never cut between the faces of one image."""
        encoder = self.require_encoder()
        ready = [item for item in items if item.inputs is not None]
        if len(ready) != len(items):
            raise InputError("Scorer.encode takes ready items only (preprocessed inputs)")
        results: list[Scored] = []
        for chunk in _encoder_batches(ready, batch_size or max(len(ready), 1)):
            inputs = [it.inputs for it in chunk if it.inputs is not None]  # all of them: ready items
            batch = {k: torch.cat([one[k] for one in inputs]) for k in inputs[0]}
            encoded = encoder.encode(batch)
            raw = encoded.head_outputs(self.head_outputs).double().cpu().numpy()
            results.extend(zip(encoded.features, raw))
        return results

    # --- rows ----------------------------------------------------------------------------------
    def table(
        self, items: Sequence[Item], results: Sequence[Scored], annotate: Annotate | None = None
    ) -> pd.DataFrame:
        """One row per item, in order, from the results of its ready items (in the same order).
        ``annotate(table, features)`` adds columns from each row's features (NaN rows where nothing
        was scored)."""
        found = iter(results)
        pairs = [next(found) if item.inputs is not None else None for item in items]
        raw = np.full((len(items), len(self.keys)), np.nan)
        scored = [i for i, pair in enumerate(pairs) if pair is not None]
        if scored:
            raw[scored] = np.stack([pair[1] for pair in pairs if pair is not None])
        table = self.rows([item.ids for item in items], raw, [item.error for item in items])
        if annotate is not None:
            table = annotate(table, feature_matrix([pair[0] if pair is not None else None for pair in pairs]))
        return table

    def score(
        self, items: Sequence[Item], *, batch_size: int | None = None, annotate: Annotate | None = None
    ) -> pd.DataFrame:
        """Encode the ready ones among ``items`` and build their table (:meth:`encode` + :meth:`table`)."""
        ready = [item for item in items if item.inputs is not None]
        return self.table(items, self.encode(ready, batch_size) if ready else [], annotate)

    def score_embeddings(self, embeddings: np.ndarray | torch.Tensor, ids: Sequence[dict[str, Any]]) -> pd.DataFrame:
        """Cached image features ``(N, D)`` → their table (heads only)."""
        if len(ids) != len(embeddings):
            raise InputError(f"{len(ids)} ids for {len(embeddings)} embeddings; pass one id per row")
        return self.rows(ids, self.raw_scores(embeddings), [None] * len(ids))

    def raw_scores(self, embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
        """Raw head outputs ``(N, H)`` float64 for cached features ``(N, D)``."""
        if not isinstance(embeddings, torch.Tensor):
            array = np.asarray(embeddings)
            if not array.flags.writeable:  # memory-mapped stores: read-only, and we only read
                array = array.copy()
            embeddings = torch.from_numpy(array)
        return self.head_outputs(embeddings).double().cpu().numpy()


def _encoder_batches(items: Sequence[Item], batch_size: int) -> Iterator[list[Item]]:
    """``items`` in runs of at least ``batch_size``, each starting at an image's first crop."""
    batch: list[Item] = []
    for item in items:
        if len(batch) >= batch_size and item.starts_image:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch
