"""Face tracks in video: the matcher on planted boxes and embeddings, the per-track summary, and
the ``track`` column / ``--tracks-out`` through ``predict`` on a synthetic video."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emonet_face.tracking import FaceTracker, TrackSummary, box_iou


def _embedding(seed: int, dim: int = 32) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim)
    return vector / np.linalg.norm(vector)


def _noisy(vector: np.ndarray, rng, scale: float = 0.05) -> np.ndarray:
    out = vector + rng.normal(scale=scale, size=vector.shape)
    return out / np.linalg.norm(out)


def test_box_iou_by_hand():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5]], float)
    assert box_iou(a, b)[0].tolist() == pytest.approx([50 / 150, 0.0])


def test_one_id_for_a_face_moving_fast_with_missed_frames():
    tracker, rng, person = FaceTracker(), np.random.default_rng(0), _embedding(1)
    ids = []
    for step in range(12):
        if step in (4, 8, 9):  # the detector missed the face in these frames
            tracker.update("v.mp4", np.zeros((0, 4)), np.zeros((0, 32)))
            continue
        # 60 px per sampled frame with an 80-px box: consecutive boxes overlap little (IoU ~0.14)
        box = np.array([[20.0 + 60 * step, 100.0, 80.0, 80.0]])
        ids += tracker.update("v.mp4", box, _noisy(person, rng)[None])
    assert set(ids) == {0}


def test_two_crossing_faces_keep_their_ids():
    tracker, rng = FaceTracker(), np.random.default_rng(0)
    alice, bob = _embedding(1), _embedding(2)
    seen = {"alice": set(), "bob": set()}
    for step in range(11):
        a = [40.0 + 50 * step, 100.0, 90.0, 90.0]  # left → right
        b = [540.0 - 50 * step, 110.0, 90.0, 90.0]  # right → left: the boxes cross at step 5
        boxes, embeddings = np.array([b, a]), np.stack([_noisy(bob, rng), _noisy(alice, rng)])
        bob_id, alice_id = tracker.update("v.mp4", boxes, embeddings)
        seen["alice"].add(alice_id)
        seen["bob"].add(bob_id)
    assert len(seen["alice"]) == 1 and len(seen["bob"]) == 1 and seen["alice"] != seen["bob"]


def test_box_overlap_alone_is_not_enough_for_a_different_person_who_jumps_far():
    tracker = FaceTracker()
    (first,) = tracker.update("v.mp4", np.array([[0.0, 0, 50, 50]]), _embedding(1)[None])
    (second,) = tracker.update("v.mp4", np.array([[400.0, 0, 50, 50]]), _embedding(2)[None])
    assert first != second


def test_ids_are_per_video_and_resume_starts_above_the_old_ones():
    tracker = FaceTracker(first_ids={"b.mp4": 7})
    assert tracker.update("a.mp4", np.array([[0.0, 0, 50, 50]]), _embedding(1)[None]) == [0]
    assert tracker.update("b.mp4", np.array([[0.0, 0, 50, 50]]), _embedding(1)[None]) == [7]


def test_a_track_ends_after_too_many_missed_frames():
    tracker = FaceTracker(max_misses=2)
    box, person = np.array([[0.0, 0, 50, 50]]), _embedding(1)[None]
    assert tracker.update("v", box, person) == [0]
    for _ in range(3):
        tracker.update("v", np.zeros((0, 4)), np.zeros((0, 32)))
    assert tracker.update("v", box, person) == [1]


def test_tracker_on_a_table_leaves_stills_and_faceless_rows_empty():
    table = pd.DataFrame(
        {
            "path": ["a.jpg", "v.mp4", "v.mp4", "v.mp4"],
            "frame": [None, 0, 10, 20],
            "time": [None, 0.0, 1.0, 2.0],
            "face": [0, 0, None, 0],
            "box_x": [1.0, 10.0, None, 12.0],
            "box_y": [1.0, 10.0, None, 10.0],
            "box_w": [5.0, 50.0, None, 50.0],
            "box_h": [5.0, 50.0, None, 50.0],
            "top1": ["joy"] * 4,
        }
    )
    features = np.stack([_embedding(1), _embedding(2), np.full(32, np.nan), _embedding(2)])
    out = FaceTracker()(table, features)
    assert list(out.columns).index("track") == list(out.columns).index("top1") - 1  # an id column
    assert out["track"].tolist()[0] is pd.NA and out["track"].tolist()[2] is pd.NA
    assert out["track"].tolist()[1] == out["track"].tolist()[3] == 0


def test_frames_without_faces_count_as_misses_in_a_table():
    rows = [(f, [0.0, 0, 50, 50] if f in (0, 5) else [None] * 4) for f in range(6)]
    table = pd.DataFrame(
        {
            "path": ["v.mp4"] * 6,
            "frame": [f for f, _ in rows],
            "time": [float(f) for f, _ in rows],
            **{c: [b[i] for _, b in rows] for i, c in enumerate(["box_x", "box_y", "box_w", "box_h"])},
            "top1": ["joy"] * 6,
        }
    )
    features = np.stack([_embedding(1) if f in (0, 5) else np.full(32, np.nan) for f, _ in rows])
    out = FaceTracker(max_misses=3)(table, features)
    assert out["track"].tolist()[0] == 0 and out["track"].tolist()[5] == 1  # 4 empty frames: the track ended


def test_summary_means_equal_the_rows_means():
    rng = np.random.default_rng(3)
    keys = ["elation", "anger", "valence"]
    rows = pd.DataFrame(
        {
            "path": ["v.mp4"] * 6,
            "frame": [0, 0, 10, 10, 20, 30],
            "time": [0.0, 0.0, 1.0, 1.0, 2.0, 3.0],
            "track": pd.array([0, 1, 0, 1, 0, 0], dtype="Int64"),
            **{k: rng.normal(size=6) for k in keys},
            **{f"prob.{k}": rng.uniform(size=6) for k in keys[:2]},
        }
    )
    summary = TrackSummary(keys)
    summary.add(rows.iloc[:3])  # in two batches, as predict streams them
    summary.add(rows.iloc[3:])
    table = summary.table()
    assert table["track"].tolist() == [0, 1]
    zero = table.iloc[0]
    assert (zero["first_time"], zero["last_time"], zero["n_frames"]) == (0.0, 3.0, 4)
    mine = rows[rows["track"] == 0]
    for column in [*keys, "prob.elation", "prob.anger"]:
        assert zero[column] == pytest.approx(mine[column].mean())
    assert zero["top1"] == max(["elation", "anger"], key=lambda k: mine[k].mean())


def test_timeline_smoothing_by_hand():
    from emonet_face.viz.pictures import smooth_series

    nan = float("nan")
    # a 2-s window: t ± 1 s; the NaN (an unscored frame) is left out of the means
    assert smooth_series([0, 1, 2, 3, 4], [1, 2, nan, 4, 5], 2) == pytest.approx([1.5, 1.5, 3.0, 4.5, 4.5])
    assert smooth_series([3, 0, 1], [3, 0, 1], 1) == [3, 0, 1]  # unsorted times, windows of one point
    assert smooth_series([0, 1], [1, 2], 0) == [1, 2]  # 0: raw


def test_one_track_while_the_camera_closes_in_on_a_face_seen_from_the_side(tmp_path, model_args):
    """A clip through ``predict``: the camera moves in on skimage's cameraman (in profile) until
    his face fills the frame, 30 % → 100 % over 15 frames. One face in every frame, one track.
    (Before the zoom-out level and the two-zoom second look, the face was lost from 65 % on and the
    person came back as a second track.)"""
    import av
    from PIL import Image
    from skimage import data

    from helpers_cli import run_cli
    from test_blazeface import CAMERA_BOX, close_up

    cameraman = Image.fromarray(data.camera()).convert("RGB")
    video = tmp_path / "closer.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("h264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 384, 384, "yuv420p"
        for fill in np.linspace(0.3, 1.0, 15):
            frame, _ = close_up(cameraman, CAMERA_BOX, float(fill), side=384)
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out = tmp_path / "closer.csv"
    result = run_cli("predict", video, "--fps", "5", "--faces", "detect", "--out", out, *model_args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table["frame"].tolist() == list(range(15))  # one row per frame: one face each, none missed
    assert table["face"].tolist() == [0] * 15 and table["track"].tolist() == [0] * 15
