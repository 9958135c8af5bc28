"""WebDataset tar shards as a dataset for ``embed``/``train`` (img2dataset's layout).

Each sample (``KEY.jpg`` + ``KEY.json`` …) becomes a :class:`Sample` with id ``<shard stem>#<key>``,
the image bytes, and the scalar ``.json`` fields as metadata; ratings or votes found in the
``.json`` (any nesting :func:`parse_label` understands) become targets. Shards are streamed with
:mod:`emonet_face.inputs.shards` (planned from the tar headers, read member by member); a damaged
shard keeps its readable samples and is reported by :meth:`coverage_report`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from emonet_face.data.samples import LabelParse, Sample, parse_label
from emonet_face.errors import InputError
from emonet_face.inputs.shards import TarSegment, iter_tar_records, json_columns, plan_shard

__all__ = ["WebDatasetShards"]


class WebDatasetShards:
    """Samples of WebDataset ``.tar`` shards (``paths``: the shard files, in order)."""

    def __init__(self, paths: Sequence[Path], *, name: str | None = None, kind: str | None = None) -> None:
        self.shards = [Path(p) for p in paths]
        if not self.shards:
            raise InputError(f"{name}: no .tar shards found")
        self.name = name or str(self.shards[0].parent)
        self.kind = kind or "auto"
        self.metadata_fields = tuple(json_columns(self.shards[:1]))
        self._problems: list[str] = []

    def __len__(self) -> int:
        return sum(len(s.samples) for shard in self.shards for s in plan_shard(shard) if isinstance(s, TarSegment))

    def __iter__(self) -> Iterator[Sample]:
        self._problems = []
        for shard in self.shards:
            yield from self.iter_shard(shard)

    def iter_shard(self, shard: Path) -> Iterator[Sample]:
        """The samples of one shard (engines read shards in parallel)."""
        for segment in plan_shard(shard):
            if not isinstance(segment, TarSegment):
                self._problems.append(getattr(segment, "message", str(shard)))
                continue
            for key, record, image in iter_tar_records(segment):
                record = record or {}
                parse = parse_label(record, LabelParse())
                metadata = {f: None if record.get(f) is None else str(record.get(f)) for f in self.metadata_fields}
                data = image if isinstance(image, bytes) else None  # a sample without image: skipped with its error
                yield Sample(f"{shard.stem}#{key}", data, parse.mean_ratings(), parse.vote_counts(), metadata)

    def coverage_report(self) -> str:
        return "\n".join(self._problems)
