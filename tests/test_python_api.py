"""The Python API does what the CLI does: `EmoNetFace.predict` finds faces by default with the CLI's
defaults and gives the CLI's rows and columns; it takes numpy arrays and videos; `EmoNetFace.run`
drives faces → scores → tracks → pictures → a written table with resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import face_video
from emonet_face.errors import InputError
from emonet_face.options import FaceOptions, MediaOptions, ModelOptions
from emonet_face.outputs import read_table
from emonet_face.pipeline import EmoNetFace, RunOptions
from helpers_cli import run_cli
from test_predict_faces import SCORES


def test_predict_gives_the_cli_rows_and_columns(photos, net, model_args, tmp_path):
    """Same inputs, default options: the same rows (one per face) and columns, the same numbers."""
    inputs = [photos["group"], photos["astronaut"], photos["landscape"]]
    out = tmp_path / "cli.parquet"
    assert run_cli("predict", *inputs, "--out", out, *model_args).exit_code == 0
    cli = pd.read_parquet(out)
    api = net.predict(inputs, num_workers=0)
    assert list(api.columns) == list(cli.columns)
    assert len(api) == len(cli) == 4  # two faces in the group, one astronaut, a landscape without a face
    assert api["face"].tolist()[:3] == [0, 1, 0]
    pd.testing.assert_frame_equal(api[["path", "face", "region", "top1"]], cli[["path", "face", "region", "top1"]])
    np.testing.assert_allclose(api[SCORES].to_numpy(float), cli[SCORES].to_numpy(float), atol=1e-5, equal_nan=True)


def test_numpy_arrays_are_images(astronaut, net):
    array = np.asarray(astronaut)
    one = net.predict(array, num_workers=0)
    many = net.predict([array, array[:, ::-1].copy()], num_workers=0)
    as_pil = net.predict([astronaut], num_workers=0)
    assert one["path"].tolist() == ["<array 0>"] and len(one) == 1 and one["face"].tolist() == [0]
    assert many["path"].tolist() == ["<array 0>", "<array 1>"]
    np.testing.assert_allclose(one[SCORES].to_numpy(float), as_pil[SCORES].to_numpy(float), atol=1e-6)
    stacked = net.predict(np.stack([array, array]), num_workers=0)
    assert stacked["path"].tolist() == ["<array 0[0]>", "<array 0[1]>"]


@pytest.mark.parametrize(
    "bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)]
)
def test_a_wrong_array_names_the_expected_shape(net, bad):
    with pytest.raises(InputError, match=r"expected an H×W×3 uint8 RGB array, got shape") as info:
        net.predict([bad], num_workers=0)
    assert "\n" not in str(info.value)


def test_a_video_is_scored_as_frames(tmp_path, astronaut, net):
    video = face_video(tmp_path / "clip.mp4", astronaut)
    table = net.predict(str(video), media=MediaOptions(fps=2), num_workers=0)
    assert list(table.columns[:4]) == ["path", "frame", "time", "face"]
    assert table["error"].isna().all() and table["frame"].tolist() == [0, 5, 10, 15, 20, 25]
    assert "track" in table.columns or table["face"].notna().all()


def test_options_are_checked_as_the_cli_checks_them():
    with pytest.raises(InputError, match=r"^--fps 0: must be more than 0"):
        MediaOptions(fps=0)
    with pytest.raises(InputError, match=r"^--faces sideways: use detect, none or auto"):
        FaceOptions("sideways")
    with pytest.raises(InputError, match=r"^--dtype int4: use auto"):
        ModelOptions(dtype="int4")
    with pytest.raises(InputError, match=r"^--backend tensorrt: use one of auto, torch, openvino, onnx"):
        ModelOptions(backend="tensorrt")
    with pytest.raises(InputError, match="--resume needs --out"):
        RunOptions(resume=True)


def test_a_run_from_python_tracks_draws_writes_and_resumes(tmp_path, astronaut, photos, net):
    """Faces → scores → tracks → pictures → Parquet, then a resumed run that adds only what is new."""
    video = face_video(tmp_path / "clip.mp4", astronaut)
    out, tracks, vis = tmp_path / "scores.parquet", tmp_path / "tracks.csv", tmp_path / "vis"
    first = net.run([video], out=out, tracks_out=tracks, save_vis=vis, media=MediaOptions(fps=2), num_workers=0)
    assert (first.rows, first.errors, first.skipped) == (6, 0, 0)
    written = read_table(out)
    assert written["track"].nunique() == 1 and len(written) == 6  # one person across the frames
    assert len(pd.read_csv(tracks)) == 1
    assert sorted(p.suffix for p in vis.iterdir()) and any(p.suffix == ".png" for p in vis.rglob("*"))

    again = net.run([video, photos["astronaut"]], RunOptions(out=out, resume=True), media=MediaOptions(fps=2))
    assert again.skipped == 6 and again.rows == 1  # the video was done; the photo is new
    assert len(read_table(out)) == 7 and not read_table(out).duplicated(["path", "frame", "face"]).any()


def test_run_without_out_keeps_the_table(photos, net):
    summary = net.run([photos["group"]], num_workers=0)
    assert summary.out is None and summary.rows == 2 and summary.table is not None and len(summary.table) == 2


def test_the_readme_python_example_runs(tiny_encoder_dir, tiny_heads_dir, photos):
    """README: `EmoNetFace.from_pretrained(...)` then `model.predict(["photos/"])` (a folder)."""
    model = EmoNetFace.from_pretrained(encoder=tiny_encoder_dir, heads=tiny_heads_dir, device="cpu")
    table = model.predict([str(photos["group"].parent)])
    assert {"face", "top1", "prob.anger", "raw.anger", "error"} <= set(table.columns)
    assert len(table) >= 4


def test_image_sizes_do_not_matter_to_the_array_path(net):
    small = Image.new("RGB", (40, 40), (200, 150, 120))
    table = net.predict([np.asarray(small)], faces="none", num_workers=0)
    assert table["error"].isna().all() and table["anger"].notna().all()
