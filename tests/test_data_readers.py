"""Dataset readers: HF-layout Parquet shards (local and through the Hub client), image folders + CSVs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emonet_face.data import ImageFolderDataset, ParquetDataset, open_dataset
from emonet_face.data.samples import resolve_head_key
from emonet_face.errors import InputError
from emonet_face.taxonomy import EMOTION_KEYS, HEAD_KEYS
from hf_layout import write_shards


def test_binary_shards_stream_votes_and_metadata(tmp_path):
    write_shards(tmp_path, "binary", 20, shards=2)
    dataset = open_dataset(tmp_path)
    assert isinstance(dataset, ParquetDataset)
    dataset.batch_rows = 3  # stream in small record batches
    samples = list(dataset)
    assert len(samples) == len(dataset) == 20
    assert [s.id for s in samples] == [f"binary_{i:05d}.png" for i in range(20)]
    first = samples[0]
    assert first.metadata["gender"] == "female" and first.metadata["subset"] == "binary"
    assert set(dataset.metadata_fields) == {"prompt", "age", "ethnicity", "gender", "emotion", "subset"}
    assert first.load_image().size == (24, 24)
    # Independent count of the same votes straight from the label JSON.
    table = pd.concat(pd.read_parquet(p) for p in dataset.shards)
    for sample, label in zip(samples, table["label"]):
        expected: dict[str, list[int]] = {}
        for raters in json.loads(label):
            for votes in raters.values():
                for name, vote in votes.items():
                    key = next(
                        k for k in EMOTION_KEYS if k.replace("_", "") in name.lower().replace(" ", "").replace("/", "")
                    )
                    expected.setdefault(key, [0, 0])[0 if vote else 1] += 1
        assert sample.votes == {k: tuple(v) for k, v in expected.items()}


def test_big_and_hq_shards_give_ratings(tmp_path):
    write_shards(tmp_path / "big", "big", 6, shards=1)
    big = list(open_dataset(tmp_path / "big"))
    assert set(big[0].ratings) == set(HEAD_KEYS)  # 40 emotions + 4 dimensions
    write_shards(tmp_path / "hq", "hq", 6, shards=1)
    hq = open_dataset(tmp_path / "hq")
    rows = list(hq)
    assert len(rows[0].ratings) == 10 and all(0 <= v <= 7 for v in rows[0].ratings.values())
    report = hq.coverage_report()
    assert "no ratings for 30 head(s)" in report  # says clearly what is missing


def test_hub_datasets_go_through_snapshot_download(tmp_path, monkeypatch):
    import huggingface_hub

    write_shards(tmp_path, "big", 4, shards=1)
    calls = {}

    def fake_snapshot_download(**kwargs):
        calls.update(kwargs)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    dataset = open_dataset("big")
    assert calls["repo_id"] == "laion/emonet-face-big" and calls["repo_type"] == "dataset"
    assert "*.parquet" in calls["allow_patterns"]
    assert dataset.kind == "big" and len(list(dataset)) == 4


def test_hub_dataset_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(InputError, match="not in the local Hugging Face cache"):
        ParquetDataset("laion/emonet-face-binary", cache_dir=tmp_path / "cache")


def test_binary_votes_csv_matches_release_file(tmp_path, release_data):
    votes = pd.read_csv(release_data / "emonet-face_binary.csv", dtype={"path": str}, nrows=300)
    images = tmp_path / "images"
    images.mkdir()
    for image_id in votes["path"].unique()[:5]:
        Image.new("RGB", (8, 8), "gray").save(images / f"{image_id}.jpg")
    csv = tmp_path / "votes.csv"
    votes.to_csv(csv, index=False)
    dataset = ImageFolderDataset(images, csv)
    assert dataset.kind == "binary"
    samples = {s.id: s for s in dataset}
    assert len(samples) == votes["path"].nunique()
    # Independent aggregation with pandas; names mapped through the taxonomy (+ the CSV's "Hopelessness").
    names = {n: resolve_head_key(n) for n in votes["emotion"].unique()}
    assert None not in names.values()
    grouped = votes.groupby(["path", "emotion"])["value"].agg(["sum", "count"])
    assert sum(len(s.votes) for s in samples.values()) == len(grouped)
    for (image_id, name), row in grouped.iterrows():
        assert samples[image_id].votes[names[name]] == (int(row["sum"]), int(row["count"] - row["sum"]))
    assert sum(s.image is not None for s in samples.values()) == 5
    assert "name an image not found" in dataset.coverage_report()


def test_hq_long_and_wide_csv(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"img{i}.png")
    long = pd.DataFrame(
        {
            "path": ["img0.png", "img0.png", "img1.png"],
            "annotator": ["a", "b", "a"],
            "value": [6, 2, 7],
            "emotion": ["Negative High-Energy Emotions|Anger", "Anger", "Fear"],
        }
    )
    long.to_csv(tmp_path / "hq.csv", index=False)
    rows = {s.id: s for s in open_dataset(tmp_path / "hq.csv")}
    assert rows["img0.png"].ratings == {"anger": 4.0} and rows["img1.png"].ratings == {"fear": 7.0}
    wide = pd.DataFrame({"path": ["img2.png"], "Jealousy & Envy": [3], "valence": [-1], "gender": ["male"]})
    wide.to_csv(tmp_path / "targets.csv", index=False)
    (sample,) = list(open_dataset(tmp_path, targets=tmp_path / "targets.csv"))
    assert sample.ratings == {"jealousy_&_envy": 3.0, "valence": -1.0}
    assert sample.metadata == {"gender": "male"}
    assert np.asarray(sample.load_image()).shape == (8, 8, 3)


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="dataset not found"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="no image column"):
        open_dataset(tmp_path / "bad.csv")
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "x.parquet").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable Parquet"):
        open_dataset(tmp_path / "shards")


def test_dataset_card_layout_image_annotations_demographics(tmp_path):
    """The layout some EmoNet-Face cards describe: ``image``, ``annotations``, a ``demographics`` dict."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hf_layout import IMAGE_TYPE, png_bytes

    rng = np.random.default_rng(0)
    rows = [
        {
            "image": {"bytes": png_bytes(rng), "path": f"img{i}.png"},
            "prompt": "a face",
            "demographics": {"ethnicity": "asian", "gender": "male", "age": "30"},
            "annotations": json.dumps({"scores": {"Anger": 4, "Arousal": 6}}),
        }
        for i in range(3)
    ]
    schema = pa.schema(
        [
            ("image", IMAGE_TYPE),
            ("prompt", pa.string()),
            ("demographics", pa.struct([("ethnicity", pa.string()), ("gender", pa.string()), ("age", pa.string())])),
            ("annotations", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "big.parquet")
    dataset = open_dataset(tmp_path / "big.parquet")
    assert dataset.metadata_fields == ("prompt", "ethnicity", "gender", "age")
    sample = next(iter(dataset))
    assert sample.id == "img0.png" and sample.ratings == {"anger": 4.0, "arousal": 6.0}
    assert sample.metadata == {"prompt": "a face", "ethnicity": "asian", "gender": "male", "age": "30"}
