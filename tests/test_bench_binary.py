"""`bench binary`: vote shares against a plain pandas group-by on the shipped BINARY votes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from emonet_face.bench.binary import analyse_binary
from helpers_cli import run_cli


def test_shares_match_plain_pandas_groupby(release_data: Path, tmp_path: Path) -> None:
    result = run_cli("bench", "binary", str(release_data / "emonet-face_binary.csv"), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (tmp_path / "binary_agreement.png").exists()

    votes = pd.read_csv(release_data / "emonet-face_binary.csv", dtype={"path": str})
    votes["emotion"] = votes["emotion"].replace({"Hopelessness": "Helplessness"})  # the CSV's name for it
    votes["yes"] = votes["value"].astype(str).str.lower().eq("true")
    items = votes.groupby(["path", "emotion"]).agg(n=("yes", "size"), yes=("yes", "sum")).reset_index()
    items = items[items["n"] >= 2]
    items["kind"] = "partial"
    items.loc[(items["yes"] == 0) | (items["yes"] == items["n"]), "kind"] = "agreement"
    items.loc[items["yes"] * 2 == items["n"], "kind"] = "disagreement"
    shares = items.groupby("emotion")["kind"].value_counts(normalize=True).unstack(fill_value=0)
    counts = items.groupby("emotion").size()
    assert len(summary["per_emotion"]) == len(shares)
    for emotion, row in shares.iterrows():
        got = summary["per_emotion"][emotion]
        assert got["n"] == counts[emotion]
        for kind in ("agreement", "partial", "disagreement"):
            assert got[kind] == pytest.approx(row.get(kind, 0.0), abs=1e-12)
    assert summary["overall"]["n"] == len(items)


def test_annotator_statistics(tmp_path: Path) -> None:
    rows = [
        ("1", "a", "True", "Anger"),
        ("1", "b", "True", "Anger"),
        ("1", "c", "False", "Anger"),
        ("2", "a", "False", "Anger"),
        ("2", "b", "True", "Anger"),
        ("3", "a", "True", "Elation"),
        ("3", "b", "True", "Elation"),
        ("4", "a", "False", "Elation"),
        ("4", "b", "False", "Elation"),
        ("4", "c", "maybe", "Elation"),
    ]
    path = tmp_path / "votes.csv"
    pd.DataFrame(rows, columns=["path", "annotator", "value", "emotion"]).to_csv(path, index=False)
    result = analyse_binary(path)
    assert result.per_emotion.loc["Anger", "partial"] == 0.5 and result.per_emotion.loc["Anger", "disagreement"] == 0.5
    assert result.per_emotion.loc["Elation", "agreement"] == 1.0
    assert any("skipped 1 rows" in w for w in result.warnings)
    pair = result.pairs.set_index(["annotator_a", "annotator_b"]).loc[("a", "b")]
    assert pair["shared_items"] == 4 and pair["agreement"] == 0.75
    assert pair["cohen_kappa"] == pytest.approx(cohen_kappa_score([1, 0, 1, 0], [1, 1, 1, 0]))
    assert result.annotators.loc["a", "votes"] == 4


def test_binary_missing_columns_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "votes.csv"
    pd.DataFrame({"path": ["1"], "value": [True]}).to_csv(path, index=False)
    result = run_cli("bench", "binary", str(path), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "lacks column" in result.output and "Traceback" not in result.output
