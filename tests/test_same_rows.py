"""One scorer, four ways in: the same frames give the same rows through ``EmoNetFace.predict``, the
Ray engine, ``POST /v1/predict`` and the live WebSocket ``/v1/stream``.

Each of them turns image features into rows with :class:`emonet_face.pipeline.Scorer`; this test
holds them to it on real pictures with faces (one, two), a face-less close-up (scored whole by
``faces=auto``) and a face-less landscape, plus three frames of a clip with a moving head.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import httpx
import pandas as pd
import pytest

from conftest import face_video
from emonet_face.options import FaceOptions, ModelOptions
from emonet_face.serve import ServeConfig, create_app
from emonet_face.serve.records import records
from serve_helpers import running_server

ray = pytest.importorskip("ray", reason="Ray is in the test extra; CI installs it")
pytest.importorskip("websockets", reason="websockets is not installed (pip install 'emonet-face[serve]')")
from test_stream import open_stream, reply  # noqa: E402  (needs websockets)

pytestmark = pytest.mark.usefixtures("one_thread")

LIVE_ONLY = ("frame", "time", "track")
"""Columns only a live stream has: it is laid out as a video (``frame``, ``time``) and tracks faces."""


@pytest.fixture(scope="module")
def frames(tmp_path_factory, photos, astronaut) -> list[Path]:
    """Three frames of the clip (as lossless PNGs, so every way in decodes the same pixels), then the
    photos: one face, two faces, a face-less landscape, a face-less small square."""
    folder = tmp_path_factory.mktemp("same-frames")
    clip = face_video(folder / "clip.mp4", astronaut, seconds=2)
    paths = []
    with av.open(str(clip)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in (0, 7, 14):
                paths.append(folder / f"{len(paths):02d}-clip-{index:02d}.png")
                frame.to_image().save(paths[-1])
    return [*paths, photos["astronaut"], photos["group"], photos["landscape"], photos["portrait"]]


def by_frame(rows: list[dict], names: list[str]) -> dict[tuple[int, int | None], dict]:
    """Rows keyed by (the frame's position, face number), without ``path`` (each way names it its own way)."""
    keyed = {}
    for row in rows:
        index = row["frame"] if row["path"] == "stream" else names.index(Path(row["path"]).name)
        keyed[index, row.get("face")] = {k: v for k, v in row.items() if k != "path"}
    assert len(keyed) == len(rows), "two rows for one face of one frame"
    return keyed


def assert_same(have: dict, want: dict, columns: list[str], where: str) -> None:
    assert set(have) == set(want), f"{where}: rows for other frames/faces"
    for key, expected in want.items():
        for column in columns:
            a, b = have[key][column], expected[column]
            if isinstance(a, float) or isinstance(b, float):
                assert a is not None and b is not None, f"{where} {key} {column}: {a!r} vs {b!r}"
                assert math.isclose(a, b, abs_tol=1e-5, rel_tol=1e-5), f"{where} {key} {column}: {a} vs {b}"
            else:
                assert a == b, f"{where} {key} {column}: {a!r} vs {b!r}"


def test_predict_ray_http_and_stream_give_the_same_rows(
    frames, net, tiny_encoder_dir, tiny_heads_dir, ray_local, tmp_path
):
    """``predict``, ``--engine ray`` and ``/v1/predict`` score the frames as still images: the same
    columns, row for row. ``/v1/stream`` gets them as one live stream, laid out as a video: one row
    per face per frame, with ``frame``, ``time`` and ``track`` after/before the columns the others
    have (a still picture has no time, and ``/v1/predict`` tracks faces only within a video), and
    ``path`` = ``"stream"``. So rows are matched by frame and face number, and every column they
    share but ``path`` must agree: the face columns, ``error``, ``top1``..``top3`` exactly, the
    scores within 1e-5."""
    from emonet_face.engines import RayOptions
    from emonet_face.engines.ray_engine import ray_predict
    from emonet_face.media import media_stages

    names = [p.name for p in frames]
    faces = FaceOptions("auto")
    local = net.predict(frames, faces=faces, num_workers=0)
    columns = [c for c in local.columns if c != "path"]
    want = by_frame(records(local), names)
    assert len(want) > len(frames)  # the group photo has two faces
    assert {row["top1"] for row in want.values()} - {None}  # something was scored
    assert any(row["region"] == "whole_image" for row in want.values())  # the face-less close-up, scored whole

    source, expand = media_stages(frames, faces)
    model = ModelOptions(encoder=str(tiny_encoder_dir), heads=str(tiny_heads_dir), device="cpu")
    ray_predict(frames, tmp_path / "ray", model=model, source=source, expand=expand, options=RayOptions(actors=1))
    parts = pd.read_parquet(tmp_path / "ray")
    assert list(parts.columns) == list(local.columns)
    assert_same(by_frame(records(parts), names), want, columns, "ray")

    config = ServeConfig(encoder=str(tiny_encoder_dir), heads=str(tiny_heads_dir), device="cpu", faces="auto")
    with running_server(create_app(config, loader=lambda _: net)) as url:
        files = [("file", (p.name, p.read_bytes())) for p in frames]
        response = httpx.post(f"{url}/v1/predict", files=files, timeout=120)
        assert response.status_code == 200, response.text
        served = response.json()["rows"]
        assert list(served[0]) == list(local.columns)
        assert_same(by_frame(served, names), want, columns, "/v1/predict")

        live = []
        with open_stream(url) as ws:
            for index, path in enumerate(frames):  # one at a time: no frame is skipped for a newer one
                ws.send(path.read_bytes())
                answer = reply(ws)
                assert answer["frame"] == index and "error" not in answer, answer
                live += answer["rows"]
    assert [c for c in live[0] if c not in LIVE_ONLY] == list(local.columns)
    assert_same(by_frame(live, names), want, columns, "/v1/stream")
