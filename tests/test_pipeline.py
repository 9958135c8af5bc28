"""EmoNetFace end to end on a tiny SigLIP + tiny released-layout heads, checked against a
straightforward reference: processor → full-model image features → normalise → each head as a
plain nn.Sequential from its .pth → subtract neutral means → softmax."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.special import softmax

from conftest import build_tiny_heads
from emonet_face import taxonomy as tx
from emonet_face.errors import InputError, ModelLoadError
from emonet_face.inputs import ImageSource
from emonet_face.pipeline import EmoNetFace


def write_images(folder: Path, n: int = 4, seed: int = 0) -> list[Path]:
    """Random RGB images of different sizes and formats."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        array = rng.integers(0, 256, (40 + 7 * i, 50 + 3 * i, 3), dtype=np.uint8)
        path = folder / f"img{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def reference_scores(encoder_dir: Path, heads_dir: Path, paths: list[Path]) -> dict[str, np.ndarray]:
    """Independent scoring, one head at a time, the way the released example does it."""
    from transformers import AutoImageProcessor, SiglipModel

    processor = AutoImageProcessor.from_pretrained(encoder_dir, backend="pil")
    full = SiglipModel.from_pretrained(encoder_dir).eval()
    images = [Image.open(p).convert("RGB") for p in paths]
    with torch.no_grad():
        out = full.get_image_features(**processor(images=images, return_tensors="pt"))
        features = out.pooler_output if hasattr(out, "pooler_output") else out
        features = features / features.norm(dim=-1, keepdim=True)
    stats = json.loads((heads_dir / tx.NEUTRAL_STATS_FILENAME).read_text())
    raw, centred = {}, {}
    for key in tx.HEAD_KEYS:
        state = torch.load(heads_dir / tx.head_file_name(key), weights_only=True)
        widths = [state[f"layers.{i}.weight"].shape for i in (0, 3, 6)]
        seq = torch.nn.Sequential(
            torch.nn.Linear(widths[0][1], widths[0][0]),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(widths[1][1], widths[1][0]),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(widths[2][1], widths[2][0]),
        ).eval()
        seq.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
        with torch.no_grad():
            raw[key] = seq(features)[:, 0].numpy().astype(np.float64)
        centred[key] = raw[key] - stats[tx.head_stats_key(key)]["mean"]
    emotion_matrix = np.stack([centred[k] for k in tx.EMOTION_KEYS], axis=1)
    probs = softmax(emotion_matrix, axis=1)
    return {"features": features.numpy(), "raw": raw, "centred": centred, "probs": probs}


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("images"), 5)


@pytest.fixture(scope="module")
def reference(tiny_encoder_dir, tiny_heads_dir, image_paths):
    return reference_scores(tiny_encoder_dir, tiny_heads_dir, image_paths)


def assert_matches_reference(table: pd.DataFrame, ref: dict, rows: list[int] | None = None) -> None:
    rows = list(range(len(ref["probs"]))) if rows is None else rows
    for key in tx.HEAD_KEYS:
        np.testing.assert_allclose(table[f"raw.{key}"], ref["raw"][key][rows], atol=1e-5, rtol=0)
        np.testing.assert_allclose(table[key], ref["centred"][key][rows], atol=1e-5, rtol=0)
    probs = table[[f"prob.{k}" for k in tx.EMOTION_KEYS]].to_numpy()
    np.testing.assert_allclose(probs, ref["probs"][rows], atol=1e-6, rtol=0)
    best = [tx.EMOTION_KEYS[i] for i in ref["probs"][rows].argmax(axis=1)]
    assert table["top1"].tolist() == best


def test_predict_matches_reference(net, image_paths, reference):
    table = net.predict(image_paths, batch_size=2, faces="none", num_workers=0)
    assert table["path"].tolist() == [str(p) for p in image_paths]
    assert table["error"].isna().all()
    expected_columns = (
        ["path", "top1", "top2", "top3"]
        + list(tx.HEAD_KEYS)
        + [f"prob.{k}" for k in tx.EMOTION_KEYS]
        + [f"raw.{k}" for k in tx.HEAD_KEYS]
        + ["error"]
    )
    assert list(table.columns) == expected_columns
    assert_matches_reference(table, reference)
    np.testing.assert_allclose(table[[f"prob.{k}" for k in tx.EMOTION_KEYS]].sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize(("batch_size", "workers"), [(1, 0), (3, 2), (16, 1)])
def test_batching_and_workers_do_not_change_results(net, image_paths, reference, batch_size, workers):
    table = net.predict(image_paths, batch_size=batch_size, faces="none", num_workers=workers)
    assert table["path"].tolist() == [str(p) for p in image_paths]
    assert_matches_reference(table, reference)


def test_folder_and_pil_inputs(net, image_paths, reference):
    by_folder = net.predict(image_paths[0].parent, faces="none", num_workers=0)
    assert sorted(by_folder["path"]) == sorted(str(p) for p in image_paths)
    pil = [Image.open(p).convert("RGB") for p in image_paths]
    table = net.predict(pil, faces="none", num_workers=0)
    assert table["path"].tolist() == [f"<image {i}>" for i in range(len(pil))]
    assert_matches_reference(table, reference)


def test_encode_and_score_agree_with_predict(net, image_paths, reference):
    features = net.encode(image_paths, num_workers=0)
    assert features.shape == (len(image_paths), 32) and features.dtype == np.float32
    np.testing.assert_allclose(features, reference["features"], atol=1e-5)
    table = net.score(features, ids=[str(p) for p in image_paths])
    assert_matches_reference(table, reference)
    assert net.score(torch.from_numpy(features))["index"].tolist() == list(range(len(image_paths)))


def test_bad_images_become_error_rows(net, image_paths, reference, tmp_path):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is not a picture")
    truncated = tmp_path / "truncated.jpg"
    data = image_paths[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    missing = tmp_path / "missing.png"
    inputs = [image_paths[0], not_image, image_paths[1], truncated, missing, image_paths[2]]
    table = net.predict(inputs, batch_size=2, faces="none", num_workers=2)
    assert table["path"].tolist() == [str(p) for p in inputs]
    errors = table["error"].tolist()
    assert "not a readable image" in errors[1] and str(not_image) in errors[1]
    assert "truncated" in errors[3] and str(truncated) in errors[3]
    assert "not found" in errors[4]
    ok = table["error"].isna().to_numpy()
    assert ok.tolist() == [True, False, True, False, False, True]
    assert table.loc[~ok, list(tx.HEAD_KEYS)].isna().all().all()
    assert table.loc[~ok, "top1"].isna().all()
    assert_matches_reference(table[ok].reset_index(drop=True), reference, rows=[0, 1, 2])
    with pytest.raises(InputError, match="not a readable image"):
        net.encode([not_image])


def test_empty_folder_is_an_error(net, tmp_path):
    with pytest.raises(InputError, match="no image or video files"):
        net.predict(tmp_path)


def test_wrong_embedding_width(net):
    with pytest.raises(InputError, match=r"expect \(N, 32\)"):
        net.score(np.zeros((3, 31), dtype=np.float32))


def test_encoder_heads_width_mismatch(tiny_encoder_dir, tmp_path):
    heads = build_tiny_heads(tmp_path, in_dim=48)
    with pytest.raises(ModelLoadError, match="32-dim features but the heads expect 48"):
        EmoNetFace.from_pretrained(encoder=str(tiny_encoder_dir), heads=str(heads), device="cpu")


def test_heads_folder_without_pth(tiny_encoder_dir, tmp_path):
    with pytest.raises(ModelLoadError, match=r"no model_<key>_best\.pth"):
        EmoNetFace.from_pretrained(encoder=str(tiny_encoder_dir), heads=str(tmp_path))


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_object_refused(tiny_encoder_dir, tmp_path, capsys):
    with (tmp_path / "model_anger_best.pth").open("wb") as fh:
        pickle.dump(_Payload(), fh)
    with pytest.raises(ModelLoadError, match="weights_only"):
        EmoNetFace.from_pretrained(encoder=str(tiny_encoder_dir), heads=str(tmp_path))
    assert "code ran" not in capsys.readouterr().out


def test_offline_missing_hub_model(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="offline") as info:
        EmoNetFace.from_pretrained(heads="nobody/no-such-heads", cache_dir=tmp_path, with_encoder=False)
    assert "\n" not in str(info.value)


def test_unknown_model_name():
    with pytest.raises(ModelLoadError, match="unknown model"):
        EmoNetFace.from_pretrained("medium")


def test_heads_only_model(tiny_heads_dir):
    heads_only = EmoNetFace.from_pretrained(heads=str(tiny_heads_dir), with_encoder=False, device="cpu")
    assert heads_only.encoder is None
    with pytest.raises(ModelLoadError, match="without an encoder"):
        heads_only.predict([Image.new("RGB", (8, 8))])


# --- extension seams: sources that yield several items, expansion into crops ----------------------
class ThreeFrames(ImageSource):
    """A stand-in for a video source: every input yields three 'frames' (the image, flipped)."""

    def __call__(self, ids, ref):
        image = Image.open(ref).convert("RGB")
        for frame in range(3):
            yield (
                {**ids, "frame": frame, "time": frame / 10},
                image.transpose(Image.FLIP_LEFT_RIGHT) if frame else image,
            )


def two_faces_or_none(ids, image):
    """A stand-in for a face detector: wide images hold two 'faces', the others none."""
    keys = {"face": None, "box_x": None}
    if image.width < 52:
        return [({**ids, **keys}, None)]
    half = image.width // 2
    return [
        ({**ids, "face": i, "box_x": i * half}, image.crop((i * half, 0, (i + 1) * half, image.height))) for i in (0, 1)
    ]


def test_source_and_expand_seams(net, image_paths):
    table = net.predict(image_paths[:3], batch_size=4, num_workers=1, source=ThreeFrames(), expand=two_faces_or_none)
    assert list(table.columns[:6]) == ["path", "frame", "time", "face", "box_x", "top1"]
    # img0 is 50 px wide (no face): 3 rows with empty scores and no error; img1/img2: 3 frames x 2 faces.
    assert len(table) == 3 + 6 + 6
    first = table[table["path"] == str(image_paths[0])]
    assert first["error"].isna().all() and first["top1"].isna().all() and first["anger"].isna().all()
    second = table[table["path"] == str(image_paths[1])]
    assert second["frame"].tolist() == [0, 0, 1, 1, 2, 2] and second["face"].tolist() == [0, 1] * 3
    assert second["anger"].notna().all()
    crop = Image.open(image_paths[1]).convert("RGB")
    crop = crop.crop((crop.width // 2, 0, crop.width // 2 * 2, crop.height))
    single = net.predict([crop], source=ImageSource(), num_workers=0)  # the crop as it is: no face stage
    np.testing.assert_allclose(second["anger"].iloc[1], single["anger"].iloc[0], atol=1e-5)


def test_skip_resume_keys(net, image_paths):
    skip = {(str(image_paths[0]),), (str(image_paths[1]), 1)}
    frames = list(net.predict_batches(image_paths[:2], batch_size=2, num_workers=0, source=ThreeFrames(), skip=skip))
    table = pd.concat(frames, ignore_index=True)
    assert list(zip(table["path"], table["frame"])) == [(str(image_paths[1]), 0), (str(image_paths[1]), 2)]


def test_batches_hold_complete_inputs(net, image_paths):
    """A yielded batch never splits the rows of one input (so resume by path is exact)."""
    frames = list(net.predict_batches(image_paths[:3], batch_size=2, num_workers=0, source=ThreeFrames()))
    for frame in frames:
        assert (frame.groupby("path").size() == 3).all()
