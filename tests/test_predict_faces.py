"""`predict` on real photos and video: one row per face, empty rows for face-less images, video
frames with times, all faces of an image in one encoder batch, resume after a real kill, pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import face_video
from emonet_face import taxonomy as tx
from emonet_face.faces import DEFAULT_MARGIN, crop_face, get_detector
from emonet_face.inputs.images import ensure_min_size
from emonet_face.media import FaceExpander, MediaSource
from emonet_face.outputs import read_table
from helpers_cli import kill_when, run_cli, run_process
from test_blazeface import HOPPER_BOX, close_up
from test_faces import ASTRONAUT_FACE, fake_yunet, iou

SCORES = [*tx.HEAD_KEYS, *(f"prob.{k}" for k in tx.EMOTION_KEYS), *(f"raw.{k}" for k in tx.HEAD_KEYS)]
FACE_IDS = [
    "path", "face", "box_x", "box_y", "box_w", "box_h", "det_score", "region",
    "eye_left_x", "eye_left_y", "eye_right_x", "eye_right_y",
]  # fmt: skip


def test_one_row_per_face_and_a_row_for_each_faceless_image(photos, model_args, tmp_path, net, astronaut):
    out = tmp_path / "faces.csv"
    result = run_cli("predict", *photos.values(), "--faces", "detect", "--out", out, "-b", "2", *model_args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns[: len(FACE_IDS)]) == FACE_IDS
    names = [Path(p).name for p in table["path"]]
    assert names == ["a_astronaut.png", "b_group.jpg", "b_group.jpg", "c_landscape.png", "d_portrait.png"]
    assert table["face"].tolist()[:3] == [0, 0, 1]
    assert table["face"][3:].isna().all() and table[SCORES][3:].isna().all().all()  # no face: empty scores
    assert table["error"].isna().all()  # …but not an error
    box = tuple(table.loc[0, ["box_x", "box_y", "box_w", "box_h"]])
    assert iou(box, ASTRONAUT_FACE) > 0.5
    assert table.loc[2, "box_x"] - table.loc[1, "box_x"] == pytest.approx(512, abs=8)
    # the face row's scores are those of its square crop scored as a whole image
    face = get_detector().detect(astronaut)[0]
    crop = ensure_min_size(crop_face(astronaut, face, DEFAULT_MARGIN))
    expected = net.predict([crop], faces="none", num_workers=0)
    np.testing.assert_allclose(table.loc[0, SCORES].to_numpy(float), expected.loc[0, SCORES].to_numpy(float), atol=1e-5)
    assert table.loc[0, "top1"] == expected.loc[0, "top1"]


def test_auto_scores_a_faceless_portrait_whole_and_says_so(photos, model_args, tmp_path):
    out = tmp_path / "auto.csv"
    result = run_cli("predict", photos["landscape"], photos["portrait"], "--out", out, *model_args)  # default auto
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table["region"].isna().tolist() == [True, False]
    assert table.loc[1, "region"] == "whole_image" and table.loc[1, "face"] == 0
    assert (table.loc[1, "box_w"], table.loc[1, "box_h"]) == (200, 200)
    assert table.loc[0, SCORES].isna().all() and table.loc[1, SCORES].notna().all()


def test_faces_none_keeps_whole_image_rows(photos, model_args, tmp_path):
    out = tmp_path / "none.csv"
    assert run_cli("predict", photos["group"], "--faces", "none", "--out", out, *model_args).exit_code == 0
    table = pd.read_csv(out)
    assert len(table) == 1 and "face" not in table.columns and table[SCORES].notna().all().all()


def test_all_faces_of_an_image_in_one_encoder_batch(photos, net, monkeypatch):
    calls: list[int] = []
    original = type(net.encoder).encode

    def spy(encoder, batch):
        calls.append(len(batch["pixel_values"]))
        return original(encoder, batch)

    monkeypatch.setattr(type(net.encoder), "encode", spy)
    source = MediaSource(face_columns=True)
    table = net.predict(
        [photos["astronaut"], photos["group"]],
        batch_size=1,
        num_workers=0,
        source=source,
        expand=FaceExpander("detect"),
    )
    assert table["face"].tolist() == [0, 0, 1]
    assert 2 in calls  # the group's two faces went through the encoder together despite batch_size=1
    assert sum(calls) == 3


def test_video_rows_at_the_right_times(tmp_path, astronaut, model_args):
    video = face_video(tmp_path / "clip.mp4", astronaut)
    out = tmp_path / "video.csv"
    result = run_cli("predict", video, "--fps", "2", "--faces", "detect", "--out", out, *model_args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["path", "frame", "time", "face"]
    assert table["time"].tolist() == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], abs=0.02)
    assert table["frame"].tolist() == [0, 5, 10, 15, 20, 25]
    assert table["face"].tolist() == [0] * 6
    # the face moves 4 px per frame = 40 px/s: the boxes follow it (detector boxes jitter a few px)
    slope = np.polyfit(table["time"], table["box_x"], 1)[0]
    assert 30 < slope < 50 and (np.diff(table["box_x"]) > 0).all()
    short = tmp_path / "short.csv"
    assert run_cli("predict", video, "--fps", "2", "--max-frames", "3", "--out", short, *model_args).exit_code == 0
    assert pd.read_csv(short)["frame"].tolist() == [0, 5, 10]


def test_video_track_column_and_tracks_out(tmp_path, astronaut, model_args, photos):
    video = face_video(tmp_path / "clip.mp4", astronaut, seconds=3)
    out, tracks_out = tmp_path / "video.csv", tmp_path / "tracks.csv"
    # batch size 2 and 16-frame segments: the tracker must carry its state across batches
    args = [video, photos["astronaut"], "--fps", "6", "--out", out, "--tracks-out", tracks_out, "-b", "2"]
    result = run_cli("predict", *args, *model_args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns).index("track") < list(table.columns).index("top1")
    frames = table[table["frame"].notna()]
    assert len(frames) == 18 and frames["track"].tolist() == [0] * 18  # one person, one id over 3 s
    assert table.loc[table["frame"].isna(), "track"].isna().all()  # the still image has none
    tracks = pd.read_csv(tracks_out)
    assert len(tracks) == 1
    row = tracks.iloc[0]
    assert (row["track"], row["n_frames"], row["first_time"]) == (0, 18, 0.0)
    assert row["last_time"] == pytest.approx(frames["time"].max())
    for column in [*tx.HEAD_KEYS, *(f"prob.{k}" for k in tx.EMOTION_KEYS)]:
        assert row[column] == pytest.approx(frames[column].mean(), abs=1e-9)
    means = {k: frames[k].mean() for k in tx.EMOTION_KEYS}
    assert [row["top1"], row["top2"], row["top3"]] == sorted(means, key=means.get, reverse=True)[:3]


def test_no_track_column_for_stills_or_faces_none(tmp_path, photos, astronaut, model_args):
    out = tmp_path / "stills.csv"
    assert run_cli("predict", photos["astronaut"], "--out", out, *model_args).exit_code == 0
    assert "track" not in pd.read_csv(out).columns
    video = face_video(tmp_path / "clip.mp4", astronaut, seconds=1)
    out = tmp_path / "none.csv"
    assert run_cli("predict", video, "--faces", "none", "--fps", "2", "--out", out, *model_args).exit_code == 0
    assert "track" not in pd.read_csv(out).columns
    result = run_cli("predict", video, "--faces", "none", "--tracks-out", tmp_path / "t.csv", *model_args)
    assert result.exit_code == 2 and "--tracks-out needs faces" in result.output


def test_long_video_is_split_into_segments_with_the_same_frames(tmp_path, astronaut):
    video = face_video(tmp_path / "long.mp4", astronaut, seconds=5, rate=10)
    source = MediaSource(fps=5, video_columns=True)
    plans = source.plan({"path": str(video)}, video)
    assert len(plans) == 2  # 25 sampled frames → segments of 16
    frames = [ids["frame"] for ids, ref in plans for ids, _ in source(ids, ref)]
    assert frames == list(range(0, 50, 2))


def test_mixed_inputs_errors_and_resume_after_a_real_kill(photos, tmp_path, astronaut, model_args):
    """A killed run, resumed, gives the same table as an uninterrupted one (faces, video, errors)."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i in range(6):
        (folder / f"img{i}_{photos['group'].name}").write_bytes(photos["group"].read_bytes())
    (folder / "img9_broken.jpg").write_bytes(photos["group"].read_bytes()[:500])
    face_video(folder / "img3_clip.mp4", astronaut, seconds=2)
    args = [folder, "-b", "1", "--fps", "4", "--num-workers", "0", *model_args]
    full = tmp_path / "full.csv"
    result = run_cli("predict", *args, "--out", full)
    assert result.exit_code == 1  # the broken file is an error row; the run went on
    expected = pd.read_csv(full)
    assert expected["error"].notna().sum() == 1 and "img9_broken.jpg" in expected["error"].dropna().iloc[0]
    assert expected["frame"].notna().sum() == 8 and set(expected.columns) >= {"frame", "time", "face"}

    out = tmp_path / "killed.csv"
    # killed once it has written 3 rows (the header and 3 lines)
    kill_when(lambda: out.is_file() and out.read_bytes().count(b"\n") >= 4, "predict", *args, "--out", out, interval=0.02)
    rows_before = len(read_table(out))
    assert 0 < rows_before < len(expected), "the kill should land mid-run"
    result = run_cli("predict", *args, "--out", out, "--resume")
    assert result.exit_code == 1, result.output
    resumed = pd.read_csv(out)
    # tracks are not linked across the resume point (documented): compare the rest exactly
    pd.testing.assert_frame_equal(
        resumed.drop(columns="track"), expected.drop(columns="track"), check_exact=False, atol=1e-6
    )
    video_faces = resumed["frame"].notna() & resumed["face"].notna()
    assert resumed.loc[video_faces, "track"].notna().all() and resumed.loc[~video_faces, "track"].isna().all()


def test_save_vis_and_plot(photos, tmp_path, astronaut, model_args):
    video = face_video(tmp_path / "clip.mp4", astronaut, seconds=2)
    vis = tmp_path / "vis"
    out = tmp_path / "scores.parquet"
    result = run_cli("predict", photos["group"], photos["landscape"], video, "--out", out, "--save-vis", vis, *model_args)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in vis.glob("*.png"))
    assert "b_group.png" in names and "b_group.face0.bars.png" in names and "b_group.face1.bars.png" in names
    assert "c_landscape.png" in names  # no face: the photo still gets its picture, saying so
    assert "clip.track0.timeline.png" in names and "clip.frame000000.png" in names  # one timeline per track
    with Image.open(vis / "b_group.png") as image:
        assert image.width > 500
    plotted = tmp_path / "plotted"
    result = run_cli("plot", out, "--out", plotted, "--smooth", "1.5")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in plotted.glob("*.png")) == names


def test_plot_rejects_a_table_that_is_not_scores(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = run_cli("plot", bad, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "not a predict score table" in result.stderr


def test_every_odd_image_mode_is_scored(tmp_path, model_args):
    from test_video_and_images import ODD_MODES, odd_image

    paths = []
    for mode in ODD_MODES:
        path = tmp_path / f"{mode.replace(';', '_')}.{'tif' if mode in ('I', 'F', 'CMYK', 'LAB', 'YCbCr') else 'png'}"
        odd_image(mode).save(path)
        paths.append(path)
    out = tmp_path / "modes.csv"
    result = run_cli("predict", *paths, "--faces", "none", "--out", out, *model_args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == len(ODD_MODES) and table["error"].isna().all() and table[SCORES].notna().all().all()


def test_cli_margin_default_is_the_documented_one():
    import inspect

    from emonet_face.cli.inference import predict

    assert inspect.signature(predict).parameters["margin"].default == DEFAULT_MARGIN


def test_detector_option_with_a_local_weights_file(tmp_path, model_args):
    image = Image.new("RGB", (640, 384))
    image.paste((255, 255, 255), (128, 64, 160, 96))
    image.save(tmp_path / "bright.png")
    weights = fake_yunet(tmp_path / "yunet.onnx")
    out = tmp_path / "yunet.csv"
    result = run_cli("predict", tmp_path / "bright.png", "--detector", f"yunet:{weights}", "--out", out, *model_args)
    assert result.exit_code == 0, result.output
    row = pd.read_csv(out).iloc[0]
    assert (row["face"], row["box_x"], row["box_y"], row["box_w"], row["box_h"]) == (0, 128, 64, 32, 32)
    assert row[SCORES].notna().all()


def test_unknown_detector_and_bad_faces_option(photos, model_args):
    result = run_cli("predict", photos["astronaut"], "--detector", "nope", *model_args)
    assert result.exit_code == 2 and "unknown face detector" in result.stderr
    result = run_cli("predict", photos["astronaut"], "--faces", "some", *model_args)
    assert result.exit_code == 2 and "--faces some" in result.stderr


def test_plot_draws_bar_charts_when_the_image_is_gone(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(40))
    row = {"path": str(tmp_path / "moved.jpg"), "face": 0, "box_x": 1, "box_y": 2, "box_w": 30, "box_h": 30}
    row.update({f"prob.{k}": p for k, p in zip(tx.EMOTION_KEYS, probs)})
    row.update({f"raw.{d.key}": (d.low + d.high) / 2 for d in tx.EXTRA_DIMENSIONS})
    table = tmp_path / "scores.csv"
    pd.DataFrame([row, {**row, "face": 1}]).to_csv(table, index=False)
    result = run_cli("plot", table, "--out", tmp_path / "vis")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "vis").glob("*.png")) == ["moved.face0.bars.png", "moved.face1.bars.png"]


def test_min_face_score_and_align_options(photos, model_args, tmp_path):
    out = tmp_path / "strict.csv"
    args = [photos["astronaut"], "--faces", "detect", *model_args]
    assert run_cli("predict", *args, "--min-face-score", "0.99", "--out", out).exit_code == 0
    assert pd.read_csv(out)["face"].isna().all()  # nothing scores 0.99: the row stays, with no face
    plain, aligned = tmp_path / "plain.csv", tmp_path / "aligned.csv"
    assert run_cli("predict", *args, "--out", plain).exit_code == 0
    assert run_cli("predict", *args, "--align", "--out", aligned).exit_code == 0
    plain, aligned = pd.read_csv(plain), pd.read_csv(aligned)
    assert plain["eye_left_x"].iloc[0] > plain["eye_right_x"].iloc[0]
    # the astronaut's eye line tilts by ~4°: the aligned crop differs, so do its scores
    assert not np.allclose(plain[SCORES].to_numpy(float), aligned[SCORES].to_numpy(float))


def test_a_close_up_portrait_is_one_row_not_two(tmp_path, grace_hopper, model_args):
    """The reported duplicate through ``predict``: a 512-px close-up whose face fills 57.5 % of
    the frame came back as two faces (two rows, two crops). predict, serve and the Ray engine all
    use the one detector; this checks the rows predict writes."""
    portrait, box = close_up(grace_hopper, HOPPER_BOX, 0.4)
    crop, face_box = close_up(portrait, tuple(round(v) for v in box), 0.575)
    crop.save(tmp_path / "close.png")
    out = tmp_path / "close.csv"
    result = run_cli("predict", tmp_path / "close.png", "--faces", "detect", "--out", out, *model_args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table["face"].tolist() == [0]
    x, y, w, h = table.loc[0, ["box_x", "box_y", "box_w", "box_h"]]
    assert face_box[0] <= x + w / 2 <= face_box[2] and face_box[1] <= y + h / 2 <= face_box[3]


def test_quiet_predict_prints_nothing_from_litert(tmp_path, photos, model_args):
    """``--quiet`` in a fresh process: LiteRT's ``INFO: Created TensorFlow Lite XNNPACK delegate
    for CPU.`` (C++, written to the process's stderr) no longer shows."""
    out = tmp_path / "quiet.csv"
    result = run_process("predict", photos["astronaut"], "--quiet", "--out", out, *model_args)
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(out)["face"].tolist() == [0]  # the detector ran
    assert "XNNPACK" not in result.stderr and "TensorFlow Lite" not in result.stderr, result.stderr
