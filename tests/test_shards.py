"""WebDataset tar and Parquet image shards as inputs (local engine): keys, carried json fields,
corrupt members, truncated tars, brace patterns, segments, resume, and `embed` over tar shards."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emonet_face import taxonomy as tx
from emonet_face.errors import EmoNetError, InputError
from emonet_face.inputs import discover_inputs
from emonet_face.inputs.shards import SEGMENT_SAMPLES, ParquetSegment, ShardFailure, TarSegment, plan_shard
from emonet_face.media import media_stages
from emonet_face.options import FaceOptions, MediaOptions
from emonet_face.outputs import read_table, row_key
from emonet_face.pipeline import EmoNetFace
from helpers_cli import run_cli
from shard_builders import write_hf_parquet, write_tar
from test_pipeline import assert_matches_reference, reference_scores

pytestmark = pytest.mark.usefixtures("one_thread")
HEAD = tx.HEAD_KEYS[0]


def predict(model: EmoNetFace, paths: list[Path], **stage_options) -> pd.DataFrame:
    paths = discover_inputs([str(p) for p in paths])
    source, expand = media_stages(paths, FaceOptions("none"), MediaOptions(**stage_options))
    return model.predict(paths, batch_size=5, num_workers=0, source=source, expand=expand)


def reference_for(images: dict[str, bytes], folder: Path, tiny_encoder_dir, tiny_heads_dir) -> dict:
    """Independent scores: the same bytes written as files, scored the way the released example does."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, data in images.items():
        paths.append(folder / f"{key}.img")
        paths[-1].write_bytes(data)
    return reference_scores(tiny_encoder_dir, tiny_heads_dir, paths)


def test_tar_shard_rows_carry_key_and_json_and_match_reference(net, tiny_encoder_dir, tiny_heads_dir, tmp_path):
    shard = tmp_path / "00000.tar"
    images = write_tar(shard, 0, 2 * SEGMENT_SAMPLES + 3)  # three segments
    table = predict(net, [shard])
    assert table["path"].eq(str(shard)).all()
    assert table["key"].tolist() == list(images)
    assert table["url"].tolist() == [f"https://example.org/{k}.jpg" for k in images]
    assert table["json.key"].tolist() == list(images)  # the json's own "key" does not overwrite ours
    assert "exif" not in table.columns  # only scalar fields are carried
    assert table["error"].isna().all()
    assert_matches_reference(table, reference_for(images, tmp_path / "ref", tiny_encoder_dir, tiny_heads_dir))
    plain = predict(net, [shard], carry_json=False)
    assert [c for c in plain.columns[: plain.columns.get_loc("top1")]] == ["path", "key"]


def test_corrupt_member_is_one_error_row(net, tmp_path):
    shard = tmp_path / "00001.tar"
    images = write_tar(shard, 1, 6, corrupt=(2,))
    table = predict(net, [shard])
    assert table["key"].tolist() == list(images)
    errors = table["error"].notna().tolist()
    assert errors == [False, False, True, False, False, False]
    assert f"{shard}[000010002]" in table["error"][2] and "corrupt" in table["error"][2]


def test_truncated_tar_keeps_samples_before_and_fails_that_shard_only(net, tmp_path):
    good = tmp_path / "00000.tar"
    write_tar(good, 0, 5)
    bad = tmp_path / "00001.tar"
    images = write_tar(bad, 1, 20)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    plan = plan_shard(bad)
    assert isinstance(plan[-1], ShardFailure) and "truncated" in plan[-1].message
    kept = sum(len(s.samples) for s in plan if isinstance(s, TarSegment))
    assert 0 < kept < 20
    table = predict(net, [good, bad])
    rows_bad = table[table["path"] == str(bad)]
    assert rows_bad["key"].iloc[:kept].tolist() == list(images)[:kept]
    assert rows_bad["error"].iloc[:kept].isna().all()
    assert len(rows_bad) == kept + 1 and "truncated tar" in rows_bad["error"].iloc[-1]
    assert table[table["path"] == str(good)]["error"].isna().sum() == 5


def test_hf_parquet_shards_key_by_id_or_row_number(net, tiny_encoder_dir, tiny_heads_dir, tmp_path):
    with_id = tmp_path / "a" / "train-00000.parquet"
    images = write_hf_parquet(with_id, 10, row_group=4)
    plan = plan_shard(with_id)
    assert all(isinstance(s, ParquetSegment) and s.image_column == "image" for s in plan)
    table = predict(net, [with_id])
    assert table["key"].tolist() == list(images)
    assert_matches_reference(table, reference_for(images, tmp_path / "ref", tiny_encoder_dir, tiny_heads_dir))
    no_id = tmp_path / "b" / "train-00000.parquet"
    write_hf_parquet(no_id, 3, with_id=False)
    assert predict(net, [no_id])["key"].tolist() == ["0", "1", "2"]


def test_parquet_image_column_must_be_unambiguous(net, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shard_builders import image_bytes

    path = tmp_path / "two.parquet"
    pq.write_table(pa.table({"a": pa.array([image_bytes(1)]), "b": pa.array([image_bytes(2)])}), path)
    plan = plan_shard(path)
    assert isinstance(plan[0], ShardFailure) and "--image-column" in plan[0].message
    table = predict(net, [path], image_column="b")
    assert table["error"].isna().all() and table["key"].tolist() == ["0"]


def test_brace_patterns_and_img2dataset_folders(tmp_path):
    for shard in range(3):
        write_tar(tmp_path / f"{shard:05d}.tar", shard, 1)
        (tmp_path / f"{shard:05d}.parquet").write_bytes(b"img2dataset metadata, not a shard")
    found = discover_inputs([str(tmp_path / "{00000..00002}.tar")])
    assert found == [tmp_path / f"{i:05d}.tar" for i in range(3)]
    assert discover_inputs([str(tmp_path / "{00001,00002}.tar")]) == found[1:]
    assert discover_inputs([tmp_path]) == found  # the metadata .parquet beside each .tar is left out
    with pytest.warns(UserWarning, match=r"00003.tar, .*00005.tar: no such file or folder; each gets a row with an `error`"):
        named = discover_inputs([str(tmp_path / "{00000..00005}.tar")])  # the missing ones become error rows
    assert named == [tmp_path / f"{i:05d}.tar" for i in range(6)]
    with pytest.raises(InputError, match="no such file"):  # nothing exists: the run cannot start
        discover_inputs([str(tmp_path / "{00007..00009}.tar")])


def test_resume_key_covers_shard_keys():
    assert row_key({"path": "s.tar", "key": "000010003", "face": 0}) == ("s.tar", "000010003")
    assert row_key({"path": "s.parquet", "key": 7}) == row_key({"path": "s.parquet", "key": "7"})
    assert row_key({"path": "v.mp4", "key": None, "frame": 3.0}) == ("v.mp4", 3)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_cli_resume_on_shards(whole_image_args, tmp_path, suffix):
    """Cut the output after a few rows (as a kill leaves it); --resume completes it exactly."""
    shards = [tmp_path / "s" / f"{i:05d}.tar" for i in range(2)]
    for i, shard in enumerate(shards):
        write_tar(shard, i, 7, corrupt=(3,) if i else ())
    full = tmp_path / f"full{suffix}"
    pattern = str(tmp_path / "s" / "{00000..00001}.tar")
    result = run_cli("predict", pattern, "--out", full, *whole_image_args)
    assert result.exit_code == 1, result.output  # one corrupt member
    expected = read_table(full)
    partial = tmp_path / f"partial{suffix}"
    lines = full.read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:10]) + lines[10][:15])  # 9 or 10 rows + a partial line
    result = run_cli("predict", pattern, "--out", partial, "--resume", *whole_image_args)
    assert result.exit_code == 1, result.output
    resumed = read_table(partial)
    assert resumed["key"].astype(str).tolist() == expected["key"].astype(str).tolist()
    np.testing.assert_allclose(resumed[f"raw.{HEAD}"].to_numpy(float), expected[f"raw.{HEAD}"].to_numpy(float), atol=1e-6)


def test_embed_reads_tar_shards(tiny_encoder_dir, tmp_path):
    from emonet_face.data import open_dataset, read_store

    for shard in range(2):
        write_tar(tmp_path / "shards" / f"{shard:05d}.tar", shard, 3, corrupt=(1,) if shard else ())
    data = open_dataset(str(tmp_path / "shards" / "{00000..00001}.tar"))
    assert len(data) == 6 and "url" in data.metadata_fields
    out = tmp_path / "store"
    result = run_cli("embed", tmp_path / "shards", "--out", out, "--encoder", tiny_encoder_dir, "--no-progress")
    assert result.exit_code == 1, result.output  # the corrupt sample is skipped: some inputs failed
    embeddings, ids = read_store(out)
    assert ids["id"].tolist() == ["00000#000000000", "00000#000000001", "00000#000000002", "00001#000010000", "00001#000010002"]
    assert embeddings.shape == (5, 32) and ids["url"].iloc[0].endswith("000000000.jpg")
    assert "skipped" in result.output or "1 image(s) skipped" in result.stdout


def test_engine_ray_without_ray_says_how_to_install(monkeypatch):
    import sys

    from emonet_face.engines import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(EmoNetError, match=r"pip install 'emonet-face\[ray\]'"):
        require_ray()


def test_tar_is_read_by_offsets_not_unpacked(tmp_path):
    shard = tmp_path / "00000.tar"
    write_tar(shard, 0, 3)
    plan = plan_shard(shard)
    with tarfile.open(shard) as tar:
        names = tar.getnames()
    assert len(names) == 9 and [s.key for s in plan[0].samples] == ["000000000", "000000001", "000000002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000.tar"]


def test_python_api_reads_shards_without_stages(net, tmp_path):
    shard = tmp_path / "00000.tar"
    images = write_tar(shard, 0, 3)
    table = net.predict(str(tmp_path / "{00000..00000}.tar"), faces="none", num_workers=0)
    assert table["key"].tolist() == list(images) and "url" in table.columns
    assert table["error"].isna().all()
