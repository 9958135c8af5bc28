"""`bench transfer`: the release's FERD figure, the shipped mapping, our own score tables."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from emonet_face.bench.transfer import evaluate_transfer
from emonet_face.taxonomy import head_key_from_file_name
from helpers_cli import run_cli


def test_shipped_mapping_equals_release_file(release_data: Path) -> None:
    shipped = json.loads(resources.files("emonet_face.bench").joinpath("transfer_mappings.json").read_text("utf-8"))
    assert shipped == json.loads((release_data / "emonet-face_transfer_mappings.json").read_text())


def test_ferd_release_file_gives_published_accuracy(release_data: Path, tmp_path: Path) -> None:
    result = run_cli("bench", "transfer", release_data / "emonet-face_eval_ferd.jsonl", "--dataset", "ferd", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n"] == 152
    assert round(summary["accuracy"], 4) == 0.7829
    assert set(summary["per_class"]) == {"anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    assert summary["per_class"]["happy"] == 1.0


def _as_score_table(release_data: Path) -> pd.DataFrame:
    """The FERD results rewritten as our `predict` table: path, centred <key> columns, raw.<key>."""
    rows = []
    for line in (release_data / "emonet-face_eval_ferd.jsonl").read_text().splitlines():
        record = json.loads(line)
        row = {"path": record["image_path"]}
        for head, values in record["results"].items():
            key = head_key_from_file_name(head)
            row[key] = values["mean_subtracted"]
            row[f"raw.{key}"] = values["raw"]
        rows.append(row)
    return pd.DataFrame(rows)


def test_score_table_with_class_column_and_affectnet_ids(release_data: Path, tmp_path: Path) -> None:
    table = _as_score_table(release_data)
    path = tmp_path / "scores.csv"
    table.to_csv(path, index=False)
    assert evaluate_transfer(path, "ferd").summary()["accuracy"] == pytest.approx(119 / 152)  # class from file name
    table["class"] = [Path(p).stem.split("_")[1] for p in table["path"]]
    table["path"] = [f"img{i}.jpg" for i in range(len(table))]  # class can no longer come from the name
    table.to_parquet(tmp_path / "scores.parquet")
    assert evaluate_transfer(tmp_path / "scores.parquet", "ferd").summary()["accuracy"] == pytest.approx(119 / 152)
    ids = {"Anger": 0, "Contempt": 1, "Disgust": 2, "Fear": 3, "Happy": 4, "Neutral": 5, "Sad": 6, "Surprised": 7}
    table["label"] = table.pop("class").map(ids)
    table.to_csv(path, index=False)
    summary = evaluate_transfer(path, "affectnet").summary()
    assert summary["n"] == 152 and set(summary["per_class"]) == {
        "anger",
        "contempt",
        "disgust",
        "fear",
        "happy",
        "neutral",
        "sad",
        "surprise",
    }


def test_transfer_bad_input_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    pd.DataFrame({"path": ["a.jpg"], "foo": [1]}).to_csv(path, index=False)
    result = run_cli("bench", "transfer", str(path), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and result.output.startswith("error:") and "Traceback" not in result.output
