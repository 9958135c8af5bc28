"""Released head format, fused scoring and post-processing against the real golden outputs."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from emonet_face import taxonomy as tx
from emonet_face.errors import ModelLoadError
from emonet_face.heads import (
    FusedHeads,
    HeadArchitecture,
    build_head_module,
    load_head_state_dict,
    load_heads,
    postprocess_scores,
    save_heads,
)

LARGE = HeadArchitecture(1152, (1024, 512, 256))


@pytest.fixture(scope="session")
def released_large(tmp_path_factory):
    """44 random Large heads written exactly as the release lays them out, plus neutral stats."""
    folder = tmp_path_factory.mktemp("released-large")
    torch.manual_seed(0)
    means = {}
    for i, key in enumerate(tx.HEAD_KEYS):
        torch.save(build_head_module(LARGE).state_dict(), folder / tx.head_file_name(key))
        means[tx.head_stats_key(key)] = {"mean": 0.01 * i, "std": 1.0}
    (folder / tx.NEUTRAL_STATS_FILENAME).write_text(json.dumps(means))
    return folder


def test_released_layout_keys():
    keys = set(build_head_module(LARGE).state_dict())
    assert keys == {f"layers.{i}.{p}" for i in (0, 3, 6, 9) for p in ("weight", "bias")}
    small = build_head_module(HeadArchitecture(1152, (128, 32))).state_dict()
    assert set(small) == {f"layers.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}


def test_fused_matches_per_head_modules(released_large):
    heads = load_heads(released_large)
    assert heads.keys == tx.HEAD_KEYS
    assert heads.arch == LARGE
    assert heads.neutral_mean[3].item() == pytest.approx(0.03)
    x = torch.nn.functional.normalize(torch.randn(700, 1152), dim=1)  # > chunk size
    with torch.inference_mode():
        fused = heads(x)
        for h, key in enumerate(tx.HEAD_KEYS):
            module = build_head_module(LARGE)
            module.load_state_dict(torch.load(released_large / tx.head_file_name(key), weights_only=True))
            module.eval()
            assert torch.allclose(fused[:, h], module(x)[:, 0], atol=1e-5), key


def test_wrapped_state_dict_and_small_arch(tmp_path):
    arch = HeadArchitecture(64, (128, 32))
    torch.save({"state_dict": build_head_module(arch).state_dict()}, tmp_path / "model_anger_best.pth")
    heads = load_heads(tmp_path, subset=True)
    assert heads.arch == arch and heads.keys == ("anger",)
    assert heads.neutral_mean.tolist() == [0.0]


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_arbitrary_pickle_refused(tmp_path):
    path = tmp_path / "model_anger_best.pth"
    with path.open("wb") as fh:
        pickle.dump({"layers.0.weight": _Evil()}, fh)
    with pytest.raises(ModelLoadError, match="weights_only"):
        load_head_state_dict(path)


def test_a_folder_missing_heads_is_refused_unless_a_subset_is_meant(tmp_path, released_large):
    """2 of the 44 heads (an interrupted copy) is an error naming what is missing; a subset loads when
    asked for, or when the neutral-stats file names exactly the heads present (as save_heads writes it)."""
    import shutil

    two = tmp_path / "two"
    two.mkdir()
    for key in ("anger", "elation"):
        shutil.copy(released_large / tx.head_file_name(key), two)
    shutil.copy(released_large / tx.NEUTRAL_STATS_FILENAME, two)  # names all 44
    with pytest.raises(ModelLoadError) as caught:
        load_heads(two)
    message = str(caught.value)
    assert "\n" not in message and str(two) in message
    assert "holds 2 of the 44 heads (missing 42: model_amusement_best.pth" in message and "subset=True" in message
    (two / tx.NEUTRAL_STATS_FILENAME).unlink()
    with pytest.raises(ModelLoadError, match="holds 2 of the 44"):
        load_heads(two)  # no stats file at all: still incomplete
    with pytest.warns(UserWarning, match="no neutral stats file"):
        subset = load_heads(two, subset=True)
    assert subset.keys == ("elation", "anger")
    save_heads(subset, tmp_path / "saved")  # its stats file names exactly these two heads
    assert load_heads(tmp_path / "saved").keys == ("elation", "anger")


def test_empty_heads_folder(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no model_<key>_best\.pth"):
        load_heads(tmp_path)


@pytest.mark.parametrize("layout", ["released", "safetensors"])
def test_save_and_reload_roundtrip(tmp_path, layout):
    arch = HeadArchitecture(32, (16, 8))
    torch.manual_seed(1)
    heads = FusedHeads(tx.HEAD_KEYS, arch, neutral_mean=np.linspace(-1, 1, 44)).eval()
    save_heads(heads, tmp_path, layout=layout)
    again = load_heads(tmp_path)
    x = torch.randn(5, 32)
    assert again.keys == heads.keys
    assert torch.equal(again.neutral_mean, heads.neutral_mean)
    with torch.inference_mode():
        assert torch.allclose(again(x), heads(x), atol=1e-6)


def test_postprocess_reproduces_released_outputs(release_data):
    means_by_head = json.loads((release_data / "derived_eif_neutral_means_from_ferd.json").read_text())[
        "neutral_mean_by_head"
    ]
    rows = [json.loads(line) for line in (release_data / "emonet-face_eval_ferd.jsonl").read_text().splitlines()]
    keys = tx.HEAD_KEYS
    stats = [tx.head_stats_key(k) for k in keys]
    raw = np.array([[r["results"][s]["raw"] for s in stats] for r in rows])
    means = np.array([means_by_head[s] for s in stats])
    emotion_index = [keys.index(k) for k in tx.EMOTION_KEYS]
    centred, probs = postprocess_scores(raw, means, emotion_index)
    expected_centred = np.array([[r["results"][s]["mean_subtracted"] for s in stats] for r in rows])
    expected_probs = np.array([[r["results"][tx.head_stats_key(k)]["softmax"] for k in tx.EMOTION_KEYS] for r in rows])
    assert len(rows) == 152
    np.testing.assert_allclose(centred, expected_centred, atol=1e-6, rtol=0)
    np.testing.assert_allclose(probs, expected_probs, atol=1e-6, rtol=0)
    for r in rows:  # the 4 extra dimensions carry no softmax
        assert all(r["results"][tx.head_stats_key(k)]["softmax"] is None for k in tx.EXTRA_KEYS)


@pytest.mark.parametrize("n_rows", [1, 32, 1500])
def test_cpu_inference_path_matches_autograd_path_and_modules(n_rows):
    """The inference-only CPU path (head by head, row blocks) equals the stacked autograd path."""
    torch.manual_seed(2)
    arch = HeadArchitecture(64, (48, 24, 12))
    heads = FusedHeads(tx.HEAD_KEYS[:7], arch).eval()
    heads.cpu_block_rows = 512  # several blocks for 1500 rows
    x = torch.randn(n_rows, 64)
    with torch.inference_mode():
        fast = heads(x)
        modules = torch.cat([heads.head_module(k)(x) for k in heads.keys], dim=1)
    autograd = heads(x)  # grad enabled: the stacked path used for training
    assert autograd.requires_grad and not fast.requires_grad
    assert fast.shape == (n_rows, 7)
    assert torch.allclose(fast, autograd.detach(), atol=1e-5)
    assert torch.allclose(fast, modules, atol=1e-5)


def test_train_mode_dropout_and_gradients_still_work():
    torch.manual_seed(3)
    heads = FusedHeads(tx.HEAD_KEYS[:3], HeadArchitecture(16, (32,), dropout=0.5)).train()
    x = torch.randn(8, 16)
    first, second = heads(x), heads(x)
    assert not torch.allclose(first, second)  # dropout active
    first.sum().backward()
    assert heads.weights[0].grad is not None and heads.weights[0].grad.abs().sum() > 0
    with torch.no_grad():  # train mode under no_grad keeps dropout (not the inference path)
        assert not torch.allclose(heads(x), heads(x))
