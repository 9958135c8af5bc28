"""`--engine ray` (Ray Data, started locally with 2 CPUs and capped memory, once for this module):
same rows as the local engine, error rows, a killed run resumed, `embed --engine ray` → a store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emonet_face import taxonomy as tx
from emonet_face.engines import RayOptions
from emonet_face.inputs import discover_inputs
from emonet_face.media import media_stages
from emonet_face.options import FaceOptions, ModelOptions
from helpers_cli import run_cli
from shard_builders import write_hf_parquet, write_tar

ray = pytest.importorskip("ray", reason="Ray is in the test extra; CI installs it")

NUMERIC = [*tx.HEAD_KEYS, *(f"raw.{k}" for k in tx.HEAD_KEYS), *(f"prob.{k}" for k in tx.EMOTION_KEYS)]


pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("shards")
    write_tar(folder / "00000.tar", 0, 20)
    write_tar(folder / "00001.tar", 1, 5, corrupt=(2,))
    write_hf_parquet(folder / "extra" / "train-00000.parquet", 6)
    return [folder / "00000.tar", folder / "00001.tar", folder / "extra" / "train-00000.parquet"]


def by_key(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(key=table["key"].astype(str)).sort_values(["path", "key"]).reset_index(drop=True)


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = by_key(a), by_key(b)
    assert list(zip(a["path"], a["key"])) == list(zip(b["path"], b["key"]))
    assert a["error"].isna().tolist() == b["error"].isna().tolist()
    assert a["top1"].fillna("").tolist() == b["top1"].fillna("").tolist()
    assert a["url"].fillna("").tolist() == b["url"].fillna("").tolist()
    np.testing.assert_allclose(a[NUMERIC].to_numpy(float), b[NUMERIC].to_numpy(float), atol=1e-5, equal_nan=True)


def test_killed_run_resumed_gives_the_local_rows(shards, whole_image_args, tiny_encoder_dir, tiny_heads_dir, tmp_path):
    """A run killed after its first shard, resumed through the CLI: exactly the local engine's rows."""
    from emonet_face.engines.ray_engine import ray_predict

    local = tmp_path / "local.parquet"
    result = run_cli("predict", *shards, "--out", local, *whole_image_args)
    assert result.exit_code == 1, result.output  # one corrupt member

    paths = discover_inputs([str(s) for s in shards])
    source, expand = media_stages(paths, FaceOptions("none"))
    model = ModelOptions(encoder=str(tiny_encoder_dir), heads=str(tiny_heads_dir), device="cpu")
    out = tmp_path / "ray-out"

    class Killed(Exception):
        pass

    def kill_after_first(finished: int) -> None:
        if finished == 1:
            raise Killed

    options = RayOptions(actors=1, batch_size=8)
    with pytest.raises(Killed):
        ray_predict(paths, out, model=model, source=source, expand=expand, options=options, on_unit=kill_after_first)
    half = json.loads((out / "_manifest.json").read_text())
    assert [u["complete"] for u in half["shards"]] == [True, False, False] and not half["complete"]
    assert len(pd.read_parquet(out)) == 20  # what is there is readable
    (out / "part-00002-000.parquet").write_bytes(b"a part left by a kill mid-unit")  # must not survive
    result = run_cli("predict", *shards, "--out", out, "--engine", "ray", *whole_image_args)
    assert result.exit_code == 2 and "not empty" in result.output

    result = run_cli("predict", *shards, "--out", out, "--engine", "ray", "--resume", "--actors", "1", "-b", "8", *whole_image_args)
    assert result.exit_code == 1, result.output
    assert "scored 30 row(s), 1 error(s)" in result.output
    table = pd.read_parquet(out)  # the whole folder, as the issue asks
    assert len(table) == 31 and not table.duplicated(["path", "key"]).any()
    assert_same_rows(table, pd.read_parquet(local))
    bad = table[table["error"].notna()]
    assert bad["key"].tolist() == ["000010002"] and "not a readable image" in bad["error"].iloc[0]

    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["count"] == 31 and manifest["errors"] == 1
    assert [u["inputs"] for u in manifest["shards"]] == [[str(s)] for s in shards]
    assert [u["rows"] for u in manifest["shards"]] == [20, 5, 6]
    assert manifest["model"]["encoder"] and manifest["versions"]["ray"] == ray.__version__
    assert manifest["model_info"]["encoder"]["dim"] == 32 and manifest["backend"] == "torch"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["_manifest.json", "part-00000-000.parquet", "part-00001-000.parquet", "part-00002-000.parquet"]

    again = ray_predict(paths, out, model=model, source=source, options=options, resume=True)
    assert again["count"] == 31 and len(pd.read_parquet(out)) == 31  # nothing left to do, nothing started


def test_embed_engine_ray_writes_the_local_store(shards, tiny_encoder_dir, tiny_heads_dir, tmp_path):
    from emonet_face.data import read_manifest, read_store

    tars = str(shards[0].parent / "{00000..00001}.tar")
    local, distributed = tmp_path / "local", tmp_path / "ray"
    common = ["--encoder", tiny_encoder_dir, "--no-progress", "--shard-size", "8", "--batch-size", "4"]
    assert run_cli("embed", tars, "--out", local, *common).exit_code == 1  # 1 unreadable sample: skipped
    result = run_cli("embed", tars, "--out", distributed, "--engine", "ray", *common)
    assert result.exit_code == 1, result.output
    a, ids_a = read_store(local)
    b, ids_b = read_store(distributed)
    assert ids_b["id"].tolist() == ids_a["id"].tolist() and len(ids_b) == 24  # 25 samples, 1 unreadable
    np.testing.assert_allclose(b, a, atol=1e-5)
    assert read_manifest(distributed)["encoder"] == read_manifest(local)["encoder"]
    assert len(read_manifest(distributed)["skipped"]) == 1
    scored = run_cli("score", distributed, "--heads", tiny_heads_dir, "--device", "cpu", "--out", tmp_path / "s.csv")
    assert scored.exit_code == 0, scored.output
    assert len(pd.read_csv(tmp_path / "s.csv")) == 24
