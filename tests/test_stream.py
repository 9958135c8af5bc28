"""The live WebSocket ``/v1/stream`` over real loopback connections (uvicorn in a thread; a subprocess
for SIGTERM): rows equal ``/v1/predict``'s plus frame/time/track, reply order, newest-wins under a
burst, one track for one person, bad frames, batches shared between streams, the API key, the
connection limit, bad parameters, shutdown."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from emonet_face.serve import create_app
from emonet_face.serve.stream import key_subprotocol
from serve_helpers import loading_server, make_config, running_server, serve_process, serving

websockets = pytest.importorskip("websockets", reason="websockets is not installed (pip install 'emonet-face[serve]')")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


# --- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(net, tiny_encoder_dir, tiny_heads_dir):
    with serving(make_config(tiny_encoder_dir, tiny_heads_dir, max_upload_mb=1.0), loader=lambda config: net) as started:
        yield started


def portrait_frames(n: int, *, step: int = 4, newcomer_from: int | None = None) -> list[bytes]:
    """A clip made from a real portrait: the astronaut's head moving right by ``step`` px per frame
    across a grey 480×240 background, as JPEG frames (what a browser sends). From frame
    ``newcomer_from`` on, a second (mirrored) head stands still at the left edge."""
    from skimage import data

    head = Image.fromarray(data.astronaut()).crop((130, 20, 330, 220))
    frames = []
    for i in range(n):
        canvas = Image.new("RGB", (480, 240), (128, 128, 128))
        if newcomer_from is not None and i >= newcomer_from:
            canvas.paste(head.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (0, 30))
        canvas.paste(head, (240 + step * i if newcomer_from is not None else step * i, 20))
        buffer = io.BytesIO()
        canvas.save(buffer, "JPEG", quality=90)
        frames.append(buffer.getvalue())
    return frames


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return portrait_frames(16)


def ws_url(url: str, query: str = "") -> str:
    return url.replace("http://", "ws://") + "/v1/stream" + (f"?{query}" if query else "")


def open_stream(url: str, query: str = "", **kwargs):
    return connect(ws_url(url, query), open_timeout=30, close_timeout=5, **kwargs)


def reply(ws, timeout: float = 60) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def closed_with(ws) -> tuple[int, str]:
    """The close code and reason the server sent (the next recv raises)."""
    with pytest.raises(ConnectionClosed) as caught:
        ws.recv(timeout=30)
    assert caught.value.rcvd is not None, "the server did not send a close frame"
    return caught.value.rcvd.code, caught.value.rcvd.reason


def assert_same_scores(stream_row: dict, predict_row: dict) -> None:
    for column, want in predict_row.items():
        if column == "path":
            continue
        have = stream_row[column]
        if isinstance(want, float):
            assert have == pytest.approx(want, abs=1e-5, rel=1e-5), column
        else:
            assert have == want, column


# --- the protocol -----------------------------------------------------------------------------------
def test_rows_are_predict_rows_with_frame_time_and_track(server, frames):
    url, _ = server
    with open_stream(url) as ws:
        ws.send(frames[0])
        answer = reply(ws)
    assert set(answer) == {"frame", "rows"} and answer["frame"] == 0
    predicted = httpx.post(f"{url}/v1/predict", files={"file": ("f.jpg", frames[0])}, timeout=60).json()["rows"]
    rows = answer["rows"]
    assert len(rows) == len(predicted) == 1
    row, want = rows[0], predicted[0]
    # predict's columns, in predict's order, with a video's frame/time after path and track before top1
    expected = list(want)
    expected[1:1] = ["frame", "time"]
    expected.insert(expected.index("top1"), "track")
    assert list(row) == expected
    assert row["path"] == "stream" and row["frame"] == 0 and row["track"] == 0 and 0 <= row["time"] < 60
    assert row["face"] == 0 and row["region"] == "face"
    assert_same_scores(row, want)


def test_replies_in_order_and_one_track_per_person_for_the_connection(server, frames):
    url, _ = server
    answers = []
    with open_stream(url) as ws:
        for data in frames[:10]:
            ws.send(data)
            answers.append(reply(ws))
    assert [a["frame"] for a in answers] == list(range(10))
    rows = [r for a in answers for r in a["rows"]]
    assert len(rows) == 10 and all(r["face"] == 0 for r in rows)  # the face is found in every frame
    assert {r["track"] for r in rows} == {0}
    times = [r["time"] for r in rows]
    assert times == sorted(times) and times[-1] > times[0]
    xs = [r["box_x"] for r in rows]
    assert xs[-1] - xs[0] == pytest.approx(36, abs=12)  # the box follows the head (4 px per frame)

    # a second person joins on the left: the first keeps track 0 although it is now face 1 (reading
    # order), the newcomer gets track 1 — the tracker remembers the connection's earlier frames
    with open_stream(url) as ws:
        tracks = []
        for data in portrait_frames(8, newcomer_from=4):
            ws.send(data)
            tracks.append([(r["face"], r["track"]) for r in reply(ws)["rows"]])
    assert tracks[:4] == [[(0, 0)]] * 4
    assert tracks[4:] == [[(0, 1), (1, 0)]] * 4, tracks


def test_newest_frame_wins_under_a_burst(server, frames):
    url, app = server
    batcher = app.state.service.batcher
    original = batcher.fn

    def slow(items):
        time.sleep(0.15)  # scoring slower than the burst: frames pile up and must be skipped
        return original(items)

    batcher.fn = slow
    try:
        with open_stream(url) as ws:
            burst = frames * 2  # 32 frames, sent as fast as the socket takes them
            for data in burst:
                ws.send(data)
            answers = [reply(ws)]
            while answers[-1]["frame"] < len(burst) - 1:
                answers.append(reply(ws))
    finally:
        batcher.fn = original
    numbers = [a["frame"] for a in answers]
    assert numbers == sorted(set(numbers)), numbers  # strictly increasing: never an older frame after a newer one
    assert numbers[-1] == len(burst) - 1  # the last frame sent is answered
    assert len(numbers) < len(burst) / 2, numbers  # most of the burst was skipped, not queued
    assert all(a["rows"] and "error" not in a for a in answers)


def png_header_only(width: int, height: int) -> bytes:
    from test_serve import png_header_only as header

    return header(width, height)


def test_a_bad_frame_gets_an_error_reply_and_the_stream_goes_on(server, frames):
    url, _ = server
    bad = [
        (b"this is not a picture", ["frame 1", "not a readable image"]),
        (png_header_only(30_000, 20_000), ["frame 2", "too large to decode safely", "600,000,000"]),
        (os.urandom(1_200_000), ["frame 3", "upload limit", "--max-upload-mb"]),  # the server's limit is 1 MB
        ("hello", ["frame 4", "binary"]),  # a text message
        (b"", ["frame 5", "empty"]),
    ]
    with open_stream(url) as ws:
        ws.send(frames[0])
        assert reply(ws)["rows"]
        for data, words in bad:
            ws.send(data)
            answer = reply(ws)
            assert set(answer) == {"frame", "rows", "error"} and answer["rows"] == []
            message = answer["error"]
            assert "\n" not in message and "Traceback" not in message and "/tmp" not in message
            for word in words:
                assert word in message, message
        ws.send(frames[1])
        answer = reply(ws)
    assert answer["frame"] == 1 + len(bad) and answer["rows"][0]["face"] == 0 and "error" not in answer


def test_frames_of_several_streams_are_encoded_in_one_batch(server, net):
    url, app = server
    batcher = app.state.service.batcher
    original = batcher.fn
    sizes: list[int] = []
    gate, entered = threading.Event(), threading.Event()

    def gated(items):
        sizes.append(len(items))
        entered.set()
        gate.wait(30)
        return original(items)

    rng = np.random.default_rng(5)
    pictures = []
    for side in (40, 56, 72):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (side, side + 8, 3), dtype=np.uint8)).save(buffer, "PNG")
        pictures.append(buffer.getvalue())
    batcher.fn = gated
    try:
        with (
            open_stream(url, "faces=none") as a,
            open_stream(url, "faces=none") as b,
            open_stream(url, "faces=none") as c,
        ):
            a.send(pictures[0])
            assert entered.wait(30)  # stream a's frame holds the encoder
            b.send(pictures[1])
            c.send(pictures[2])
            deadline = time.monotonic() + 30
            while batcher.depth < 2 and time.monotonic() < deadline:  # b's and c's frames wait together
                time.sleep(0.01)
            gate.set()
            answers = [reply(ws) for ws in (a, b, c)]
    finally:
        gate.set()
        batcher.fn = original
    assert sizes == [1, 2]
    expected = net.predict([Image.open(io.BytesIO(p)) for p in pictures], num_workers=0)
    for answer, (_, want) in zip(answers, expected.iterrows()):  # each stream got its own frame's scores
        (row,) = answer["rows"]
        assert "face" not in row and "track" not in row  # faces=none: whole frames, nothing to track
        assert row["top1"] == want["top1"]
        assert row["elation"] == pytest.approx(want["elation"], abs=1e-5)


# --- access: key, limit, parameters, loading -----------------------------------------------------------
def test_the_api_key_by_header_or_subprotocol(net, tiny_encoder_dir, tiny_heads_dir, frames):
    app = create_app(make_config(tiny_encoder_dir, tiny_heads_dir, api_key="s3cr/t+key="), loader=lambda config: net)
    with running_server(app) as url:
        refused = [
            {},
            {"additional_headers": {"Authorization": "Bearer wrong"}},
            {"subprotocols": ["emonet-face", key_subprotocol("wrong")]},
            {"subprotocols": ["emonet-face", "bearer.%%%"]},
        ]
        for options in refused:
            with open_stream(url, **options) as ws:
                code, reason = closed_with(ws)
            assert code == 1008 and "API key" in reason and "bearer." in reason
        with open_stream(url, additional_headers={"Authorization": "Bearer s3cr/t+key="}) as ws:
            ws.send(frames[0])
            assert reply(ws)["rows"][0]["face"] == 0
        # a browser: the key as a subprotocol; the server answers with the plain one
        with open_stream(url, subprotocols=["emonet-face", key_subprotocol("s3cr/t+key=")]) as ws:
            assert ws.subprotocol == "emonet-face"
            ws.send(frames[0])
            assert reply(ws)["frame"] == 0


def test_streams_beyond_the_limit_are_refused_cleanly(server, frames):
    url, app = server
    config = app.state.config
    config.max_streams = 2
    try:
        with open_stream(url) as first, open_stream(url) as second:
            first.send(frames[0])
            second.send(frames[1])
            assert reply(first)["frame"] == 0 and reply(second)["frame"] == 0
            with open_stream(url) as third:
                code, reason = closed_with(third)
            assert code == 1013 and "too many live streams" in reason and "--max-streams" in reason
            first.close()
            deadline = time.monotonic() + 10
            while app.state.service.streams > 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            with open_stream(url) as fourth:  # a place is free again
                fourth.send(frames[2])
                assert reply(fourth)["frame"] == 0
            second.send(frames[3])  # the second stream is still open and usable
            assert reply(second)["frame"] == 1
    finally:
        config.max_streams = 8
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}


def test_bad_parameters_and_a_loading_model_close_with_a_reason(server, net, tiny_encoder_dir, tiny_heads_dir):
    url, _ = server
    for query, words in [("faces=sideways", ["faces=sideways"]), ("fps=0", ["fps=0", "positive"]),
                         ("fps=fast", ["fps=fast"]), ("key=abc", ["'key'"])]:  # fmt: skip
        with open_stream(url, query) as ws:
            code, reason = closed_with(ws)
        assert code == 1008, (query, reason)
        for word in words:
            assert word in reason, reason
    with loading_server(make_config(tiny_encoder_dir, tiny_heads_dir), net) as (slow_url, loaded):
        with open_stream(slow_url) as ws:
            code, reason = closed_with(ws)
        assert code == 1013 and "loading" in reason
        loaded.set()


def test_fps_parameter_bounds_the_scoring_rate(server, frames):
    url, _ = server
    with open_stream(url, "fps=4") as ws:
        start = time.monotonic()
        answers = []
        for data in frames[:8]:
            ws.send(data)
            answers.append(reply(ws))
        elapsed = time.monotonic() - start
    assert [a["frame"] for a in answers] == list(range(8))
    assert elapsed >= 7 / 4 - 0.05  # 8 frames at most 4 per second: at least 1.75 s


# --- the real command: SIGTERM closes streams, exits 0 ----------------------------------------------------
def test_sigterm_closes_open_streams_and_exits_0(model_args, frames):
    with serve_process(*model_args, "--max-streams", "2", OMP_NUM_THREADS="1") as (proc, url):
        with open_stream(url) as ws, open_stream(url) as idle:
            ws.send(frames[0])
            assert reply(ws)["rows"][0]["track"] == 0
            ws.send(frames[1])  # scored or not when the signal comes: either way the stream is closed
            proc.send_signal(signal.SIGTERM)
            codes = []
            for client in (ws, idle):
                with pytest.raises(ConnectionClosed) as caught:
                    while True:
                        client.recv(timeout=30)
                codes.append(caught.value.rcvd.code if caught.value.rcvd else None)
        assert codes == [1012, 1012]  # service restart: clients may reconnect later
        assert proc.wait(60) == 0
    output = proc.stdout.read()
    assert "Traceback" not in output, output


def test_batcher_waits_for_a_stream_that_comes_back_so_streams_share_batches():
    """Two streams out of phase: without owners they alternate in batches of one for ever; with
    owners the batch after the first waits for the stream that was just answered."""
    from emonet_face.serve import Batcher

    def run(owners: bool) -> list[list[str]]:
        batches: list[list[str]] = []

        def encode(items):
            batches.append(list(items))
            time.sleep(0.3)  # a slow encoder: waiting ~20 ms for company is worth it
            return items

        batcher = Batcher(encode, max_batch_size=8, timeout_s=0.0, max_queue=8, company_fraction=1.0).start()
        try:
            a = batcher.submit(["a0"], owner="a" if owners else None)
            while not batches:
                time.sleep(0.001)
            b = batcher.submit(["b0"], owner="b" if owners else None)  # arrives while a0 is encoded
            a[0].result(10)
            time.sleep(0.02)  # stream a decodes its next frame and finds its face
            a = batcher.submit(["a1"], owner="a" if owners else None)
            b[0].result(10), a[0].result(10)
            batcher.withdraw("a")
            batcher.withdraw("b")
        finally:
            batcher.stop()
        return batches

    assert run(owners=False) == [["a0"], ["b0"], ["a1"]]
    assert run(owners=True) == [["a0"], ["b0", "a1"]]
