"""What a newcomer reads (issue 27, "Messages"): the precision that runs, folders given to the wrong
option, missing inputs and empty folders, one exit-code rule, failed inputs named, a video that ends
early, what a server serves, a quiet Python API, boxes and sizes as plain numbers."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pandas as pd
import pytest
import torch

from emonet_face.errors import InputError
from emonet_face.hub import DEFAULT_ENCODER, MODELS
from emonet_face.inputs.video import iter_video_frames
from emonet_face.outputs import read_metadata, read_table
from helpers_cli import one_line_error, run_cli
from test_pipeline import write_images

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("message-images"), 2, seed=7)


@pytest.fixture(scope="module")
def whole(model_args) -> list[str]:
    return [*model_args, "--faces", "none", "--num-workers", "0"]


def stderr_lines(result) -> list[str]:
    return result.stderr.strip().splitlines()


# --- the precision that runs ------------------------------------------------------------------------
def test_a_bfloat16_request_says_what_runs_and_the_output_agrees(images, whole, tmp_path, recwarn):
    """``--dtype bfloat16`` on OpenVINO: where the CPU has no bf16 the warning says float32 runs (never
    "emulated") and the Parquet metadata says float32; where it has, both say bfloat16."""
    pytest.importorskip("openvino", reason="OpenVINO is a core dependency; CI has it")
    out = tmp_path / "bf16.parquet"
    result = run_cli("predict", images[0], *whole, "--backend", "openvino", "--dtype", "bfloat16", "--out", out)
    assert result.exit_code == 0, result.output
    said = " ".join(str(w.message) for w in recwarn)  # the CLI prints each as one `warning:` line
    runs = read_metadata(out)["encoder"]["precision"]
    if runs == "float32":
        assert "OpenVINO has no bfloat16 on this CPU" in said and "runs float32 instead" in said
        assert "emulat" not in said
    else:
        assert runs == "bfloat16" and "runs float32" not in said


def test_the_gradient_twin_computes_in_the_precision_the_scores_came_from(tiny_encoder_dir):
    """Explanations of a compiled encoder that computes float32 where bfloat16 was asked (OpenVINO on a
    CPU without bf16) differentiate a float32 PyTorch copy: no "PyTorch emulates" warning, maps in the
    precision the table's metadata records."""
    from emonet_face.runtime import differentiable_encoder

    compiled = SimpleNamespace(
        name=str(tiny_encoder_dir), revision=None, normalize=True, graph_heads=None,
        describe=lambda: {"backend": "openvino", "precision": "float32"},
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twin = differentiable_encoder(compiled, device=torch.device("cpu"), dtype="bfloat16")
    assert twin.describe()["precision"] == "float32"


# --- folders given to the wrong option ---------------------------------------------------------------
def test_an_encoder_folder_as_heads_and_heads_as_encoder_say_which_is_which(images, tiny_encoder_dir, tiny_heads_dir):
    encoder_as_heads = run_cli("predict", images[0], "--encoder", tiny_encoder_dir, "--heads", tiny_encoder_dir)
    assert one_line_error(encoder_as_heads) == (
        f"error: {tiny_encoder_dir}: holds a SigLIP encoder (config.json model_type 'siglip'), not emonet-face "
        "heads; pass it as --encoder, and to --heads the folder with the model_<key>_best.pth files"
    )
    heads_as_encoder = run_cli("predict", images[0], "--encoder", tiny_heads_dir, "--heads", tiny_heads_dir)
    assert one_line_error(heads_as_encoder) == (
        f"error: {tiny_heads_dir}: holds emonet-face heads (model_<key>_best.pth), not an encoder; pass it as "
        "--heads, and to --encoder a SigLIP2 folder (config.json + model.safetensors) or Hub id"
    )


# --- missing inputs, exit codes, failed inputs named ---------------------------------------------------
def test_a_missing_input_is_an_error_row_and_the_run_goes_on(images, whole, tmp_path, recwarn):
    """One rule: a missing file is named and gets an error row, an empty folder is named and skipped,
    the rest is scored, exit 1; with nothing that exists the run cannot start (exit 2); all found: 0."""
    missing, empty, out = tmp_path / "missing.jpg", tmp_path / "empty", tmp_path / "scores.csv"
    empty.mkdir()
    result = run_cli("predict", missing, images[0], empty, "--out", out, *whole)
    assert result.exit_code == 1, result.output
    table = read_table(out)
    assert table["path"].tolist() == [str(missing), str(images[0])]
    assert table["error"].tolist()[0] == f"{missing}: file not found" and pd.isna(table["error"][1])
    # a ResourceWarning is another test's socket collected meanwhile, not this run's message
    assert [str(w.message) for w in recwarn if not issubclass(w.category, ResourceWarning)] == [  # one `warning:` line each
        f"{missing}: no such file or folder; each gets a row with an `error`, the other inputs are scored",
        f"{empty}: no image or video files or shards found; skipped",
    ]
    assert stderr_lines(result) == [f"scored 1 row(s), 1 error(s) -> {out}", f"  {missing}: file not found"]

    nothing = run_cli("predict", missing, empty, *whole)
    assert one_line_error(nothing) == (
        f"error: nothing to score ({missing}: no such file or folder; {empty}: no image or video files or shards "
        "found); check the paths"
    )
    assert not (tmp_path / "nothing.csv").exists()
    fine = run_cli("predict", images[0], "--out", tmp_path / "fine.csv", *whole)
    assert fine.exit_code == 0 and stderr_lines(fine) == [f"scored 1 row(s), 0 error(s) -> {tmp_path / 'fine.csv'}"]


def test_the_summary_names_the_first_failed_inputs_and_where_the_rest_are(images, whole, tmp_path):
    from emonet_face.outputs import written_errors

    broken = []
    for i in range(7):
        broken.append(tmp_path / f"broken{i}.jpg")
        broken[-1].write_bytes(b"not a picture")
    out = tmp_path / "scores.parquet"
    result = run_cli("predict", *broken, images[0], "--out", out, *whole)
    assert result.exit_code == 1, result.output
    lines = stderr_lines(result)
    assert lines[0] == f"scored 1 row(s), 7 error(s) -> {out}"
    assert lines[1:6] == [f"  {path}: not a readable image; remove it or convert it to JPEG/PNG" for path in broken[:5]]
    assert lines[6:] == [f"  ... and 2 more; see the `error` column in {out}"]
    assert written_errors(out) == [line.strip() for line in lines[1:6]]
    on_stdout = run_cli("predict", *broken, images[0], *whole)  # no --out: the table above holds the rest
    assert on_stdout.exit_code == 1 and stderr_lines(on_stdout)[-1] == "  ... and 2 more; see the `error` column in the table above"


def test_written_errors_reads_a_folder_of_parquet_parts(tmp_path):
    """``--engine ray`` writes a folder of parts: its failed rows are named from there."""
    from emonet_face.outputs import written_errors

    folder = tmp_path / "ray-out"
    folder.mkdir()
    pd.DataFrame({"path": ["a", "b"], "error": [None, "b: file not found"]}).to_parquet(folder / "part-00000-000.parquet")
    pd.DataFrame({"path": ["c"], "error": ["c: not a readable image"]}).to_parquet(folder / "part-00001-000.parquet")
    assert written_errors(folder) == ["b: file not found", "c: not a readable image"]
    assert written_errors(folder, limit=1) == ["b: file not found"]


def test_python_predict_names_an_empty_folder_and_scores_the_rest(net, images, tmp_path):
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    with pytest.warns(UserWarning, match=r"nothing-here: no image or video files or shards found; skipped"):
        table = net.predict([empty, images[0]], faces="none", num_workers=0)
    assert table["path"].tolist() == [str(images[0])] and table["error"].isna().all()
    with pytest.raises(InputError, match="no image or video files"):  # nothing at all: an error, as before
        net.predict([empty], faces="none", num_workers=0)


def test_help_states_the_exit_codes():
    result = run_cli("--help", terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit codes: 0 all inputs scored; 1 the run went on but some inputs failed" in text
    assert "2 the run could not start" in text


# --- a video that ends early -----------------------------------------------------------------------------
def truncated_video(path: Path, *, seconds: int = 4, rate: int = 10) -> Path:
    """A Matroska video (its header gives the length) of noise frames (bytes spread evenly over the
    frames), cut to half its bytes: the first ~1.8 s decode, the header still says 4 s."""
    rng = np.random.default_rng(0)
    whole = path.with_name("whole" + path.suffix)
    with av.open(str(whole), "w") as container:
        stream = container.add_stream("h264", rate=rate, options={"g": "10", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for _ in range(seconds * rate):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_truncated_video_says_where_it_ended(whole, tmp_path):
    """The frames that decode are scored; one more row, with empty scores, says the video ended early
    and where; the summary names it; exit 1. A later segment past the end adds no second row."""
    video = truncated_video(tmp_path / "clip.mkv")
    decoded = []
    with pytest.raises(InputError, match=r"the video ended early, at 1\.\ds of the 4\.0s its header says"):
        for frame in iter_video_frames(video, fps=None):
            decoded.append(frame.time)
    assert 5 <= len(decoded) < 40
    assert list(iter_video_frames(video, fps=2, start_sample=6)) == []  # past the end: no frame, no error

    out = tmp_path / "clip.csv"
    result = run_cli("predict", video, "--fps", "2", "--out", out, *whole)
    assert result.exit_code == 1, result.output
    table = read_table(out)
    grid = [t for t in (0.0, 0.5, 1.0, 1.5, 2.0) if t <= decoded[-1]]
    assert table["time"].tolist()[:-1] == pytest.approx(grid, abs=0.06) and table["error"][:-1].isna().all()
    last = table.iloc[-1]
    assert pd.isna(last["time"]) and pd.isna(last["top1"])
    assert re.fullmatch(
        rf"{re.escape(str(video))}: the video ended early, at 1\.\ds of the 4\.0s its header says \(a truncated or "
        r"damaged file\?\): frames after 1\.\ds are not scored; re-encode or copy it again",
        last["error"],
    )
    assert stderr_lines(result)[-1] == f"  {last['error']}"


def test_live_on_a_truncated_file_ends_with_an_error_row_and_exit_1(whole, tmp_path):
    """``live`` on the same file: the frames that decode, then one row that says the file ended early;
    the summary names it; exit 1 (the run went on to the end, an input failed), not 2."""
    video = truncated_video(tmp_path / "clip.mkv")
    out = tmp_path / "live.csv"
    result = run_cli("live", video, "--out", out, *[a for a in whole if a not in ("--num-workers", "0")])
    assert result.exit_code == 1, result.output
    table = read_table(out)
    assert table["error"][:-1].isna().all() and "the video ended early" in table["error"].iloc[-1]
    assert stderr_lines(result)[-1] == f"  {table['error'].iloc[-1]}"


# --- what a server serves -------------------------------------------------------------------------------
def fake_net(heads_ref: str, encoder: str | None, *, bundle=None, heads: object = True) -> SimpleNamespace:
    return SimpleNamespace(
        heads_ref=heads_ref, encoder=SimpleNamespace(name=encoder) if encoder else None, bundle=bundle,
        heads=object() if heads else None,
    )  # fmt: skip


def test_info_names_what_is_served(tiny_encoder_dir, tiny_heads_dir):
    """``/v1/info``'s ``model`` is "large" only when the released heads and encoder are served."""
    from emonet_face.serve import ServeConfig
    from emonet_face.serve.info import served_model

    released = served_model(fake_net(MODELS["large"].heads, DEFAULT_ENCODER), ServeConfig())
    assert released == {
        "model": "large", "heads": MODELS["large"].heads, "heads_source": "hub", "encoder": DEFAULT_ENCODER,
        "encoder_source": "hub",
    }  # fmt: skip
    local = ServeConfig(heads=str(tiny_heads_dir), encoder=str(tiny_encoder_dir))
    served = served_model(fake_net(str(tiny_heads_dir), str(tiny_encoder_dir)), local)
    assert served["model"] == f"{tiny_heads_dir.name} + {tiny_encoder_dir.name}"
    assert served["heads"] == str(tiny_heads_dir) and served["heads_source"] == served["encoder_source"] == "folder"
    heads_only = served_model(fake_net(str(tiny_heads_dir), DEFAULT_ENCODER), ServeConfig(heads=str(tiny_heads_dir)))
    assert heads_only["model"] == f"{tiny_heads_dir.name} + {DEFAULT_ENCODER}" and heads_only["encoder_source"] == "hub"
    bundle = served_model(fake_net("b/heads", "b/encoder", bundle=object()), ServeConfig(model=str(tiny_heads_dir)))
    assert bundle["model"] == str(tiny_heads_dir) and bundle["heads_source"] == "bundle"


# --- a quiet Python API --------------------------------------------------------------------------------
def test_loading_from_python_prints_nothing_and_leaves_transformers_settings(tiny_encoder_dir, tiny_heads_dir, capfd):
    """transformers' "layers were not sharded" line and its "Loading weights" bar are not shown (as the
    CLI hides them), and a notebook's own transformers settings are left as they were."""
    from transformers.utils import logging as hf_logging

    from emonet_face.pipeline import EmoNetFace
    from emonet_face.runtime import load_encoder

    previous = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
    hf_logging.set_verbosity_warning()
    hf_logging.enable_progress_bar()
    try:
        capfd.readouterr()
        load_encoder(tiny_encoder_dir, backend="torch", device="cpu", dtype="float32")
        EmoNetFace.from_pretrained(encoder=tiny_encoder_dir, heads=tiny_heads_dir, backend="torch", device="cpu")
        said = capfd.readouterr()
        assert said.err == "" and said.out == ""
        assert hf_logging.get_verbosity() == hf_logging.WARNING and hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity(previous[0])
        (hf_logging.enable_progress_bar if previous[1] else hf_logging.disable_progress_bar)()


# --- boxes and sizes ---------------------------------------------------------------------------------------
def test_the_terminal_table_shows_boxes_in_whole_pixels(capsys):
    from emonet_face.cli.inference import _print_table

    row = {"path": "group.jpg", "face": 0, "box_x": 212.8, "box_y": 70.7, "box_w": 101.1, "box_h": 101.4,
           "det_score": 0.931, "region": "face", "top1": "awe", "top2": None, "top3": None, "prob.awe": 0.05,
           "valence": 0.1234, "error": None}  # fmt: skip
    _print_table(pd.DataFrame([row]))
    shown = capsys.readouterr().out
    assert re.search(r"│ 213\s+│ 71\s+│ 101\s+│ 101\s+│ 0\.93\s+│", shown), shown
    assert "+212" not in shown and "+0.931" not in shown
    assert "awe (0.05)" in shown and "+0.123" in shown  # scores keep their sign


def test_one_size_format_for_download_and_check(tiny_encoder_dir, tiny_heads_dir, tmp_path):
    """``download`` and ``download --check`` give a bundle's size in the same words."""
    from emonet_face.errors import format_size

    assert [format_size(n) for n in (512, 1_650_000, 1_700_000, 20_000_000, 3_500_000_000)] == [
        "512 B", "1.6 MB", "1.7 MB", "20.0 MB", "3.5 GB"
    ]  # fmt: skip
    bundle = tmp_path / "bundle"
    written = run_cli("download", "--encoder", tiny_encoder_dir, "--heads", tiny_heads_dir, "--out", bundle)
    assert written.exit_code == 0, written.output
    checked = run_cli("download", "--check", bundle)
    assert checked.exit_code == 0, checked.output
    size = re.search(r"bundle written \((\d+ files, [\d.]+ [kMG]?B)\)", written.stderr)
    assert size is not None, written.stderr
    assert f"files     {size.group(1)}, all SHA-256 checksums match" in checked.stdout
