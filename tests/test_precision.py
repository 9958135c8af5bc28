"""``--dtype int8`` as a supported mode and ``emonet-face check-precision``: the comparison and its
thresholds, the verdict recorded in the conversion cache and read by later int8 runs (a warning
without a record, a refusal with a failing one unless forced), int8 without ``--backend``, and
``auto`` never choosing int8.

The failing case is made, not hoped for: a tiny SigLIP whose attention value channel is scaled up
by 3000 and scaled back down in the output projection. float32 computes the same features (the
product is unchanged), but per-tensor int8 activations of that projection must now cover a 3000x
range, so every other channel loses its resolution: the planted outlier that SigLIP-family encoders
are known for.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from emonet_face.errors import InputError
from emonet_face.pipeline.precision import compare_scores
from emonet_face.runtime import PRECISIONS, available_backends, resolve_precision
from emonet_face.runtime.device import DTYPE_ENV
from emonet_face.taxonomy import EMOTION_KEYS, HEAD_KEYS
from helpers_cli import one_line_error, run_cli

pytest.importorskip("onnxruntime", reason="int8 runs on ONNX Runtime (the onnx extra, in the test extra)")
pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
OUTLIER = 3000.0


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch) -> Path:
    """A conversion cache per test: records made by one test are never read by another."""
    monkeypatch.setenv("EMONET_FACE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --- the comparison alone ---------------------------------------------------------------------------
def _table(centred: np.ndarray) -> pd.DataFrame:
    """A score table with the columns check-precision reads: ids, centred scores, probabilities, error."""
    emotions = centred[:, : len(EMOTION_KEYS)]
    probs = np.exp(emotions) / np.exp(emotions).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(centred, columns=list(HEAD_KEYS))
    frame[[f"prob.{k}" for k in EMOTION_KEYS]] = probs
    frame.insert(0, "path", [f"p{i}.png" for i in range(len(centred))])
    frame["error"] = None
    return frame


def test_compare_scores_passes_equal_tables_and_judges_top1_changes_by_the_float32_margin():
    rng = np.random.default_rng(0)
    centred = rng.normal(0, 1, (12, len(HEAD_KEYS)))
    same = compare_scores(_table(centred), _table(centred), list(HEAD_KEYS))
    assert same.passed and same.overall["pearson"] == pytest.approx(1) and same.overall["top1"] == 1

    tied = centred.copy()
    tied[0, :2] = [5.0, 5.0 - 1e-4]  # a near-tie in float32 ...
    flipped = tied.copy()
    flipped[0, :2] = [5.0 - 1e-4, 5.0]  # ... that the candidate turns round
    near = compare_scores(_table(tied), _table(flipped), list(HEAD_KEYS))
    assert near.passed and near.overall["top1"] < 1 and near.overall["top1_near_ties"] == 1, near.summary()

    wide = tied.copy()
    wide[0, :2] = [5.0, 3.0]  # float32 is sure (probabilities far apart) ...
    swapped = wide.copy()
    swapped[0, :2] = [3.0, 5.0]  # ... and the candidate answers otherwise
    far = compare_scores(_table(wide), _table(swapped), list(HEAD_KEYS))
    assert not far.passed and any("top-1" in f for f in far.failures), far.summary()
    change = next(c for c in far.changes if c["k"] == 1)
    assert change["path"] == "p0.png" and change["float32_margin"] > 0.01


def test_compare_scores_refuses_different_rows():
    centred = np.zeros((3, len(HEAD_KEYS)))
    other = _table(centred)
    other.loc[1, "path"] = "else.png"
    with pytest.raises(InputError, match="different rows"):
        compare_scores(_table(centred), other, list(HEAD_KEYS))


# --- auto never picks int8 ----------------------------------------------------------------------------
@pytest.mark.parametrize("bf16", ["0", "1"])
def test_auto_never_chooses_int8(monkeypatch, bf16):
    monkeypatch.delenv(DTYPE_ENV, raising=False)
    monkeypatch.setenv("EMONET_FACE_CPU_BF16", bf16)
    for backend in available_backends():
        for dtype in (None, "auto"):
            assert resolve_precision(dtype, CPU, backend) != "int8", (backend, dtype)
    assert "int8" in PRECISIONS.values()  # it exists, only auto never means it
    with pytest.raises(InputError, match="int8 runs on ONNX Runtime on the CPU"):
        resolve_precision("int8", CPU, "openvino")


# --- the tiny model, a planted outlier, the CLI ---------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("precision-photos")
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40 + 3 * i, 36 + 5 * i, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def outlier_encoder_dir(tiny_encoder_dir, tmp_path_factory) -> Path:
    """The tiny SigLIP with one value channel of the last layer's attention scaled by OUTLIER and its
    output-projection column divided by it: the same float32 function, a hostile one for int8."""
    from transformers import SiglipModel

    folder = tmp_path_factory.mktemp("outlier-siglip")
    model = SiglipModel.from_pretrained(tiny_encoder_dir).eval()
    attention = model.vision_model.encoder.layers[-1].self_attn
    with torch.no_grad():
        attention.v_proj.weight[3] *= OUTLIER
        attention.v_proj.bias[3] *= OUTLIER
        attention.out_proj.weight[:, 3] /= OUTLIER
    model.save_pretrained(folder)
    shutil.copy(tiny_encoder_dir / "preprocessor_config.json", folder)
    return folder


def _args(encoder: Path, heads: Path, images: Path) -> list[str]:
    return [images, "--encoder", encoder, "--heads", heads, "--device", "cpu", "--faces", "none"]


def test_check_precision_float32_against_itself_passes_with_a_report(tiny_encoder_dir, tiny_heads_dir, images, tmp_path):
    result = run_cli("check-precision", *_args(tiny_encoder_dir, tiny_heads_dir, images), "--dtype", "float32",
                     "--out", tmp_path / "report")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Pearson 1.00000" in result.stdout and "PASS" in result.stdout
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["passed"] and report["rows"] == 6 and report["overall"]["max_abs_centred"] == 0
    assert len(report["heads"]) == len(HEAD_KEYS) and report["record"] is None  # float32 needs no record
    assert (tmp_path / "report" / "report.md").read_text().startswith("# check-precision: float32")
    assert Image.open(tmp_path / "report" / "scatter.png").size[0] > 600


def test_int8_without_a_record_warns_then_a_passing_check_quiets_it(tiny_encoder_dir, tiny_heads_dir, images, tmp_path):
    args = _args(tiny_encoder_dir, tiny_heads_dir, images)
    with pytest.warns(UserWarning, match=r"has not been checked on this CPU; run `emonet-face check-precision"):
        result = run_cli("predict", *args, "--dtype", "int8")  # no --backend: int8 picks its runtime
    assert result.exit_code == 0, result.output

    checked = run_cli("check-precision", *args, "--dtype", "int8")
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith("int8 against float32 (onnx):") and "PASS" in checked.stdout
    record = Path(checked.stderr.split("recorded for later --dtype int8 runs: ")[1].split()[0])
    stored = next(iter(json.loads(record.read_text())["records"].values()))
    assert stored["passed"] and stored["precision"] == "int8" and stored["runtime"].startswith("onnxruntime")
    assert stored["cpu"]["model"] and stored["heads"] == str(tiny_heads_dir)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a passing record: not a word
        again = run_cli("predict", *args, "--dtype", "int8", "--out", tmp_path / "int8.csv")
    assert again.exit_code == 0, again.output
    assert pd.read_csv(tmp_path / "int8.csv")["error"].isna().all()


def test_an_outlier_channel_fails_the_check_and_later_int8_runs_refuse_unless_forced(
    outlier_encoder_dir, tiny_heads_dir, images, tmp_path
):
    args = _args(outlier_encoder_dir, tiny_heads_dir, images)
    checked = run_cli("check-precision", *args, "--dtype", "int8", "--out", tmp_path / "report")
    assert checked.exit_code == 1, checked.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert not report["passed"] and report["overall"]["pearson"] < 0.999, report["summary"]
    assert any(f.startswith("Pearson") for f in report["failures"]), report["failures"]

    refused = one_line_error(run_cli("predict", *args, "--dtype", "int8"))
    assert "check-precision failed" in refused and "Pearson" in refused and "--force-precision" in refused

    forced = run_cli("embed", images, "--out", tmp_path / "store", "--encoder", outlier_encoder_dir, "--device", "cpu",
                     "--dtype", "int8", "--force-precision", "--no-progress")  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert "warning: --dtype int8 forced (--force-precision)" in forced.stderr  # embed reports its warnings as notes
    assert json.loads((tmp_path / "store" / "manifest.json").read_text())["encoder"]["precision"] == "int8"


def test_float32_is_unchanged_by_the_planted_outlier(tiny_encoder_dir, outlier_encoder_dir, images):
    """The outlier model is the same float32 function: only int8 can tell them apart."""
    from emonet_face.runtime import load_encoder

    pictures = [Image.open(p).convert("RGB") for p in sorted(images.iterdir())]
    plain = load_encoder(tiny_encoder_dir, backend="torch", device="cpu", dtype="float32").embed(pictures)
    planted = load_encoder(outlier_encoder_dir, backend="torch", device="cpu", dtype="float32").embed(pictures)
    assert torch.allclose(plain, planted, atol=1e-4)


def test_the_int8_graph_keeps_the_pooling_head_in_float32(tiny_encoder_dir, tmp_path):
    import onnx

    from emonet_face.runtime import load_encoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = load_encoder(tiny_encoder_dir, device="cpu", dtype="int8", compiled_dir=tmp_path)
    assert (encoder.describe()["backend"], encoder.describe()["precision"]) == ("onnx", "int8")
    nodes = onnx.load(str(encoder.cache_entry / "encoder.onnx"), load_external_data=False).graph.node
    quantised = [n.name for n in nodes if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    plain = [n.name for n in nodes if n.op_type == "MatMul"]
    assert quantised and any("/encoder/layers." in n for n in quantised)
    assert not any("/head/" in n for n in quantised) and any("/head/mlp/" in n for n in plain)
    # each layer's bias add + tanh-GELU (eight elementwise nodes) is one FastGelu, as is the pooling head's
    ops = [n.op_type for n in nodes]
    assert ops.count("FastGelu") == 2 + 1 and "Tanh" not in ops


def test_download_with_int8_stores_the_graph_that_int8_runs_use(tiny_encoder_dir, tiny_heads_dir, images, tmp_path, own_cache):
    from emonet_face.bundle import open_bundle, write_bundle

    bundle = write_bundle(tmp_path / "bundle", encoder=tiny_encoder_dir, heads=tiny_heads_dir, with_int8=True)
    assert bundle.int8_graph is not None and bundle.int8_graph.is_file()
    assert any(line.startswith("  int8      stored: onnx-int8/encoder.onnx") for line in open_bundle(bundle.folder).summary())
    with pytest.warns(UserWarning, match="has not been checked on this CPU"):
        result = run_cli("predict", images, "--model", bundle.folder, "--dtype", "int8", "--faces", "none",
                         "--device", "cpu", "--out", tmp_path / "scores.parquet")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not list(own_cache.glob("onnx-*")), "the stored int8 graph runs: nothing is converted or quantised"
    from emonet_face.outputs import read_metadata

    assert read_metadata(tmp_path / "scores.parquet")["encoder"]["precision"] == "int8"
