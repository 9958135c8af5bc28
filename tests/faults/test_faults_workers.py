"""Faults of workers and caches, injected for real: Ray workers killed with SIGKILL mid-run, the
``embed`` process killed mid-write, truncated and corrupt files in model folders, the Hub cache, the
conversion cache and bundles. Every output is checked row by row: each input once, no duplicate, no
NaN where a score belongs, the scores of an undisturbed run."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from emonet_face import taxonomy as tx
from emonet_face.engines import RayOptions
from emonet_face.inputs import discover_inputs
from emonet_face.media import media_stages
from emonet_face.options import FaceOptions, ModelOptions
from shard_builders import write_tar

NUMERIC = [*tx.HEAD_KEYS, *(f"raw.{k}" for k in tx.HEAD_KEYS), *(f"prob.{k}" for k in tx.EMOTION_KEYS)]
SHARDS, PER_SHARD = 4, 6


# --- Ray workers killed mid-run ----------------------------------------------------------------------
class GatedSource:
    """The run's source, except that decoding the input ``gated`` waits (in its Ray task) until the file
    ``gate`` exists, after leaving ``waiting-<pid>`` beside it: the test then knows which worker process
    holds a task in flight, and that the input's rows cannot be scored before the gate opens.
    Synchronisation only: the rows are the source's."""

    def __init__(self, source, gated: str, gate: Path) -> None:
        self.source, self.gated, self.gate = source, gated, gate

    def plan(self, ids, ref):
        return self.source.plan(ids, ref)

    def __call__(self, ids, ref):
        if ids["path"] == self.gated and not self.gate.exists():
            (self.gate.parent / f"waiting-{os.getpid()}").touch()
            deadline = time.monotonic() + 60
            while not self.gate.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        yield from self.source(ids, ref)


def ray_workers(name: str) -> list[psutil.Process]:
    """This process's own Ray workers (Ray runs them as children of the driver) whose command line
    starts with ``ray::`` and holds ``name`` (Ray's system processes never match a stage name)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if line.startswith("ray::") and name in line:
            found.append(child)
    return found


class Killer:
    """``on_unit`` of :func:`ray_predict`: once a shard is written, SIGKILL the decode worker blocked on
    the gate (a task in flight) and, with ``actor``, the encoder actor; then open the gate."""

    def __init__(self, gate: Path, *, actor: bool) -> None:
        self.gate, self.actor = gate, actor
        self.killed: list[str] = []
        self.earlier = {p.pid for p in ray_workers("MapBatches(_Scorer)")}  # an earlier run's, still shutting down

    def __call__(self, finished: int) -> None:
        if self.gate.exists():
            return
        deadline = time.monotonic() + 60
        while not list(self.gate.parent.glob("waiting-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        waiting = {int(p.name.split("-")[1]) for p in self.gate.parent.glob("waiting-*")}
        victims = [p for p in ray_workers("") if p.pid in waiting]  # the gated decode task's own worker
        assert len(victims) == 1, f"the decode task of the gated shard is not among this process's Ray workers: {waiting}"
        if self.actor:
            victims += [p for p in ray_workers("MapBatches(_Scorer)") if p.pid not in self.earlier]
            assert len(victims) == 2, f"not one encoder actor of this run among this process's children: {victims}"
        for victim in victims:
            self.killed.append(" ".join(victim.cmdline()))
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
        self.gate.touch()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("shards")
    for s in range(SHARDS):
        write_tar(folder / f"{s:05d}.tar", s, PER_SHARD)
    return sorted(folder.glob("*.tar"))


@pytest.fixture(scope="module")
def expected(shards, net) -> pd.DataFrame:
    """The local engine's rows for the shards (no fault)."""
    return net.predict([str(s) for s in shards], faces="none", num_workers=0)


def check_rows(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Every input once, no duplicate, a score wherever the undisturbed run has one, the same scores."""
    keys = ["path", "key"]
    assert not table.duplicated(keys).any()
    table = table.assign(key=table["key"].astype(str)).sort_values(keys).reset_index(drop=True)
    expected = expected.assign(key=expected["key"].astype(str)).sort_values(keys).reset_index(drop=True)
    assert list(zip(table["path"], table["key"])) == list(zip(expected["path"], expected["key"]))
    assert table["error"].isna().all()
    assert not table[NUMERIC].isna().any().any()
    np.testing.assert_allclose(table[NUMERIC].to_numpy(float), expected[NUMERIC].to_numpy(float), atol=1e-5)


def gated_run(shards, tiny_encoder_dir, tiny_heads_dir, gate: Path):
    """ray_predict's arguments for the shards, decoding of the last one held at ``gate``."""
    ray = pytest.importorskip("ray", reason="Ray is in the test extra; CI installs it")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    gate.parent.mkdir()
    paths = discover_inputs([str(s) for s in shards])
    source, expand = media_stages(paths, FaceOptions("none"))
    model = ModelOptions(encoder=str(tiny_encoder_dir), heads=str(tiny_heads_dir), device="cpu")
    return paths, {"model": model, "source": GatedSource(source, str(shards[-1]), gate), "expand": expand}


def test_killed_ray_workers_cost_a_retry_and_resume_ends_what_retries_cannot(
    ray_local, shards, expected, tiny_encoder_dir, tiny_heads_dir, tmp_path
):
    """First with no retries: SIGKILL of the decode worker holding the last shard, once a shard is
    written, ends the run with one line naming the folder and --resume, the written shards kept.
    Then ``resume`` with retries, and SIGKILL of that run's decode worker and encoder actor once a
    shard is written: the run completes by itself, every row once, the rows of an undisturbed run.
    (The encoder actor takes no CPU slot, so that the gated task leaves one for the others.)"""
    from emonet_face.engines.ray_engine import ray_predict
    from emonet_face.errors import EmoNetError

    out = tmp_path / "out"
    paths, kwargs = gated_run(shards, tiny_encoder_dir, tiny_heads_dir, tmp_path / "first" / "gate")
    killer = Killer(tmp_path / "first" / "gate", actor=False)
    with pytest.raises(EmoNetError) as failed:
        ray_predict(paths, out, **kwargs, options=RayOptions(batch_size=4, cpus_per_actor=0, retries=0), on_unit=killer)
    message = str(failed.value)
    assert "\n" not in message and str(out) in message and "a Ray worker was lost" in message, message
    assert message.endswith("run the same command with --resume to finish")
    assert len(killer.killed) == 1
    first = pd.read_parquet(out)
    assert 1 <= len(first.drop_duplicates("path")) < SHARDS and len(first) % PER_SHARD == 0  # whole shards

    paths, kwargs = gated_run(shards, tiny_encoder_dir, tiny_heads_dir, tmp_path / "second" / "gate")
    killer = Killer(tmp_path / "second" / "gate", actor=True)
    options = RayOptions(batch_size=4, cpus_per_actor=0)
    manifest = ray_predict(paths, out, **kwargs, options=options, resume=True, on_unit=killer)
    assert len(killer.killed) == 2 and killer.killed[1].startswith("ray::MapWorker(MapBatches(_Scorer))")
    assert manifest["complete"] and manifest["count"] == SHARDS * PER_SHARD and manifest["errors"] == 0
    check_rows(pd.read_parquet(out), expected)


# --- the embed process killed mid-write ------------------------------------------------------------
def test_embed_killed_mid_write_is_completed_by_resume(tiny_encoder_dir, tmp_path):
    """SIGKILL of ``emonet-face embed`` once its first store shard is on disk; ``--resume`` completes
    the store: every sample once, the embeddings of an uninterrupted run, no stray file."""
    from emonet_face.data import read_manifest, read_store
    from helpers_cli import kill_when, run_cli

    for s in range(2):
        write_tar(tmp_path / "data" / f"{s:05d}.tar", s, 60)
    data = str(tmp_path / "data" / "{00000..00001}.tar")
    common = ["--encoder", tiny_encoder_dir, "--no-progress", "--shard-size", "4", "--batch-size", "2", "--device", "cpu"]
    out, full = tmp_path / "killed", tmp_path / "full"
    kill_when(lambda: any(out.glob("part-*.parquet")), "embed", data, "--out", out, *common, interval=0.01)
    assert not read_manifest(out)["complete"]  # killed mid-run, not after it
    assert len(read_store(out)[1]) < 120
    result = run_cli("embed", data, "--out", out, "--resume", *common)
    assert result.exit_code == 0, result.output
    assert run_cli("embed", data, "--out", full, *common).exit_code == 0
    (embeddings, ids), (expected, expected_ids) = read_store(out), read_store(full)
    assert not ids["id"].duplicated().any() and sorted(ids["id"]) == sorted(expected_ids["id"]) and len(ids) == 120
    order = expected_ids.reset_index().set_index("id").loc[ids["id"], "index"].to_numpy()
    np.testing.assert_allclose(embeddings, expected[order], atol=1e-6)
    assert not np.isnan(embeddings).any() and read_manifest(out)["complete"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


# --- caches that lie -----------------------------------------------------------------------------------
def damaged_copy(folder: Path, name: str, tmp_path: Path, *, keep: float = 0.5) -> Path:
    """A copy of ``folder`` whose file ``name`` is cut to ``keep`` of its bytes (as a stopped copy leaves it)."""
    import shutil

    copy = tmp_path / f"{folder.name}-{name}"
    shutil.copytree(folder, copy)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[: int(len(data) * keep)])
    return copy / name


@pytest.mark.parametrize(
    ("part", "name"),
    [("encoder", "model.safetensors"), ("encoder", "config.json"), ("encoder", "preprocessor_config.json"),
     ("heads", "model_anger_best.pth"), ("heads", tx.NEUTRAL_STATS_FILENAME)],
)
def test_truncated_model_files_are_one_line_naming_the_file(part, name, tiny_encoder_dir, tiny_heads_dir, photos, tmp_path):
    from helpers_cli import one_line_error, run_cli

    folders = {"encoder": tiny_encoder_dir, "heads": tiny_heads_dir}
    damaged = damaged_copy(folders[part], name, tmp_path)
    folders[part] = damaged.parent
    result = run_cli(
        "predict", photos["portrait"], "--encoder", folders["encoder"], "--heads", folders["heads"],
        "--device", "cpu", "--faces", "none", "--out", tmp_path / "scores.csv",
    )
    line = one_line_error(result)
    assert line.startswith(f"error: {damaged}: damaged or incomplete file (") and line.endswith("replace it with a complete copy")
    assert not (tmp_path / "scores.csv").exists()


def test_damaged_hub_cache_file_names_the_blob_to_delete_and_comes_back(hub, photos, tmp_path, monkeypatch):
    """A weights file cut short in the Hugging Face cache: one line naming it and the blob to delete;
    deleting that blob and loading again (online) downloads it again and scores as the source model."""
    from emonet_face.errors import ModelLoadError
    from emonet_face.pipeline import EmoNetFace
    from hub_server import hub_env

    cache = tmp_path / "hf-cache"
    hub.server.start()
    with hub_env(hub.server, monkeypatch):
        EmoNetFace.from_pretrained("small", cache_dir=cache, device="cpu")  # downloads into the cache
        weights = next(cache.glob("models--*siglip2*/snapshots/*/model.safetensors"))
        blob = weights.resolve()
        blob.chmod(0o644)
        blob.write_bytes(blob.read_bytes()[:1000])
        with pytest.raises(ModelLoadError) as refused:
            EmoNetFace.from_pretrained("small", cache_dir=cache, device="cpu")
        message = str(refused.value)
        assert "\n" not in message and message.startswith(f"{weights}: damaged or incomplete file in the Hugging Face cache")
        assert f"delete {blob} and run again with network access" in message
        blob.unlink()  # as the message says
        again = EmoNetFace.from_pretrained("small", cache_dir=cache, device="cpu")
    local = EmoNetFace.from_pretrained(encoder=str(hub.encoder), heads=str(hub.small), device="cpu")
    rows = again.predict([photos["portrait"], photos["landscape"]], faces="none", num_workers=0)
    expected = local.predict([photos["portrait"], photos["landscape"]], faces="none", num_workers=0)
    np.testing.assert_allclose(rows[NUMERIC].to_numpy(float), expected[NUMERIC].to_numpy(float), atol=1e-6)


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_damaged_conversion_cache_is_rebuilt_with_a_warning(backend, tiny_encoder_dir, photos, tmp_path):
    """A converted graph cut short, or overwritten in place with the same size, is detected on load, deleted
    with a one-line warning and converted again: the features are those of a fresh conversion."""
    from PIL import Image

    from emonet_face.runtime import load_encoder

    pytest.importorskip("onnxruntime" if backend == "onnx" else "openvino")
    images = [Image.open(photos[name]).convert("RGB") for name in ("astronaut", "portrait", "landscape")]

    def load(cache: Path):
        return load_encoder(str(tiny_encoder_dir), backend=backend, device="cpu", dtype="float32", compiled_dir=cache)

    fresh = load(tmp_path / "cache")
    expected = fresh.embed(images).numpy()
    graph = fresh.cache_entry / ("encoder.bin" if backend == "openvino" else "encoder.onnx")
    original = graph.read_bytes()
    cut, overwritten = original[: len(original) // 2], bytes(len(original))
    for damaged in (cut, overwritten) if backend == "onnx" else (overwritten,):  # each conversion costs seconds
        graph.write_bytes(damaged)
        with pytest.warns(UserWarning) as caught:
            rebuilt = load(tmp_path / "cache")
        messages = [str(w.message) for w in caught if "conversion cache" in str(w.message)]
        assert len(messages) == 1 and messages[0].startswith(f"{fresh.cache_entry}: damaged conversion cache entry (")
        assert not rebuilt.cache_hit and graph.read_bytes() == original
        np.testing.assert_allclose(rebuilt.embed(images).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("name", ["heads/model.safetensors", "bundle.json"])
def test_damaged_bundle_file_is_one_line_naming_it(name, tiny_encoder_dir, tiny_heads_dir, photos, tmp_path):
    """A bundle file cut short (the weights, checked against the manifest's sizes and SHA-256, or the
    manifest itself): one line naming the file and saying to copy the bundle again."""
    from emonet_face.bundle import write_bundle
    from helpers_cli import one_line_error, run_cli

    bundle = tmp_path / "bundle"
    write_bundle(bundle, encoder=tiny_encoder_dir, heads=tiny_heads_dir)
    data = (bundle / name).read_bytes()
    (bundle / name).write_bytes(data[: len(data) // 2])
    result = run_cli("predict", photos["portrait"], "--model", bundle, "--device", "cpu", "--faces", "none")
    line = one_line_error(result)
    assert line.startswith(f"error: {bundle / name}: ") and line.endswith(("copy the bundle again", "write the bundle again")), line
