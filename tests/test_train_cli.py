"""End to end through the CLI: HF-layout shards → `emonet-face embed` (tiny SigLIP) → `emonet-face train`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emonet_face.data.store import is_store, read_manifest, read_store
from emonet_face.heads import load_heads
from emonet_face.taxonomy import HEAD_KEYS
from helpers_cli import run_cli
from hf_layout import write_shards

pytestmark = pytest.mark.usefixtures("one_thread")


def test_embed_then_train_end_to_end(tmp_path, tiny_encoder_dir):
    big_data = write_shards(tmp_path / "emonet-face-big", "big", 36, shards=2, seed=1)
    binary_data = write_shards(tmp_path / "emonet-face-binary", "binary", 36, shards=2, seed=2)
    stores = {}
    for name, data in (("big", big_data), ("binary", binary_data)):
        stores[name] = tmp_path / f"{name}-store"
        result = run_cli("embed", data, "--out", stores[name], "--encoder", tiny_encoder_dir, "--batch-size", "8",
                         "--num-workers", "1", "--shard-size", "16", "--no-progress")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "36 embeddings (dim 32) in 3 shard(s)" in result.output
        assert is_store(stores[name])
    assert read_manifest(stores["big"])["dataset"]["kind"] == "big"
    _, frame = read_store(stores["binary"])
    assert {"prompt", "age", "ethnicity", "gender", "emotion", "subset"} <= set(frame.columns)

    out = tmp_path / "trained"
    result = run_cli("train", "--pretrain", stores["big"], "--finetune", stores["binary"], "--arch", "small",
                     "--hidden", "8,4", "--epochs", "3", "--finetune-epochs", "2", "--batch-size", "8",
                     "--val-fraction", "0.25", "--neutral", "emotion=neutral", "--seed", "7", "--out", out,
                     "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "validation spearman" in result.output
    record = json.loads((out / "training.json").read_text())
    assert record["seed"] == 7 and record["neutral"]["count"] == 8  # rows 0, 10, 20, 30 of each store
    probe = torch.randn(5, 32)
    released, single = load_heads(out / "released"), load_heads(out / "safetensors")
    assert released.keys == HEAD_KEYS
    with torch.no_grad():
        torch.testing.assert_close(released(probe), single(probe), atol=1e-6, rtol=0)
    assert np.isfinite(released.neutral_mean.numpy()).all() and released.neutral_mean.abs().sum() > 0
    for name in ("metrics.csv", "metrics.png", "validation_report.csv"):
        assert (out / name).is_file()


def test_cli_errors_are_one_line(tmp_path):
    result = run_cli("train", "--pretrain", str(tmp_path), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "error:" in result.output and "not an embedding store" in result.output
    assert "Traceback" not in result.output
    result = run_cli("embed", str(tmp_path / "nope"), "--out", str(tmp_path / "s"), "--encoder", str(tmp_path))
    assert result.exit_code == 2 and "dataset not found" in result.output
    result = run_cli("train", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "nothing to train" in result.output
