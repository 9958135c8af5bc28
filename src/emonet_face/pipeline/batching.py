"""The local engine's loop: refs → groups of prepared items, decoded in DataLoader workers.

Decoding, face detection and preprocessing run in worker processes (order preserved) while the main
process encodes; a group holds only complete inputs (all faces and frames of an input together) and
about ``batch_size`` items, so a table written group by group never splits an input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import DataLoader, Dataset

from emonet_face.errors import InputError
from emonet_face.inputs.sources import ImageSource
from emonet_face.media import Expand, Item, Preprocess, prepare_ref
from emonet_face.outputs import row_key
from emonet_face.pipeline.refs import Ref

__all__ = ["default_workers", "item_groups"]


class _PreparedInputs(Dataset):
    """Map-style dataset: ref ``i`` → its :class:`Item` list (decoded, expanded, preprocessed)."""

    def __init__(
        self, refs: Sequence[Ref], source: ImageSource, preprocess: Preprocess, expand: Expand | None, skip: Any
    ) -> None:
        self.refs, self.source, self.preprocess, self.expand, self.skip = list(refs), source, preprocess, expand, skip

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> list[Item]:
        ids, ref = self.refs[index]
        return prepare_ref(ids, ref, self.source, self.preprocess, self.expand, self.skip)


def _as_is(batch: Any) -> Any:
    return batch


def default_workers() -> int:
    """Decoding workers: one core stays with the encoder; more than 4 rarely pays."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def item_groups(
    refs: Sequence[Ref],
    *,
    source: ImageSource,
    preprocess: Preprocess,
    expand: Expand | None = None,
    batch_size: int = 16,
    num_workers: int | None = None,
    progress: bool | None = None,
    skip: set[tuple] | frozenset[tuple] = frozenset(),
    pin_memory: bool = False,
) -> Iterator[list[Item]]:
    """Plan ``refs`` with ``source`` (videos → segments, shards → samples), drop ``skip`` (resume keys
    already done), and yield groups of about ``batch_size`` prepared items, complete inputs only."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    planned = [sub for ids, ref in refs for sub in source.plan(ids, ref)]
    if skip:
        planned = [(ids, ref) for ids, ref in planned if row_key(ids) not in skip]
    workers = min(default_workers() if num_workers is None else num_workers, len(planned))
    loader = DataLoader(
        _PreparedInputs(planned, source, preprocess, expand, skip),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_is,
        pin_memory=pin_memory,
        prefetch_factor=max(2, batch_size // max(workers, 1) + 1) if workers else None,
    )
    show = progress if progress is not None else sys.stderr.isatty()
    group: list[Item] = []
    with tqdm(total=len(planned), disable=not show, unit="img", desc="scoring", dynamic_ncols=True) as bar:
        for items in loader:
            group.extend(items)
            bar.update(1)
            if len(group) >= batch_size:  # only at input boundaries
                yield group
                group = []
        if group:
            yield group
