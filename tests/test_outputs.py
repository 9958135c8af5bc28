"""Score table writers: round trips per format, crash safety and resume keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emonet_face import taxonomy as tx
from emonet_face.errors import InputError
from emonet_face.outputs import (
    ParquetWriter,
    build_score_table,
    done_keys,
    open_writer,
    read_table,
    row_key,
)


def make_table(n: int, start: int = 0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, len(tx.HEAD_KEYS)))
    errors = [None] * n
    if n > 1:
        raw[1] = np.nan
        errors[1] = f"img{start + 1}.jpg: not a readable image, really; remove it"
    ids = [{"path": f"img{start + i}.jpg"} for i in range(n)]
    return build_score_table(ids, raw, errors, tx.HEAD_KEYS, np.linspace(-0.2, 0.2, len(tx.HEAD_KEYS)))


def test_table_columns_and_values():
    table = make_table(3)
    assert table.columns[:4].tolist() == ["path", "top1", "top2", "top3"]
    assert table.columns[-1] == "error"
    assert len(table.columns) == 1 + 3 + 44 + 40 + 44 + 1
    anger_mean = np.linspace(-0.2, 0.2, len(tx.HEAD_KEYS))[tx.HEAD_KEYS.index("anger")]
    np.testing.assert_allclose((table["raw.anger"] - table["anger"])[[0, 2]], anger_mean, atol=1e-12)
    row = table.iloc[0]
    emotions = row[list(tx.EMOTION_KEYS)].astype(float)
    assert row["top1"] == emotions.idxmax()
    assert [row["top1"], row["top2"], row["top3"]] == emotions.sort_values(ascending=False).index[:3].tolist()
    assert table.iloc[1][["top1", "anger", "prob.anger"]].isna().all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_round_trip_in_batches(tmp_path, suffix):
    path = tmp_path / f"scores{suffix}"
    first, second = make_table(3), make_table(2, start=3, seed=1)
    with open_writer(path) as writer:
        writer.write(first)
        writer.write(second)
    back = read_table(path)
    expected = pd.concat([first, second], ignore_index=True)
    assert back.columns.tolist() == expected.columns.tolist()
    assert back["path"].tolist() == expected["path"].tolist()
    assert back["error"].isna().tolist() == expected["error"].isna().tolist()
    assert back["error"].iloc[1] == expected["error"].iloc[1]
    numeric = [c for c in expected.columns if c not in ("path", "top1", "top2", "top3", "error")]
    np.testing.assert_allclose(back[numeric].to_numpy(float), expected[numeric].to_numpy(float), rtol=1e-12)
    assert not ParquetWriter.parts_dir_for(path).exists()


def test_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match=r"unknown output format '\.xlsx'"):
        open_writer(tmp_path / "scores.xlsx")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_after_partial_last_line(tmp_path, suffix):
    path = tmp_path / f"scores{suffix}"
    with open_writer(path) as writer:
        writer.write(make_table(3))
    with path.open("a") as fh:  # a kill in the middle of the next write
        fh.write("img3.jpg,anger,fe")
    assert done_keys(path) >= {("img0.jpg",), ("img1.jpg",), ("img2.jpg",)}
    with open_writer(path, resume=True) as writer:
        writer.write(make_table(2, start=3, seed=1))
    back = read_table(path)
    assert back["path"].tolist() == [f"img{i}.jpg" for i in range(5)]
    assert done_keys(path) == {(f"img{i}.jpg",) for i in range(5)}


def test_parquet_killed_run_keeps_parts_and_resumes(tmp_path):
    path = tmp_path / "scores.parquet"
    writer = open_writer(path)
    writer.write(make_table(3))  # ... and then the process dies: no close()
    assert not path.exists()
    assert done_keys(path) == {(f"img{i}.jpg",) for i in range(3)}
    with open_writer(path, resume=True) as again:
        again.write(make_table(2, start=3, seed=1))
    back = pd.read_parquet(path)
    assert back["path"].tolist() == [f"img{i}.jpg" for i in range(5)]
    assert not ParquetWriter.parts_dir_for(path).exists()
    with open_writer(path, resume=True) as third:  # resuming a finished file appends to it
        third.write(make_table(1, start=5))
    assert pd.read_parquet(path)["path"].tolist() == [f"img{i}.jpg" for i in range(6)]


def test_row_key_normalises_read_back_values():
    assert row_key({"path": "a.mp4", "frame": 3}) == row_key({"path": "a.mp4", "frame": 3.0})
    assert row_key({"path": "a.jpg"}) == ("a.jpg",)
    assert row_key({"path": "a.jpg", "frame": None}) == ("a.jpg",)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_resume_of_an_older_output_without_the_new_columns_says_so(tmp_path, suffix):
    """An output written before the eye-landmark columns existed cannot take rows that have them:
    one line naming the file and what to do, and the old rows stay as they were."""
    path = tmp_path / f"scores{suffix}"
    with open_writer(path) as writer:
        writer.write(make_table(2))
    newer = make_table(1, start=2, seed=1)
    newer.insert(1, "eye_left_x", 1.0)
    expected = r"lacks the columns \['eye_left_x'\].*new file, or rerun without --resume"
    with pytest.raises(InputError, match=expected), open_writer(path, resume=True) as writer:
        writer.write(newer)
    assert read_table(path)["path"].tolist() == ["img0.jpg", "img1.jpg"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_face_and_frame_stay_integers_when_some_rows_have_none(tmp_path, suffix):
    """A photo without a face (empty ``face``) beside faces 0 and 1: the file says ``0``/``1``, not ``0.0``."""
    ids = [
        {"path": "group.jpg", "frame": None, "face": 0},
        {"path": "group.jpg", "frame": None, "face": 1},
        {"path": "empty.jpg", "frame": None, "face": None},
        {"path": "clip.mp4", "frame": 12, "face": 0},
    ]
    raw = np.random.default_rng(0).normal(size=(4, len(tx.HEAD_KEYS)))
    raw[2] = np.nan
    table = build_score_table(ids, raw, [None] * 4, tx.HEAD_KEYS, np.zeros(len(tx.HEAD_KEYS)))
    assert str(table["face"].dtype) == "Int64" and str(table["frame"].dtype) == "Int64"
    out = tmp_path / f"scores{suffix}"
    with open_writer(out) as writer:
        writer.write(table.iloc[:2])
        writer.write(table.iloc[2:])
    if suffix == ".csv":
        lines = out.read_text().splitlines()
        assert [line.split(",")[1:3] for line in lines[1:]] == [["", "0"], ["", "1"], ["", ""], ["12", "0"]]
    back = read_table(out)
    assert back["face"].tolist()[:2] == [0, 1] and pd.isna(back["face"][2]) and back["frame"].tolist()[3] == 12
    # resume keys read back from the nullable column: an empty frame is absent, not "<NA>"
    assert done_keys(out) == {("group.jpg",), ("empty.jpg",), ("clip.mp4", 12)}
