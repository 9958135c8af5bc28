"""Dataset statistics and demographic audits (`emonet-face stats`, `bench hq --meta --by`).

* :mod:`~emonet_face.stats.demographics`: the one data table of demographic vocabularies
  (ethnicity → FairFace group, gender spellings, FairFace age bins, map regions);
* :mod:`~emonet_face.stats.dataset`: counts over a dataset streamed shard by shard;
* :mod:`~emonet_face.stats.bygroup`: agreement with experts and model scores by group;
* :mod:`~emonet_face.stats.figures` / :mod:`~emonet_face.stats.report`: figures, tables, report.md.
"""

from __future__ import annotations

from pathlib import Path

from emonet_face.stats.bygroup import agreement_by_group, gap_test, kappa_permutation_test, prediction_stats
from emonet_face.stats.dataset import DatasetStats, dataset_stats, read_meta
from emonet_face.stats.demographics import (
    FACTORS,
    UNKNOWN,
    DemographicTable,
    demographic_columns,
    load_demographic_table,
)

__all__ = [
    "FACTORS",
    "UNKNOWN",
    "DatasetStats",
    "DemographicTable",
    "agreement_by_group",
    "dataset_stats",
    "demographic_columns",
    "gap_test",
    "is_score_table",
    "kappa_permutation_test",
    "load_demographic_table",
    "prediction_stats",
    "read_meta",
]

_SCORE_MARKERS = ("top1", "results")


def is_score_table(ref: str | Path) -> bool:
    """A file written by ``predict``/``score`` (``top1``, ``prob.<key>``/``raw.<key>`` columns) or the
    release's results JSONL (``results``), judged from its header only."""
    path = Path(ref).expanduser()
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        elif suffix in (".jsonl", ".ndjson", ".json"):
            import json

            with path.open(encoding="utf-8") as handle:
                first = json.loads(handle.readline() or "{}")
            names = list(first) if isinstance(first, dict) else []
        elif suffix in (".csv", ".tsv"):
            import pandas as pd

            names = list(pd.read_csv(path, nrows=0, sep="\t" if suffix == ".tsv" else ",").columns)
        else:
            return False
    except Exception:
        return False  # not a readable table: the dataset readers give the error
    return any(n in _SCORE_MARKERS or str(n).startswith(("prob.", "raw.")) for n in names)
