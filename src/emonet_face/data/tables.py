"""Image folders with a CSV of targets.

Two CSV layouts are understood:

* **long** (``path,annotator,value,emotion``): one row per vote or rating, as in the released
  ``emonet-face_binary.csv`` (``value`` True/False → BINARY votes) and the HQ ``hq.csv`` layout
  (``value`` 0–7 → ratings, averaged over annotators);
* **wide**: a ``path`` column (or ``image``/``file``/``filename``/``id``) and one column per
  emotion or dimension (any spelling :func:`resolve_emotion` accepts) holding ratings; other
  columns are kept as metadata.

The CSV (labels only) is read with pandas; images are decoded one by one while streaming.
``path`` may be a file relative to the image folder or a bare id matched against image stems
(the BINARY CSV's 5-digit ids).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from emonet_face.data.samples import LabelParse, Sample, parse_label
from emonet_face.errors import InputError
from emonet_face.inputs.discovery import IMAGE_SUFFIXES
from emonet_face.taxonomy import resolve_emotion

__all__ = ["ImageFolderDataset", "read_targets_csv"]

LONG_COLUMNS = ("path", "annotator", "value", "emotion")
PATH_COLUMNS = ("path", "image", "file", "filename", "id")


def read_targets_csv(csv_path: str | Path) -> tuple[pd.DataFrame, str]:
    """Load a targets CSV and tell its layout (``"long"`` or ``"wide"``); one-line errors if unusable."""
    csv_path = Path(csv_path)
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise InputError(f"{csv_path}: targets CSV not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{csv_path}: not a readable CSV ({type(exc).__name__}: {exc})") from None
    columns = [c.strip().lower() for c in frame.columns]
    frame.columns = columns
    if all(c in columns for c in LONG_COLUMNS):
        return frame, "long"
    if not any(c in columns for c in PATH_COLUMNS):
        raise InputError(
            f"{csv_path}: no image column; expected 'path,annotator,value,emotion' (votes/ratings) or a 'path' "
            "column plus one column per emotion"
        )
    return frame, "wide"


class ImageFolderDataset:
    """Images under ``root`` (or none: unlabelled) with targets from ``targets_csv``."""

    def __init__(self, root: str | Path, targets_csv: str | Path | None = None, *, kind: str | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: image folder not found")
        self.name = str(targets_csv or root)
        self._index = {
            p.relative_to(self.root).as_posix(): p
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        }
        self._by_stem: dict[str, Path] = {}
        for rel, p in self._index.items():
            self._by_stem.setdefault(Path(rel).stem, p)
        self._missing_images = 0
        self._unknown: set[str] = set()
        if targets_csv is None:
            self.kind = kind or "unlabelled"
            self.metadata_fields: tuple[str, ...] = ()
            self._rows: list[tuple[str, LabelParse, dict]] = [(rel, LabelParse(), {}) for rel in self._index]
            return
        frame, layout = read_targets_csv(targets_csv)
        self._rows = self._long_rows(frame, targets_csv) if layout == "long" else self._wide_rows(frame)
        has_votes = any(parse.votes for _, parse, _ in self._rows)
        self.kind = kind or ("binary" if has_votes else "hq" if layout == "long" else "ratings")

    def _long_rows(self, frame: pd.DataFrame, source: str | Path) -> list[tuple[str, LabelParse, dict]]:
        rows: list[tuple[str, LabelParse, dict]] = []
        self.metadata_fields = ()
        for path, group in frame.groupby("path", sort=False):
            parse = LabelParse()
            for emotion, value in zip(group["emotion"], group["value"]):
                parse_label({str(emotion): value}, parse)
            self._unknown |= parse.unknown_keys
            rows.append((str(path), parse, {}))
        if not rows:
            raise InputError(f"{source}: CSV has no rows")
        return rows

    def _wide_rows(self, frame: pd.DataFrame) -> list[tuple[str, LabelParse, dict]]:
        path_column = next(c for c in PATH_COLUMNS if c in frame.columns)
        heads: dict[str, str] = {}
        for column in frame.columns:
            if column == path_column:
                continue
            try:
                heads[column] = resolve_emotion(column).key
            except KeyError:
                continue
        self.metadata_fields = tuple(c for c in frame.columns if c != path_column and c not in heads)
        rows = []
        for record in frame.to_dict("records"):
            parse = LabelParse()
            parse_label({heads[c]: record[c] for c in heads}, parse)
            metadata = {f: (None if pd.isna(record[f]) else str(record[f])) for f in self.metadata_fields}
            rows.append((str(record[path_column]), parse, metadata))
        return rows

    def _find(self, rel: str) -> Path | None:
        direct = self.root / rel
        if direct.is_file():
            return direct
        return self._index.get(rel) or self._by_stem.get(Path(rel).stem)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Sample]:
        self._missing_images = 0
        for rel, parse, metadata in self._rows:
            image = self._find(rel)
            if image is None:
                self._missing_images += 1
            yield Sample(rel, image, parse.mean_ratings(), parse.vote_counts(), dict(metadata))

    def coverage_report(self) -> str:
        lines = []
        if self._missing_images:
            lines.append(f"{self.name}: {self._missing_images} row(s) name an image not found under {self.root}")
        if self._unknown:
            lines.append(f"{self.name}: ignored unknown emotion names: {', '.join(sorted(self._unknown)[:8])}")
        return "\n".join(lines)
