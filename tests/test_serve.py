"""`emonet-face serve` over real HTTP on 127.0.0.1 (uvicorn in a thread; a subprocess for SIGTERM):
every endpoint, rows equal to the CLI's, every bad input, the queue limit, concurrency, the API key."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emonet_face import taxonomy as tx
from emonet_face.outputs import read_table
from emonet_face.serve import Batcher, QueueFull, ServeConfig, create_app
from helpers_cli import emonet_command, run_cli, subprocess_env
from serve_helpers import free_port, loading_server, make_config, running_server, serve_process, serving, wait_healthy

pytestmark = pytest.mark.usefixtures("one_thread")


# --- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny_encoder_dir, tiny_heads_dir):
    """The server under test (real model loading through the CLI's loader), 1 MB upload limit."""
    with serving(make_config(tiny_encoder_dir, tiny_heads_dir, max_upload_mb=1.0)) as started:
        yield started


@pytest.fixture(scope="module")
def photos(photos, tmp_path_factory) -> dict[str, Path]:
    """The suite's face, group and landscape (no face) under plain names, and a file that is not a picture."""
    folder = tmp_path_factory.mktemp("serve-photos")
    paths = {key: folder / name for key, name in
             [("astronaut", "astronaut.png"), ("group", "group.jpg"), ("landscape", "landscape.png")]}  # fmt: skip
    for key, path in paths.items():
        shutil.copyfile(photos[key], path)
    paths["broken"] = folder / "broken.jpg"
    paths["broken"].write_bytes(b"this is not a picture")
    return paths


def cli_rows(paths: list[Path], tiny_encoder_dir, tiny_heads_dir, tmp_path: Path, *extra: str) -> pd.DataFrame:
    out = tmp_path / f"cli-{len(list(tmp_path.iterdir()))}.csv"
    args = ["predict", *map(str, paths), "--out", str(out), "--num-workers", "0", "--quiet"]
    args += ["--encoder", str(tiny_encoder_dir), "--heads", str(tiny_heads_dir), "--device", "cpu", *extra]
    result = run_cli(*args)
    assert result.exit_code in (0, 1), result.output
    table = read_table(out)
    table["path"] = [Path(p).name for p in table["path"]]
    folders = {f"{p.parent}/" for p in paths}  # the CLI names files by path, the server by upload name
    table["error"] = [e if pd.isna(e) else _strip(e, folders) for e in table["error"]]
    return table


def _strip(text: str, folders: set[str]) -> str:
    for folder in folders:
        text = text.replace(folder, "")
    return text


def assert_rows_equal(rows: list[dict], expected: pd.DataFrame) -> None:
    """Same columns in the same order, same identifiers and messages, numbers within float tolerance."""
    got = pd.DataFrame(rows)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for column in expected.columns:
        want = expected[column]
        have = got[column]
        if pd.api.types.is_numeric_dtype(want) and not pd.api.types.is_bool_dtype(want):
            np.testing.assert_allclose(
                have.astype(float).to_numpy(), want.astype(float).to_numpy(), atol=1e-5, rtol=1e-5, err_msg=column
            )
        else:
            norm = lambda s: [None if pd.isna(v) else str(v) for v in s]  # noqa: E731
            assert norm(have) == norm(want), column


def post_files(url: str, paths: list[Path], **kwargs) -> httpx.Response:
    files = [("file", (p.name, p.read_bytes())) for p in paths]
    return httpx.post(f"{url}/v1/predict", files=files, timeout=120, **kwargs)


def assert_error(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    message = body["error"]
    assert "\n" not in message and "Traceback" not in message and "/tmp/" not in message
    for word in words:
        assert word in message, message
    return message


def assert_healthy(url: str) -> None:
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}


# --- endpoints ----------------------------------------------------------------------------------------
def test_health_info_openapi_docs_and_page(server):
    url, _ = server
    assert_healthy(url)
    info = httpx.get(f"{url}/v1/info").json()
    from emonet_face import __version__
    from emonet_face.viz.charts import FAMILY_COLOURS

    assert info["head_keys"] == list(tx.HEAD_KEYS)
    assert [e["key"] for e in info["emotions"]] == list(tx.EMOTION_KEYS)
    assert [e["name"] for e in info["emotions"]] == [e.name for e in tx.EMOTIONS]
    assert {f["name"]: f["colour"] for f in info["families"]} == FAMILY_COLOURS
    assert [d["key"] for d in info["dimensions"]] == list(tx.EXTRA_KEYS)
    assert info["package_version"] == __version__
    # what runs ("auto" resolved; conftest pins the test suite to torch float32), not what was asked
    assert info["backend"] == "torch" and info["precision"] == "float32" and info["device"] == "cpu"
    assert info["settings"]["backend"] == "auto"
    assert info["encoder"].endswith(Path(info["encoder"]).name) and info["heads"]
    # what is served: the tiny local folders, not the released model --model defaults to
    assert info["heads_source"] == info["encoder_source"] == "folder"
    assert info["model"] == f"{Path(info['heads']).name} + {Path(info['encoder']).name}"
    assert "api_key" not in info["settings"]

    schema = httpx.get(f"{url}/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert {"/health", "/v1/info", "/v1/predict"} <= set(schema["paths"])

    docs = httpx.get(f"{url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn" not in docs.text and "https://" not in docs.text.replace("https://swagger.io", "")
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "https://" not in page.text and "http://" not in page.text.replace('xmlns="http://', "")
    for asset in ("/static/app.js", "/static/style.css"):
        response = httpx.get(f"{url}{asset}")
        assert response.status_code == 200 and len(response.text) > 500
        assert "https://" not in response.text
    for asset in (s for s in __import__("re").findall(r'(?:src|href)="(/static/[^"]+)"', docs.text)):
        assert httpx.get(f"{url}{asset}").status_code == 200, asset


# --- rows equal the CLI's --------------------------------------------------------------------------------
def test_rows_equal_the_cli_rows(server, photos, tiny_encoder_dir, tiny_heads_dir, tmp_path):
    url, _ = server
    paths = [photos["astronaut"], photos["group"], photos["landscape"], photos["broken"]]
    response = post_files(url, paths)
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    expected = cli_rows(paths, tiny_encoder_dir, tiny_heads_dir, tmp_path)
    assert_rows_equal(rows, expected)
    # one row per face (the group photo has two), a row for the face-less picture, an error row
    assert [r["path"] for r in rows].count("group.jpg") == 2
    broken = [r for r in rows if r["path"] == "broken.jpg"]
    assert broken[0]["error"].startswith("broken.jpg: not a readable image") and broken[0]["top1"] is None
    assert rows[0]["face"] == 0 and isinstance(rows[0]["prob.elation"], float)

    # faces=none as a form field: whole pictures, no face columns, as predict --faces none
    response = post_files(url, paths[:3], data={"faces": "none"})
    assert_rows_equal(response.json()["rows"], cli_rows(paths[:3], tiny_encoder_dir, tiny_heads_dir, tmp_path, "--faces", "none"))


def test_json_base64_images_are_named_image_i(server, photos, tiny_encoder_dir, tiny_heads_dir, tmp_path):
    url, _ = server
    blobs = [base64.b64encode(photos[k].read_bytes()).decode() for k in ("landscape", "astronaut")]
    blobs[1] = "data:image/png;base64," + blobs[1]  # a data URL (what browsers produce) works too
    response = httpx.post(f"{url}/v1/predict?faces=detect", json={"images": blobs}, timeout=60)
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    expected = cli_rows([photos["landscape"], photos["astronaut"]], tiny_encoder_dir, tiny_heads_dir, tmp_path,
                        "--faces", "detect")  # fmt: skip
    expected["path"] = expected["path"].map({"landscape.png": "image0", "astronaut.png": "image1"})
    assert_rows_equal(rows, expected)


def test_a_video_with_fps_and_max_frames_fields(server, photos, tiny_encoder_dir, tiny_heads_dir, tmp_path):
    from conftest import face_video

    url, _ = server
    video = face_video(tmp_path / "clip.mp4", Image.open(photos["astronaut"]), seconds=2)
    paths = [video, photos["landscape"]]
    response = post_files(url, paths, data={"fps": "2", "max_frames": "3", "faces": "detect"})
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    expected = cli_rows(paths, tiny_encoder_dir, tiny_heads_dir, tmp_path, "--fps", "2", "--max-frames", "3",
                        "--faces", "detect")  # fmt: skip
    assert_rows_equal(rows, expected)
    assert [r["frame"] for r in rows if r["path"] == "clip.mp4"] == [0, 5, 10]


# --- bad input -------------------------------------------------------------------------------------------------
def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` (and whose pixels are missing): a bomb is
    refused from its header, so the missing pixels are never reached."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_each_bad_input_gets_its_status_and_the_server_stays_healthy(server, photos):
    url, _ = server
    predict = f"{url}/v1/predict"
    cases = [
        (post_files(url, [photos["broken"]]), 400, ["broken.jpg", "not a readable image"]),
        (httpx.post(predict, files=[("file", ("bomb.png", png_header_only(30_000, 20_000)))]), 400,
         ["bomb.png", "too large to decode safely", "600,000,000"]),
        (httpx.post(predict, data={"faces": "none"}, files=[("other", ("a.png", b"x"))]), 400, ["'file'"]),
        (httpx.post(predict, content=b"hello", headers={"content-type": "text/plain"}), 400, ["content type"]),
        (httpx.post(predict, content=b"{nope", headers={"content-type": "application/json"}), 400, ["JSON"]),
        (httpx.post(predict, json={"images": "abc"}), 400, ['"images"']),
        (httpx.post(predict, json={"images": []}), 400, ["no images"]),
        (httpx.post(predict, json={"images": ["***"]}), 400, ["images[0]", "base64"]),
        (post_files(url, [photos["astronaut"]], params={"faces": "sideways"}), 422, ["faces=sideways"]),
        (post_files(url, [photos["astronaut"]], data={"max_frames": "0"}), 422, ["max_frames"]),
        (post_files(url, [photos["astronaut"]], params={"fps": "0"}), 422, ["fps"]),
        (post_files(url, [photos["astronaut"]], params={"fps": "fast"}), 422, ["fps"]),
        (httpx.get(predict), 405, ["GET /v1/predict"]),
        (httpx.get(f"{url}/v2/nothing"), 404, ["/v2/nothing"]),
    ]  # fmt: skip
    for response, status, words in cases:
        assert_error(response, status, *words)
    assert_healthy(url)
    assert post_files(url, [photos["astronaut"]]).status_code == 200


def test_uploads_over_the_limit_are_refused_while_reading(server, photos):
    url, _ = server
    big = os.urandom(1_600_000)  # over the 1 MB limit
    declared = httpx.post(f"{url}/v1/predict", files=[("file", ("big.png", big))], timeout=60)
    assert_error(declared, 413, "upload limit", "--max-upload-mb")

    def chunks():  # no Content-Length: counted while reading
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    streamed = httpx.post(
        f"{url}/v1/predict", content=chunks(), headers={"content-type": "application/json"}, timeout=60
    )
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "upload limit")
    assert_healthy(url)
    assert post_files(url, [photos["landscape"]]).status_code == 200


def test_a_crash_is_a_json_500_without_traceback(server, photos):
    url, app = server
    batcher = app.state.service.batcher
    original = batcher.fn

    def broken(items):
        raise RuntimeError("/secret/internal/path exploded")

    batcher.fn = broken
    try:
        message = assert_error(post_files(url, [photos["landscape"]], params={"faces": "none"}), 500, "internal error")
        assert "secret" not in message
    finally:
        batcher.fn = original
    assert_healthy(url)
    assert post_files(url, [photos["landscape"]]).status_code == 200


def test_a_full_queue_answers_503_with_retry_after(server, photos):
    url, app = server
    batcher = app.state.service.batcher
    original, limit = batcher.fn, batcher.max_queue
    release = threading.Event()
    entered = threading.Event()

    def slow(items):
        entered.set()
        release.wait(30)
        return original(items)

    batcher.fn, batcher.max_queue = slow, 1
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post_files, url, [photos["landscape"]], params={"faces": "none"})
            assert entered.wait(30)  # the first request is in the encoder
            second = pool.submit(post_files, url, [photos["landscape"]], params={"faces": "none"})
            deadline = time.monotonic() + 30
            while batcher.depth < 1 and time.monotonic() < deadline:  # the second one waits in the queue
                time.sleep(0.01)
            refused = post_files(url, [photos["landscape"]], params={"faces": "none"})
            release.set()
            assert first.result().status_code == 200 and second.result().status_code == 200
        assert_error(refused, 503, "busy")
        assert refused.headers["retry-after"] == "1"
    finally:
        release.set()
        batcher.fn, batcher.max_queue = original, limit
    assert_healthy(url)


# --- concurrency -----------------------------------------------------------------------------------------
def test_concurrent_requests_each_get_their_own_rows(server, net, tmp_path):
    url, app = server
    rng = np.random.default_rng(7)
    clients = 12
    inputs = {}
    for c in range(clients):  # two distinct pictures per client, different sizes
        for part in "ab":
            path = tmp_path / f"client{c:02d}-{part}.png"
            Image.fromarray(rng.integers(0, 255, (40 + c, 48 + 3 * c, 3), dtype=np.uint8)).save(path)
            inputs.setdefault(c, []).append(path)
    expected = net.predict([p for c in range(clients) for p in inputs[c]], faces="none", num_workers=0)
    expected["path"] = [Path(p).name for p in expected["path"]]
    batches_before = app.state.service.batcher.batches

    with ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(lambda c: post_files(url, inputs[c], params={"faces": "none"}), range(clients)))
    for c, response in enumerate(responses):
        assert response.status_code == 200, response.text
        want = expected[expected["path"].str.startswith(f"client{c:02d}-")].reset_index(drop=True)
        assert_rows_equal(response.json()["rows"], want)
    assert app.state.service.batcher.batches - batches_before <= 2 * clients  # never more batches than items


def test_batcher_groups_waiting_items_and_returns_each_its_result():
    sizes: list[int] = []
    gate = threading.Event()

    def double(items):
        sizes.append(len(items))
        gate.wait(10)
        return [2 * i for i in items]

    batcher = Batcher(double, max_batch_size=4, timeout_s=0.0, max_queue=6).start()
    try:
        first = batcher.submit([100])
        while not sizes:
            time.sleep(0.001)
        waiting = [batcher.submit([i, i + 1]) for i in (0, 10, 20)]  # 6 items wait while the first batch runs
        with pytest.raises(QueueFull):
            batcher.submit([99])
        gate.set()
        assert first[0].result(10) == 200
        assert [[f.result(10) for f in fs] for fs in waiting] == [[0, 2], [20, 22], [40, 42]]
        assert sizes == [1, 4, 2]  # the waiting items went through in full batches
        big = batcher.submit(list(range(9)))  # larger than the queue but the queue is empty: accepted
        assert [f.result(10) for f in big] == [2 * i for i in range(9)]
    finally:
        batcher.stop()


# --- start-up, API key -------------------------------------------------------------------------------------
def test_health_is_503_until_the_model_is_loaded(net, tiny_encoder_dir, tiny_heads_dir, photos):
    with loading_server(make_config(tiny_encoder_dir, tiny_heads_dir), net) as (url, loaded):
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        early = post_files(url, [photos["landscape"]])
        assert_error(early, 503, "loading")
        assert early.headers["retry-after"]
        loaded.set()
        wait_healthy(url)
        assert post_files(url, [photos["landscape"]]).status_code == 200


def test_api_key_guards_the_api_but_not_health_or_page(net, tiny_encoder_dir, tiny_heads_dir, photos):
    app = create_app(make_config(tiny_encoder_dir, tiny_heads_dir, api_key="s3cret"), loader=lambda config: net)
    with running_server(app) as url:
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = httpx.get(f"{url}/v1/info", headers=headers)
            assert_error(response, 401, "API key", "Bearer")
            assert response.headers["www-authenticate"] == "Bearer"
            assert_error(post_files(url, [photos["landscape"]], headers=headers), 401, "API key")
        assert httpx.get(f"{url}/v1/info", headers=good).json()["auth"] is True
        assert post_files(url, [photos["landscape"]], headers=good).status_code == 200


# --- the real command: start, SIGTERM with a request in flight, bad model ----------------------------------
def test_serve_command_finishes_in_flight_requests_on_sigterm(model_args, photos):
    options = ["--faces", "none", "--batch-timeout-ms", "3000", "--max-batch-size", "64", "--api-key-env", "SERVE_TEST_KEY"]
    with serve_process(*model_args, *options, SERVE_TEST_KEY="k") as (proc, url):
        with ThreadPoolExecutor(1) as pool:
            # the batch waits 3 s for company: SIGTERM arrives while this request is in flight
            in_flight = pool.submit(post_files, url, [photos["landscape"]], headers={"Authorization": "Bearer k"})
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            response = in_flight.result(60)
        assert response.status_code == 200, response.text
        assert response.json()["rows"][0]["path"] == "landscape.png"
        assert proc.wait(60) == 0
    output = proc.stdout.read()
    assert "Traceback" not in output, output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)


def test_serve_command_with_a_missing_model_exits_2_with_one_line(tmp_path, tiny_encoder_dir):
    command = emonet_command("serve", "--encoder", tiny_encoder_dir, "--heads", tmp_path / "no-heads", "--device", "cpu",
                             "--port", free_port(), "--faces", "none")  # fmt: skip
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "error: model did not load:" in done.stderr and "no-heads" in done.stderr
    assert "Traceback" not in done.stderr
    bad = run_cli("serve", *command[4:-2], "--faces", "sideways")  # refused before loading
    assert bad.exit_code == 2 and "--faces sideways" in bad.stderr
    bad = run_cli("serve", *command[4:-2], "--api-key-env", "EMONET_NO_SUCH_VARIABLE")
    assert bad.exit_code == 2 and "EMONET_NO_SUCH_VARIABLE" in bad.stderr


def test_records_are_json_ready():
    from emonet_face.serve.records import records as _records

    table = pd.DataFrame({"path": ["a"], "face": [np.int64(0)], "x": [np.nan], "error": [None]})
    assert _records(table) == [{"path": "a", "face": 0, "x": None, "error": None}]
    mixed = pd.DataFrame(
        {
            "path": ["a", None],
            "track": pd.array([3, None], dtype="Int64"),  # the tracker's nullable ids
            "score": [0.25, np.nan],
            "boxed": pd.Series([np.int64(7), np.float32(0.5)], dtype=object),
            "top1": pd.Series(["joy", None], dtype=object),
        }
    )
    records = _records(mixed)
    assert records == [
        {"path": "a", "track": 3, "score": 0.25, "boxed": 7, "top1": "joy"},
        {"path": None, "track": None, "score": None, "boxed": 0.5, "top1": None},
    ]
    assert [type(v) for v in records[0].values()] == [str, int, float, int, str]  # plain Python, JSON-ready
    json.dumps(records, allow_nan=False)


def test_dtype_option_takes_the_precisions_predict_takes():
    """``--dtype`` accepts what ``predict`` accepts (int8 included) and refuses the rest."""
    from emonet_face.errors import InputError

    for dtype in ("auto", "float32", "bf16", "int8"):
        ServeConfig(dtype=dtype, backend="onnx" if dtype == "int8" else "auto").check()
    with pytest.raises(InputError, match=r"--dtype int4: .*or int8$"):
        ServeConfig(dtype="int4").check()
