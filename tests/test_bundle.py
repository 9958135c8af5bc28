"""`emonet-face download` bundles: written from a Hub-compatible server on 127.0.0.1 (tests/hub_server.py)
serving tiny released-layout models, then run by predict, serve, embed and the Ray engine with the
server stopped, HF_HUB_OFFLINE=1 and an empty HF_HOME: rows equal to the run from the Hub; damaged
bundles and bundles of a newer format are refused with one-line errors naming the file."""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from emonet_face import __version__
from emonet_face import taxonomy as tx
from emonet_face.bundle import FORMAT_VERSION, MANIFEST_FILE, BundleError, open_bundle, sha256_file
from emonet_face.data.store import read_store
from emonet_face.errors import ModelLoadError
from emonet_face.heads import load_heads
from emonet_face.hub import DEFAULT_ENCODER, MODELS
from emonet_face.pipeline import EmoNetFace
from helpers_cli import run_cli, run_process
from hub_server import TINY_LARGE, TINY_SMALL, Published, hub_env
from test_pipeline import write_images

pytestmark = pytest.mark.usefixtures("one_thread")

NUMERIC = [*tx.HEAD_KEYS, *(f"raw.{k}" for k in tx.HEAD_KEYS), *(f"prob.{k}" for k in tx.EMOTION_KEYS)]


@contextmanager
def online(hub: Published):
    """huggingface_hub in this process talks to the test server."""
    hub.server.start()
    with pytest.MonkeyPatch.context() as patch, hub_env(hub.server, patch):
        yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf-cache")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("bundle-images"), 3, seed=21)


@pytest.fixture(scope="module")
def bundles(hub, cache, tmp_path_factory) -> dict[str, Path]:
    """``download large`` (with the OpenVINO encoder) and ``download small``, through the CLI, from the server."""
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    with online(hub):
        for name, extra in {"large": ["--with-openvino"], "small": []}.items():
            out[name] = root / name
            args = ["download", name, "--out", str(out[name]), "--cache-dir", str(cache), *extra]
            result = run_cli(*args)
            assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def hub_rows(hub, cache, images) -> dict[str, pd.DataFrame]:
    """The rows of a run from the Hub (the same cache the bundles were made from)."""
    with online(hub):
        return {
            name: EmoNetFace.from_pretrained(name, cache_dir=cache, device="cpu").predict(images, faces="none", num_workers=0)
            for name in ("large", "small")
        }


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-6) -> None:
    assert [Path(p).name for p in a["path"]] == [Path(p).name for p in b["path"]]
    assert a["top1"].tolist() == b["top1"].tolist()
    np.testing.assert_allclose(a[NUMERIC].to_numpy(float), b[NUMERIC].to_numpy(float), atol=atol, rtol=0)


def air_gapped(tmp_path: Path, hub: Published) -> dict[str, str]:
    """No network and no Hugging Face cache: offline, an empty HF_HOME, and the Hub address pointing nowhere."""
    (tmp_path / "empty-hf-home").mkdir()
    return {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "empty-hf-home"),
        "HF_ENDPOINT": hub.server.url,  # stopped: a request would fail
        "EMONET_FACE_CACHE": str(tmp_path / "converted"),
    }


@contextmanager
def server_stopped(hub: Published):
    hub.server.stop()
    try:
        yield
    finally:
        hub.server.start()


def damaged_copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    return copy


# --- what a bundle holds ------------------------------------------------------------------------------
def test_bundle_holds_the_vision_tower_heads_and_a_manifest(bundles, hub):
    large = open_bundle(bundles["large"])
    files = large.manifest["files"]
    assert sorted(files) == [
        "encoder/config.json",
        "encoder/model.safetensors",
        "encoder/preprocessor_config.json",
        "heads/config.json",
        "heads/model.safetensors",
        "openvino/encoder.bin",
        "openvino/encoder.xml",
    ]
    assert sorted(p.name for p in bundles["large"].iterdir()) == [MANIFEST_FILE, "encoder", "heads", "openvino"]
    umask = os.umask(0)
    os.umask(umask)
    assert bundles["large"].stat().st_mode & 0o777 == 0o777 & ~umask  # readable by others, as a copied folder
    for name, entry in files.items():
        path = bundles["large"] / name
        assert entry == {"size": path.stat().st_size, "sha256": sha256_file(path)}
    m = large.manifest
    assert (m["format"], m["format_version"], m["model"], m["normalize"]) == ("emonet-face-bundle", 1, "large", True)
    assert m["encoder"] | {"weights_dtype": None} == {
        "id": DEFAULT_ENCODER,
        "revision": None,
        "commit": hub.commits["encoder"],
        "license": "Apache-2.0",
        "folder": "encoder",
        "model_type": "siglip_vision_model",
        "dim": 32,
        "image_size": [32, 32],
        "weights_dtype": None,
    }
    assert m["heads"]["id"] == MODELS["large"].heads and m["heads"]["commit"] == hub.commits["large"]
    assert (m["heads"]["license"], m["heads"]["widths"], m["heads"]["count"]) == ("CC-BY-4.0", [32, *TINY_LARGE, 1], 44)
    assert m["openvino"]["graph"] == "encoder.xml" and m["emonet_face"] and m["versions"]["torch"]

    from safetensors import safe_open

    with safe_open(str(bundles["large"] / "encoder/model.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
    assert keys and all(k.startswith("vision_model.") for k in keys)  # no text tower
    heads = load_heads(bundles["large"] / "heads")  # neutral means travel inside heads/config.json
    released = load_heads(hub.large)
    np.testing.assert_array_equal(heads.neutral_mean.numpy(), released.neutral_mean.numpy())
    assert released.neutral_mean.abs().sum() > 0
    small = open_bundle(bundles["small"]).manifest
    assert small["openvino"] is None and small["heads"]["widths"] == [32, *TINY_SMALL, 1]
    assert small["heads"]["commit"] == hub.commits["small"]


def test_check_prints_what_the_bundle_holds(bundles, hub):
    result = run_cli("download", "--check", str(bundles["large"]))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{bundles['large']}: emonet-face bundle (format 1)" in out
    assert f"encoder   {DEFAULT_ENCODER} @ {hub.commits['encoder']}  licence: Apache-2.0" in out
    assert f"heads     {MODELS['large'].heads} @ {hub.commits['large']}  licence: CC-BY-4.0" in out
    assert "44 heads, 32 > 16 > 8 > 4 > 1" in out
    assert "7 files" in out and "all SHA-256 checksums match" in out
    for name in open_bundle(bundles["large"]).manifest["files"]:
        assert name in out


# --- running a bundle air-gapped ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["large", "small"])
def test_predict_runs_a_bundle_with_no_network_and_no_cache(bundles, hub, hub_rows, images, tmp_path, name):
    env = air_gapped(tmp_path, hub)
    args = ["predict", *images, "--model", bundles[name], "--out", tmp_path / "rows.csv", "--faces", "none"]
    with server_stopped(hub):
        result = run_process(*args, "--num-workers", "0", "--device", "cpu", "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    assert_same_rows(pd.read_csv(tmp_path / "rows.csv"), hub_rows[name])
    assert not any((tmp_path / "empty-hf-home").iterdir())  # nothing was cached, nothing fetched


def test_serve_runs_a_bundle(bundles, hub, hub_rows, images):
    from emonet_face.serve import ServeConfig
    from serve_helpers import serving

    config = ServeConfig(model=str(bundles["large"]), device="cpu", faces="none", workers=1)
    with server_stopped(hub), serving(config) as (url, _):
        files = [("file", (p.name, p.read_bytes())) for p in images]
        response = httpx.post(f"{url}/v1/predict", files=files, timeout=120)
        info = httpx.get(f"{url}/v1/info", timeout=30).json()
    assert response.status_code == 200, response.text
    assert_same_rows(pd.DataFrame(response.json()["rows"]), hub_rows["large"], atol=1e-5)
    assert str(bundles["large"]) in json.dumps(info)


def test_embed_with_a_bundle_encoder(bundles, hub, images, tmp_path):
    stores = {}
    for name, encoder in {"bundle": bundles["small"], "source": hub.encoder}.items():
        stores[name] = tmp_path / name
        args = ["embed", str(images[0].parent), "--out", str(stores[name]), "--encoder", str(encoder)]
        result = run_cli(*args, "--device", "cpu", "--no-progress", "--num-workers", "0")
        assert result.exit_code == 0, result.output
    (a, ids_a), (b, ids_b) = read_store(stores["bundle"]), read_store(stores["source"])
    assert ids_a["id"].tolist() == ids_b["id"].tolist() and len(a) == len(images)
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_stored_openvino_encoder_is_used_without_converting(bundles, hub, cache, images, tmp_path):
    converted = tmp_path / "converted"
    net = EmoNetFace.from_pretrained(
        str(bundles["large"]), backend="openvino", dtype="float32", device="cpu", compiled_dir=converted
    )
    assert net.encoder.cache_hit and net.encoder.cache_entry == bundles["large"] / "openvino"
    assert [p.name.startswith("ov-blobs-") for p in converted.iterdir()] == [True]  # OpenVINO's blobs, no conversion
    with online(hub):  # the same encoder converted from the Hub checkpoint
        ref = EmoNetFace.from_pretrained("large", cache_dir=cache, backend="openvino", dtype="float32", device="cpu")
    assert_same_rows(net.predict(images, faces="none", num_workers=0), ref.predict(images, faces="none", num_workers=0), atol=1e-6)


def test_ray_engine_runs_a_bundle(bundles, hub_rows, images, tmp_path, ray_local):
    args = ["predict", *map(str, images), "--model", str(bundles["large"]), "--engine", "ray"]
    args += ["--out", str(tmp_path / "parts"), "--faces", "none", "--device", "cpu"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "parts").sort_values("path").reset_index(drop=True)
    expected = hub_rows["large"].sort_values("path").reset_index(drop=True)
    assert_same_rows(table, expected, atol=1e-5)


# --- refusing what cannot be trusted -----------------------------------------------------------------
def test_damaged_bundles_are_refused_naming_the_file(bundles, images, tmp_path):
    bundle = damaged_copy(bundles["small"], tmp_path)
    weights = bundle / "encoder" / "model.safetensors"
    original = weights.read_bytes()

    def refused() -> str:
        with pytest.raises(BundleError) as info:
            EmoNetFace.from_pretrained(str(bundle), device="cpu")
        assert "\n" not in str(info.value)
        return str(info.value)

    weights.write_bytes(original[: len(original) // 2])  # truncated copy
    assert refused() == (
        f"{weights}: {len(original) // 2} bytes, the manifest says {len(original)} (truncated or replaced); "
        "copy the bundle again"
    )
    edited = bytearray(original)
    edited[-10] ^= 0xFF  # same size, one byte changed
    weights.write_bytes(bytes(edited))
    assert refused() == f"{weights}: SHA-256 does not match the manifest (the file was changed); copy the bundle again"
    weights.write_bytes(original)
    (bundle / "heads" / "config.json").rename(bundle / "heads-config.json")
    assert (
        refused() == f"{bundle / 'heads' / 'config.json'}: missing from the bundle; copy the whole bundle folder again"
    )
    (bundle / "heads-config.json").rename(bundle / "heads" / "config.json")
    (bundle / "encoder" / "model.safetensors.index.json").write_text("{}")
    assert refused().startswith(f"{bundle / 'encoder' / 'model.safetensors.index.json'}: not listed in the bundle")
    (bundle / "encoder" / "model.safetensors.index.json").unlink()
    EmoNetFace.from_pretrained(str(bundle), device="cpu", with_encoder=False)  # intact again

    weights.write_bytes(original[:100])
    predict = ["predict", str(images[0]), "--model", str(bundle), "--faces", "none", "--device", "cpu"]
    for args in (["download", "--check", str(bundle)], predict):
        result = run_cli(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [
            f"error: {weights}: 100 bytes, the manifest says {len(original)} (truncated or replaced); "
            "copy the bundle again"
        ]


def test_each_runtime_checks_the_weights_it_reads(bundles, images, tmp_path):
    """With the stored OpenVINO graph the PyTorch weights are not read, so not checked (and the other
    way round); --check checks both."""
    bundle = damaged_copy(bundles["large"], tmp_path)
    torch_weights, graph_weights = bundle / "encoder" / "model.safetensors", bundle / "openvino" / "encoder.bin"
    for damaged, runs, refused in ((torch_weights, "openvino", "torch"), (graph_weights, "torch", "openvino")):
        original = damaged.read_bytes()
        damaged.write_bytes(original[:100])
        net = EmoNetFace.from_pretrained(str(bundle), backend=runs, dtype="float32", device="cpu")
        assert net.predict(images[:1], faces="none", num_workers=0)["error"].isna().all()
        with pytest.raises(BundleError, match=f"^{damaged}: 100 bytes, the manifest says"):
            EmoNetFace.from_pretrained(str(bundle), backend=refused, dtype="float32", device="cpu")
        result = run_cli("download", "--check", str(bundle))
        assert result.exit_code == 2 and str(damaged) in result.stderr
        damaged.write_bytes(original)


def test_unchanged_files_are_not_hashed_twice(bundles, tmp_path, monkeypatch):
    """A file checked before and untouched since (size, times, inode) is trusted, as git trusts its
    index; an edit that even keeps the modification time is caught (the change time moves); --check
    hashes everything."""
    import emonet_face.bundle as bundle_module

    monkeypatch.setenv("EMONET_FACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bundle_module, "_RACY_S", 0.05)
    hashed: list[str] = []
    real = bundle_module.sha256_file
    monkeypatch.setattr(bundle_module, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    bundle = damaged_copy(bundles["small"], tmp_path)
    time.sleep(0.1)
    for _ in range(2):
        EmoNetFace.from_pretrained(str(bundle), device="cpu")
    # the first load hashed the five files it reads, the second none
    assert sorted(hashed) == sorted(["config.json", "model.safetensors"] * 2 + ["preprocessor_config.json"])
    hashed.clear()
    weights = bundle / "heads" / "model.safetensors"
    before, original = weights.stat(), weights.read_bytes()
    edited = bytearray(original)
    edited[-5] ^= 0xFF
    time.sleep(0.1)
    weights.write_bytes(bytes(edited))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same modification time
    with pytest.raises(BundleError, match="SHA-256 does not match"):
        EmoNetFace.from_pretrained(str(bundle), device="cpu", with_encoder=False)
    assert hashed == ["model.safetensors"]  # the heads config is trusted, the edited weights are not
    weights.write_bytes(original)
    hashed.clear()
    result = run_cli("download", "--check", str(bundle))
    assert result.exit_code == 0, result.output
    assert len(hashed) == len(open_bundle(bundle, verify=False).manifest["files"])  # every file, every time


def test_a_newer_bundle_format_is_refused(bundles, tmp_path):
    bundle = damaged_copy(bundles["small"], tmp_path)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    manifest["emonet_face"] = "9.0.0"
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    expected = (
        f"{bundle}: written by a newer emonet-face (9.0.0, bundle format {FORMAT_VERSION + 1}); this emonet-face "
        f"({__version__}) reads bundle format {FORMAT_VERSION}: upgrade emonet-face, or write the bundle again with this version"
    )
    with pytest.raises(BundleError) as info:
        EmoNetFace.from_pretrained(str(bundle), device="cpu")
    assert str(info.value) == expected
    result = run_cli("download", "--check", str(bundle))
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {expected}"


def test_a_bundle_takes_no_encoder_heads_or_revision(bundles, hub):
    for override in ({"heads": str(hub.large)}, {"encoder": str(hub.encoder)}, {"revision": "v1.0"}):
        with pytest.raises(ModelLoadError, match="a bundle holds its encoder and heads at fixed revisions"):
            EmoNetFace.from_pretrained(str(bundles["small"]), device="cpu", **override)


def test_download_errors_are_one_line(hub, bundles, tmp_path):
    result = run_cli("download", "large", "--out", str(bundles["small"]))
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: {bundles['small']}: already exists and is not empty; choose a new --out folder"
    )
    result = run_cli("download", "medium", "--out", str(tmp_path / "b"))
    assert result.stderr.strip() == "error: medium: unknown model; choose one of large, small"
    result = run_cli("download", "large")
    assert result.exit_code == 2 and "--out is required" in result.stderr
    # offline (the suite's HF_HUB_OFFLINE=1) with an empty cache: says how to get the files
    result = run_cli("download", "large", "--out", str(tmp_path / "b"), "--cache-dir", str(tmp_path))
    assert result.exit_code == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {MODELS['large'].heads}: heads not in the local Hugging Face cache and offline mode is on "
        f"(HF_HUB_OFFLINE=1); run once with network access (or `hf download {MODELS['large'].heads}`), or pass a "
        "local heads folder with --heads DIR"
    ]
    assert not (tmp_path / "b").exists()
