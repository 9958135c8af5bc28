"""Reading the tables the benchmark consumes (CSV, TSV, Parquet, JSON Lines) with one-line errors."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from emonet_face.errors import InputError

_BARE_NAN = re.compile(r"(?<=[:\s\[,])nan\b")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")


def read_input_table(path: str | Path, *, what: str = "table", text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a table a user hands a benchmark (annotations, votes, predictions, meta) by its suffix
    (CSV, TSV, JSON, JSONL, Parquet); every failure becomes an :class:`InputError` naming the file.
    Score tables that ``predict`` writes are read back with :func:`emonet_face.outputs.read_table`.

    ``text_columns`` are read as text from CSV/TSV (ids like ``00012`` keep their zeros).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist or is not a file; pass the path of an existing file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".jsonl", ".ndjson"):
            frame = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".json":
            try:
                frame = pd.read_json(path, lines=True, dtype=False)
            except ValueError:
                frame = pd.read_json(path, dtype=False)
        elif suffix == ".tsv":
            frame = pd.read_csv(path, sep="\t", dtype=dict.fromkeys(text_columns, str))
        else:
            frame = pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
    except Exception as exc:  # pandas/pyarrow raise many types; the user needs one line
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"cannot read {what} {path}: {first_line}; expected one of {', '.join(TABLE_SUFFIXES)}"
        ) from exc
    if frame.empty:
        raise InputError(f"{what} {path} has no rows")
    return frame


def require_columns(frame: pd.DataFrame, columns: list[str], *, path: str | Path, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{what} {path} lacks column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}"
        )


def parse_mapping(value: Any) -> dict | list | None:
    """A dict/list cell as written by pandas (JSON) or by Python's ``str(dict)``; ``None`` if unparsable."""
    if isinstance(value, (dict, list)):
        return value
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy arrays from Parquet list columns
        return value.tolist()
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        pass
    if '"' not in value:
        # Fast path for Python's repr of {str: number} dicts: quotes swapped it is JSON, and ~10x
        # quicker to parse than literal_eval. Anything else (True/None/tuples) fails and falls through.
        text = value.replace("'", '"')
        if "nan" in text:  # Python writes float('nan') as a bare nan; JSON spells it NaN
            text = _BARE_NAN.sub("NaN", text)
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(parsed, (dict, list)):
                return parsed
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return parsed if isinstance(parsed, (dict, list)) else None


def image_id(value: Any) -> str | None:
    """The file name that identifies an image: basename of a path, or of an HF image dict's ``path``."""
    if isinstance(value, dict):
        value = value.get("path")
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip().replace("\\", "/")
    return text.rsplit("/", 1)[-1] or None
