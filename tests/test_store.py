"""Embedding store: embeddings match the encoder, resume after a kill, bad images, fast memory-mapped reads."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emonet_face.data import open_dataset
from emonet_face.data.store import (
    MANIFEST,
    is_store,
    read_store,
    read_store_targets,
    write_embeddings,
    write_store,
)
from emonet_face.errors import InputError
from emonet_face.runtime.encoder import ImageEncoder
from emonet_face.taxonomy import HEAD_KEYS
from hf_layout import write_shards

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder(tiny_encoder_dir):
    return ImageEncoder.from_pretrained(tiny_encoder_dir)


@pytest.fixture(scope="module")
def binary_shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("binary"), "binary", 30, shards=2)


def test_store_holds_the_encoder_features_targets_and_metadata(tmp_path, encoder, binary_shards):
    dataset = open_dataset(binary_shards)
    manifest = write_store(
        dataset, tmp_path / "store", encoder, batch_size=4, shard_size=8, num_workers=2, progress=False
    )
    assert is_store(tmp_path / "store") and not is_store(binary_shards)
    assert manifest["count"] == 30 and len(manifest["shards"]) == 4 and manifest["complete"]
    assert manifest["encoder"]["encoder"] == str(encoder.name) and manifest["encoder"]["normalize"] is True
    assert manifest["encoder"]["image_mean"] == [0.5, 0.5, 0.5] and manifest["dim"] == 32
    json.loads((tmp_path / "store" / MANIFEST).read_text())  # plain JSON

    embeddings, frame = read_store(tmp_path / "store")
    samples = list(dataset)
    assert embeddings.dtype == np.float32 and embeddings.shape == (30, 32)
    assert frame["id"].tolist() == [s.id for s in samples]
    assert frame["gender"].tolist() == [s.metadata["gender"] for s in samples]
    reference = encoder.embed([s.load_image() for s in samples]).numpy()
    np.testing.assert_allclose(embeddings, reference, atol=1e-5)

    targets = read_store_targets(tmp_path / "store")
    assert targets.keys == HEAD_KEYS
    for row, sample in enumerate(samples):
        for key, (yes, no) in sample.votes.items():
            col = HEAD_KEYS.index(key)
            assert (targets.votes_yes[row, col], targets.votes_no[row, col]) == (yes, no)
        assert (targets.votes_yes[row] + targets.votes_no[row] > 0).sum() == len(sample.votes)
    assert np.isnan(targets.ratings).all()


def test_killed_run_resumes_without_duplicates_or_losses(tmp_path, encoder, binary_shards):
    dataset = open_dataset(binary_shards)
    out = tmp_path / "store"

    class Killed(Exception):
        pass

    def kill_after_12(written: int) -> None:
        if written >= 12:
            raise Killed

    with pytest.raises(Killed):
        write_store(dataset, out, encoder, batch_size=4, shard_size=8, progress=False, on_batch=kill_after_12)
    assert json.loads((out / MANIFEST).read_text())["count"] == 8  # one finished shard; 4 rows in flight lost
    (out / "part-00001.parquet.tmp").write_bytes(b"half-written")  # a kill during a shard write
    with pytest.raises(InputError, match="--resume"):
        write_store(dataset, out, encoder, progress=False)
    manifest = write_store(dataset, out, encoder, batch_size=4, shard_size=8, resume=True, progress=False)
    assert manifest["count"] == 30 and not list(out.glob("*.tmp"))
    embeddings, frame = read_store(out)
    assert frame["id"].is_unique and sorted(frame["id"]) == sorted(s.id for s in dataset)

    uninterrupted, reference_frame = read_store_from_fresh_run(tmp_path / "fresh", dataset, encoder)
    order = reference_frame.set_index("id").index.get_indexer(frame["id"])
    np.testing.assert_allclose(embeddings, uninterrupted[order], atol=1e-6)
    # Resuming a complete store is a no-op.
    assert write_store(dataset, out, encoder, resume=True, progress=False)["count"] == 30


def read_store_from_fresh_run(out, dataset, encoder):
    write_store(dataset, out, encoder, batch_size=8, progress=False)
    return read_store(out)


def test_unreadable_images_are_skipped_listed_and_the_rest_kept(tmp_path, encoder):
    shards = write_shards(tmp_path / "ds", "big", 10, shards=1, corrupt=3)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        manifest = write_store(open_dataset(shards), tmp_path / "store", encoder, batch_size=4, progress=False)
    assert manifest["count"] == 9
    assert manifest["skipped"][0]["id"] == "big_00003.png" and "not a readable image" in manifest["skipped"][0]["error"]
    targets = read_store_targets(tmp_path / "store")
    assert (~np.isnan(targets.ratings)).all()  # BIG rows carry all 44 targets


def test_resume_refuses_another_encoder(tmp_path, encoder, binary_shards, tiny_encoder_dir):
    import shutil

    dataset = open_dataset(binary_shards)
    write_store(dataset, tmp_path / "store", encoder, progress=False)
    other_dir = tmp_path / "other-encoder"
    shutil.copytree(tiny_encoder_dir, other_dir)
    other = ImageEncoder.from_pretrained(other_dir)
    with pytest.raises(InputError, match="same --encoder"):
        write_store(dataset, tmp_path / "store", other, resume=True, progress=False)


def test_reads_are_memory_mapped_and_zero_copy_per_shard(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(1000, 16)).astype(np.float32)
    meta = pd.DataFrame({"emotion": ["neutral"] * 1000})
    write_embeddings(tmp_path / "one", matrix, metadata=meta)
    embeddings, frame = read_store(tmp_path / "one")
    np.testing.assert_array_equal(embeddings, matrix)
    assert frame.columns.tolist() == ["id", "emotion"] and frame["id"].iloc[-1] == "999"
    assert not embeddings.flags.owndata  # a view on the Arrow buffer, not a parsed copy
    write_embeddings(tmp_path / "many", matrix, shard_size=300)
    embeddings, _frame = read_store(tmp_path / "many")
    np.testing.assert_array_equal(embeddings, matrix)
    assert len(list((tmp_path / "many").glob("part-*.parquet"))) == 4
    schema = pq.read_schema(next((tmp_path / "many").glob("part-*.parquet")))
    embedding_type = schema.field("embedding").type
    assert pa.types.is_fixed_size_list(embedding_type) and embedding_type.list_size == 16
    assert embedding_type.value_type == pa.float32()
    with pytest.raises(InputError, match="not an embedding store"):
        read_store(tmp_path)
