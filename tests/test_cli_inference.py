"""`emonet-face predict` and `emonet-face score` through the real CLI (typer's CliRunner and,
for the console entry point and a real kill, a subprocess)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emonet_face import taxonomy as tx
from emonet_face.outputs import read_table
from helpers_cli import kill_when, run_cli, run_process
from test_pipeline import assert_matches_reference, reference_scores, write_images

NUMERIC = [*tx.HEAD_KEYS, *(f"raw.{k}" for k in tx.HEAD_KEYS), *(f"prob.{k}" for k in tx.EMOTION_KEYS)]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("cli-images"), 4, seed=3)


def assert_same_scores(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a["path"].tolist() == b["path"].tolist()
    assert a["top1"].tolist() == b["top1"].tolist()
    assert a["error"].isna().tolist() == b["error"].isna().tolist()
    np.testing.assert_allclose(a[NUMERIC].to_numpy(float), b[NUMERIC].to_numpy(float), atol=1e-6)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_predict_writes_reference_scores(images, model_args, tiny_encoder_dir, tiny_heads_dir, tmp_path, suffix):
    out = tmp_path / f"scores{suffix}"
    result = run_cli("predict", images[0].parent, "--out", out, "--batch-size", "3", "--num-workers", "1", *model_args)
    assert result.exit_code == 0, result.output
    table = read_table(out)
    assert table["path"].tolist() == [str(p) for p in sorted(images)]
    assert_matches_reference(table, reference_scores(tiny_encoder_dir, tiny_heads_dir, sorted(images)))
    assert "scored 4 row(s), 0 error(s)" in result.stderr


def test_predict_table_on_stdout(images, model_args):
    result = run_cli("predict", images[0], "--quiet", *model_args)
    assert result.exit_code == 0, result.output
    assert "top1" in result.stdout and images[0].name in result.stdout
    assert result.stderr == ""


def test_bad_image_gives_error_row_and_exit_1(images, model_args, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(images[0].read_bytes()[:300])
    out = tmp_path / "scores.csv"
    result = run_cli("predict", images[0], bad, images[1], "--out", out, *model_args)
    assert result.exit_code == 1, result.output
    table = pd.read_csv(out)
    assert table["error"].isna().tolist() == [True, False, True]
    assert str(bad) in table["error"][1]
    assert "1 error(s)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "{empty}"], "no image or video files"),
        (["predict", "{img}", "--heads", "{empty}"], "no model_<key>_best.pth"),
        (["predict", "{img}", "--out", "x.xlsx"], "unknown output format"),
        (["predict", "{img}", "--dtype", "int4"], "--dtype int4"),
        (["predict", "{img}", "--backend", "torch", "--dtype", "int8"], "int8 runs on ONNX Runtime on the CPU"),
        (["predict", "{img}", "--resume"], "--resume needs --out"),
        (["predict", "{img}", "--model", "medium"], "unknown model"),
        (["predict", "{img}", "--heads", "nobody/no-such-heads"], "offline"),
    ],
)
def test_usage_and_load_errors_are_one_line(images, model_args, tmp_path, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    filled = [a.format(empty=empty, img=images[0]) for a in args]
    defaults = model_args[:2] + model_args[4:] if "--heads" in filled else model_args  # the test's --heads wins
    result = run_cli(*filled, *defaults, "--cache-dir", tmp_path / "hf-cache")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_resume_after_interruption_equals_uninterrupted_run(images, model_args, tmp_path):
    full = tmp_path / "full.csv"
    assert run_cli("predict", *images, "--out", full, "--batch-size", "1", *model_args).exit_code == 0
    partial = tmp_path / "partial.csv"
    assert run_cli("predict", *images[:2], "--out", partial, "--batch-size", "1", *model_args).exit_code == 0
    with partial.open("a") as fh:  # the kill happened mid-write of the third row
        fh.write(f"{images[2]},anger,fear,0.1")
    result = run_cli("predict", *images, "--out", partial, "--batch-size", "1", "--resume", *model_args)
    assert result.exit_code == 0, result.output
    assert "2 already done" in result.stderr
    assert_same_scores(pd.read_csv(partial), pd.read_csv(full))


def test_parquet_resume_after_real_kill(images, model_args, net, tmp_path):
    """Kill a real run after its first batch; the output stays readable and --resume completes it."""
    many = write_images(tmp_path / "many", 24, seed=5)
    out = tmp_path / "scores.parquet"
    parts = out.with_name(out.name + ".parts")
    command = ["predict", many[0].parent, "--out", out, "-b", "2", "--num-workers", "0", *model_args]
    command += ["--faces", "none"]  # whole images, compared with EmoNetFace.predict below
    kill_when(lambda: len(list(parts.glob("part-*.parquet"))) >= 2, *command)
    done_before = len(read_table(out))
    assert done_before >= 2
    result = run_cli("predict", many[0].parent, "--out", out, "-b", "2", "--resume", "--faces", "none", *model_args)
    assert result.exit_code == 0, result.output
    resumed = pd.read_parquet(out)
    expected = net.predict(sorted(many), faces="none", num_workers=0)
    assert_same_scores(resumed, expected)
    assert not parts.exists()


def test_score_npy_and_parquet_with_ids(images, model_args, net, tiny_heads_dir, tmp_path):
    features = net.encode(images, num_workers=0)
    expected = net.predict(images, faces="none", num_workers=0)
    np.save(tmp_path / "emb.npy", features)
    out = tmp_path / "from_npy.csv"
    result = run_cli("score", tmp_path / "emb.npy", "--heads", tiny_heads_dir, "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table["index"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(table[NUMERIC].to_numpy(float), expected[NUMERIC].to_numpy(float), atol=1e-6)

    store = pd.DataFrame(
        {"image_id": [f"id{i}" for i in range(4)], "split": ["a", "b", "a", "b"], "embedding": list(features)}
    )
    store.to_parquet(tmp_path / "emb.parquet")
    out = tmp_path / "from_parquet.jsonl"
    result = run_cli("score", tmp_path / "emb.parquet", "--heads", tiny_heads_dir, "--out", out)
    assert result.exit_code == 0, result.output
    table = read_table(out)
    assert table.columns[:3].tolist() == ["image_id", "split", "top1"]
    assert table["image_id"].tolist() == store["image_id"].tolist() and table["split"].tolist() == ["a", "b"] * 2
    np.testing.assert_allclose(table[NUMERIC].to_numpy(float), expected[NUMERIC].to_numpy(float), atol=1e-6)

    from emonet_face.data.store import write_embeddings

    write_embeddings(tmp_path / "store", features, ids=[p.name for p in images])
    out = tmp_path / "from_store.csv"
    result = run_cli("score", tmp_path / "store", "--heads", tiny_heads_dir, "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table["id"].tolist() == [p.name for p in images]
    np.testing.assert_allclose(table[NUMERIC].to_numpy(float), expected[NUMERIC].to_numpy(float), atol=1e-6)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.save(p / "e.npy", np.zeros((3, 31), np.float32)), r"expect (N, 32)"),
        (lambda p: np.save(p / "e.npy", np.zeros(32, np.float32)), "2-D numeric array"),
        (lambda p: (p / "e.npy").write_text("nonsense"), "not a readable .npy"),
        (lambda p: pd.DataFrame({"x": [1]}).to_parquet(p / "e.parquet"), "no 'embedding' column"),
        (lambda p: (p / "e.txt").write_text("1 2 3"), "unknown embeddings format"),
    ],
)
def test_score_bad_embeddings(tiny_heads_dir, tmp_path, make, message):
    make(tmp_path)
    path = next(tmp_path.glob("e.*"))
    result = run_cli("score", path, "--heads", tiny_heads_dir)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_console_script_entry_point_help():
    result = run_process("predict", "--help")
    assert result.returncode == 0
    for option in (
        "--out",
        "--model",
        "--encoder",
        "--heads",
        "--revision",
        "--cache-dir",
        "--batch-size",
        "--num-workers",
        "--device",
        "--dtype",
        "--no-normalize",
        "--resume",
        "--quiet",
    ):
        assert option in result.stdout, option
