"""The Hub code path end to end, against a Hub-compatible server on 127.0.0.1 (tests/hub_server.py)
serving tiny models in the released layouts: first download, cache reuse offline, revisions,
``owner/name@revision``, missing repositories / revisions / files, a server that fails or goes away.
No test reaches the real Hub: huggingface_hub is pointed at the local server (``HF_ENDPOINT`` for a
subprocess, patched constants in this process)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emonet_face import taxonomy as tx
from emonet_face.errors import ModelLoadError
from emonet_face.heads import load_heads
from emonet_face.hub import (
    DEFAULT_ENCODER,
    ENCODER_PATTERNS,
    HEADS_PATTERNS,
    MODELS,
    resolve_model_dir,
    resolve_model_file,
)
from emonet_face.pipeline import EmoNetFace
from helpers_cli import run_cli, run_process
from hub_server import TINY_LARGE, TINY_SMALL, HubServer, hub_env, tree_sha256
from test_pipeline import write_images

pytestmark = pytest.mark.usefixtures("one_thread")

LARGE, SMALL = MODELS["large"].heads, MODELS["small"].heads
NUMERIC = [*tx.HEAD_KEYS, *(f"raw.{k}" for k in tx.HEAD_KEYS), *(f"prob.{k}" for k in tx.EMOTION_KEYS)]


@pytest.fixture
def online(hub, monkeypatch) -> HubServer:
    """huggingface_hub in this process talks to the test server; faults and the log start empty."""
    server = hub.server
    server.start()
    server.clear_faults()
    server.requests.clear()
    with hub_env(server, monkeypatch):
        yield server
    server.clear_faults()
    server.start()  # a test that stopped it leaves it running for the next


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("hub-images"), 3, seed=11)


def assert_same_heads(net: EmoNetFace, folder: Path) -> None:
    expected = load_heads(folder)
    got = net.heads.state_dict()
    assert set(got) == set(expected.state_dict())
    for name, tensor in expected.state_dict().items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0)


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    key = "path" if "path" in a.columns else "index"
    assert a[key].tolist() == b[key].tolist()
    assert a["top1"].tolist() == b["top1"].tolist()
    np.testing.assert_allclose(a[NUMERIC].to_numpy(float), b[NUMERIC].to_numpy(float), atol=1e-6, rtol=0)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# --- the command in a fresh process, configured by HF_ENDPOINT ------------------------------------
def test_predict_downloads_then_reuses_the_cache_offline(hub, images, tmp_path):
    """First run downloads (encoder without its tokenizer, released Large heads), a second run with
    HF_HUB_OFFLINE=1 and the server stopped scores the same rows from the cache, as does a run
    that finds the server gone without being told it is offline."""
    server = hub.server
    server.start()
    server.requests.clear()
    args = ["predict", *images, "--faces", "none", "--num-workers", "0", "--device", "cpu", "--quiet"]
    env = server.env(HF_HOME=str(tmp_path / "hf"))
    first = run_process(*args, "--out", tmp_path / "first.csv", env=env)
    assert first.returncode == 0, first.stderr
    assert server.count(f"GET /api/models/{DEFAULT_ENCODER}/revision/main") == 1
    assert server.count(f"GET /api/models/{LARGE}/revision/main") == 1
    fetched = {p.rsplit("/", 1)[-1] for m, p, _ in server.requests if m == "GET" and "/resolve/" in p}
    assert {"config.json", "preprocessor_config.json"} <= fetched
    assert "tokenizer.json" not in fetched and "README.md" not in fetched  # only what the vision tower needs
    assert server.count("GET /cdn/*") == 1 + len(tx.HEAD_KEYS)  # the encoder weights and 44 heads via the CDN
    server.stop()
    try:
        offline = run_process(*args, "--out", tmp_path / "offline.csv", env={**env, "HF_HUB_OFFLINE": "1"})
        assert offline.returncode == 0, offline.stderr
        gone = run_process(*args, "--out", tmp_path / "gone.csv", env=env)  # not told: huggingface_hub falls back to the cache
        assert gone.returncode == 0, gone.stderr
    finally:
        server.start()
    local = EmoNetFace.from_pretrained(encoder=str(hub.encoder), heads=str(hub.large), device="cpu")
    expected = local.predict(images, faces="none", num_workers=0)
    for name in ("first", "offline", "gone"):
        assert_same_rows(pd.read_csv(tmp_path / f"{name}.csv"), expected)


def test_cli_missing_repository_is_one_line(hub, tmp_path):
    server = hub.server
    server.start()
    emb = tmp_path / "emb.npy"
    np.save(emb, np.ones((2, 32), dtype=np.float32))
    result = run_process("score", emb, "--heads", "laion/no-such-heads", env=server.env(HF_HOME=str(tmp_path / "hf")))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [  # the name reads as a folder too (models/eif-large does)
        "error: laion/no-such-heads: heads folder not found, and no such heads repository on the Hub (or it is "
        f"private); for a folder, `hf download {LARGE} --local-dir laion/no-such-heads` makes it; for a Hub id, "
        "check the id"
    ]


# --- in this process (patched constants): layouts, revisions, errors ------------------------------
def test_small_layout_and_encoder_download(online, hub, images, tmp_path):
    net = EmoNetFace.from_pretrained("small", cache_dir=tmp_path, device="cpu")
    assert net.heads.arch.hidden == TINY_SMALL
    assert_same_heads(net, hub.small)
    snapshot = tmp_path / f"models--{DEFAULT_ENCODER.replace('/', '--')}" / "snapshots" / hub.commits["encoder"]
    assert sorted(p.name for p in snapshot.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    local = EmoNetFace.from_pretrained(encoder=str(hub.encoder), heads=str(hub.small), device="cpu")
    assert_same_rows(net.predict(images, faces="none", num_workers=0), local.predict(images, faces="none", num_workers=0))


@pytest.mark.parametrize(
    ("revision", "expected"),
    [(None, "large"), ("main", "large"), ("v1.0", "large_v1"), ("exp", "large_exp"), ("commit:large_v1", "large_v1")],
)
def test_heads_revision_by_branch_tag_and_commit(online, hub, tmp_path, revision, expected):
    if revision and revision.startswith("commit:"):
        revision = hub.commits[revision.removeprefix("commit:")]
    net = EmoNetFace.from_pretrained(revision=revision, cache_dir=tmp_path, with_encoder=False, device="cpu")
    assert net.heads.arch.hidden == TINY_LARGE
    assert_same_heads(net, getattr(hub, expected))
    folder = resolve_model_dir(LARGE, revision=revision, cache_dir=tmp_path, allow_patterns=HEADS_PATTERNS)
    assert folder.name == hub.commits[expected]  # the snapshot of the resolved commit


def test_at_revision_in_the_id_and_on_the_command_line(online, hub, tmp_path):
    net = EmoNetFace.from_pretrained(heads=f"{LARGE}@exp", cache_dir=tmp_path, with_encoder=False, device="cpu")
    assert_same_heads(net, hub.large_exp)
    encoder = EmoNetFace.from_pretrained(
        encoder=f"{DEFAULT_ENCODER}@enc-v1", heads=str(hub.large), cache_dir=tmp_path, device="cpu"
    ).encoder
    assert encoder.revision == "enc-v1"
    emb = tmp_path / "emb.npy"
    np.save(emb, np.random.default_rng(0).normal(size=(3, 32)).astype(np.float32))
    tables = {}
    for name, extra in {"tag": ["--revision", "v1.0"], "at": ["--heads", f"{LARGE}@v1.0"], "main": []}.items():
        out = tmp_path / f"{name}.csv"
        result = run_cli("score", str(emb), "--out", str(out), "--cache-dir", str(tmp_path), *extra)
        assert result.exit_code == 0, result.output
        tables[name] = pd.read_csv(out)
    assert_same_rows(tables["tag"], tables["at"])
    with pytest.raises(AssertionError):  # main holds other weights than v1.0
        assert_same_rows(tables["tag"], tables["main"])


def test_missing_repository_and_revision(online, hub, tmp_path):
    with pytest.raises(ModelLoadError) as info:
        EmoNetFace.from_pretrained(heads="laion/no-such-heads", cache_dir=tmp_path, with_encoder=False)
    assert one_line(info).startswith(
        "laion/no-such-heads: heads folder not found, and no such heads repository on the Hub (or it is private); "
    )
    with pytest.raises(ModelLoadError) as info:
        EmoNetFace.from_pretrained(revision="v9.9", cache_dir=tmp_path, with_encoder=False)
    assert one_line(info) == f"{LARGE}: revision 'v9.9' not found; check --revision"
    with pytest.raises(ModelLoadError) as info:
        EmoNetFace.from_pretrained(encoder="google/no-such-encoder", heads=str(hub.large), cache_dir=tmp_path)
    assert "no such encoder repository on the Hub" in one_line(info)


def test_files_missing_from_a_repository(online, hub, tmp_path):
    server = online
    server.repo("someone/empty-heads").commit({"README.md": b"# no weights here\n"})
    with pytest.raises(ModelLoadError) as info:
        EmoNetFace.from_pretrained(heads="someone/empty-heads", cache_dir=tmp_path, with_encoder=False)
    assert one_line(info) == (
        "someone/empty-heads: no heads files in this repository (*.pth, neutral_stats*, *.json, *.safetensors); "
        "check the id and the revision"
    )
    server.repo("someone/stats-only").commit({"neutral_stats.json": b"{}"})
    with pytest.raises(ModelLoadError) as info:
        EmoNetFace.from_pretrained(heads="someone/stats-only", cache_dir=tmp_path, with_encoder=False)
    assert "no model_<key>_best.pth head files" in one_line(info)

    files = {p.name: p.read_bytes() for p in hub.encoder.iterdir() if p.name != "preprocessor_config.json"}
    server.repo("someone/no-processor").commit(files)
    with pytest.raises(ModelLoadError) as info:
        EmoNetFace.from_pretrained(encoder="someone/no-processor", heads=str(hub.large), cache_dir=tmp_path)
    assert "no usable image processor (preprocessor_config.json)" in one_line(info)

    server.repo("someone/detector").commit({"README.md": b"# a detector without its weights\n"})
    with pytest.raises(ModelLoadError) as info:
        resolve_model_file("someone/detector/face.onnx", what="face detector weights")
    assert one_line(info) == (
        "someone/detector/face.onnx: no such file in the face detector weights repository on the Hub; check the path"
    )


def test_server_error_500_then_retry(online, hub, tmp_path):
    server = online
    server.fail("GET /api/models/*", status=500, times=-1)  # the Hub is down
    with pytest.raises(ModelLoadError) as info:
        EmoNetFace.from_pretrained(cache_dir=tmp_path, with_encoder=False)
    assert one_line(info) == (
        f"{LARGE}: heads not in the local Hugging Face cache and the Hub could not be reached; run once with "
        f"network access (or `hf download {LARGE}`), or pass a local heads folder with --heads DIR"
    )
    server.clear_faults()
    server.fail(f"HEAD /{LARGE}/resolve/*/model_anger_best.pth", status=500, times=1)  # one transient failure
    net = EmoNetFace.from_pretrained(cache_dir=tmp_path, with_encoder=False)  # the retry completes
    assert_same_heads(net, hub.large)
    assert server.count(f"HEAD /{LARGE}/resolve/*/model_anger_best.pth") == 2  # failed once, retried once


def test_connection_cut_mid_download_resumes_with_range(online, hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    server = online
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64)  # keep the partial body (real files: 10 MB chunks)
    server.cut("GET /cdn/*", after=1000, times=1)
    folder = resolve_model_dir(DEFAULT_ENCODER, cache_dir=tmp_path, allow_patterns=ENCODER_PATTERNS)
    resumed = [h["range"] for m, p, h in server.requests if m == "GET" and p.startswith("/cdn/") and "range" in h]
    assert resumed and all(r.startswith("bytes=") and r != "bytes=0-" for r in resumed)
    assert tree_sha256(folder) == tree_sha256(hub.encoder)  # complete and intact


class _NoWait:
    """``time`` for huggingface_hub's retry loops without the waiting (its back-off sleeps 1+2+4+8+8 s
    before it gives up on a server that went away); everything else is the real module."""

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        return None


def test_server_gone_mid_download_then_retry_completes(online, hub, tmp_path, monkeypatch):
    server = online
    for module in ("huggingface_hub.utils._http", "huggingface_hub.file_download"):
        monkeypatch.setattr(f"{module}.time", _NoWait())
    server.cut("GET /cdn/*", after=1000, times=1, stop_server=True)  # the machine goes away mid-file
    with pytest.raises(ModelLoadError) as info:
        EmoNetFace.from_pretrained(cache_dir=tmp_path, with_encoder=False)
    text = one_line(info)  # which request notices first decides the wording; both say what to do
    assert text.startswith(f"{LARGE}: ")
    assert "; retry (a new run resumes from the cache)" in text or "; run once with network access" in text
    assert not server.running
    server.start()  # back on the same address
    net = EmoNetFace.from_pretrained(cache_dir=tmp_path, with_encoder=False)
    assert_same_heads(net, hub.large)
