"""Encoder backends (PyTorch, OpenVINO, ONNX Runtime) and the one-graph export on the tiny SigLIP:
same table within 1e-4 in float32, a documented bound in bfloat16, a disk cache that is reused
(no second conversion) and never left half-written, and backend/precision/device in the outputs."""

from __future__ import annotations

import json
import os
import stat
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from emonet_face import taxonomy as tx
from emonet_face.errors import InputError, ModelLoadError
from emonet_face.export import export_model
from emonet_face.pipeline import EmoNetFace
from emonet_face.runtime import CompiledEncoder, ExportedGraph, ImageEncoder, backends, device, load_encoder
from emonet_face.runtime import exported as exported_module
from emonet_face.runtime.device import resolve_backend, resolve_precision
from helpers_cli import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

FP32_TOL = 1e-4
BF16_TOL = 0.05
"""bfloat16 keeps 8 mantissa bits (relative error ~4e-3 per value); on the tiny random model the
centred scores drift by at most a few 1e-3. The real-size bound (cosine, max |Δ centred|) is what
benchmarks/bench_encoder.py reports."""

CPU = torch.device("cpu")


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 36 + 5 * i, 3), dtype=np.uint8)) for i in range(n)]


def _table(net: EmoNetFace) -> pd.DataFrame:
    return net.predict(_images(), batch_size=2, faces="none", num_workers=0, progress=False)


def _centred(table: pd.DataFrame) -> np.ndarray:
    assert table["error"].isna().all()
    return table[list(tx.HEAD_KEYS)].to_numpy(float)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("compiled")


@pytest.fixture(scope="module")
def torch_table(tiny_encoder_dir, tiny_heads_dir) -> pd.DataFrame:
    net = EmoNetFace.from_pretrained(
        encoder=tiny_encoder_dir, heads=tiny_heads_dir, device="cpu", dtype="float32", backend="torch"
    )
    assert isinstance(net.encoder, ImageEncoder)
    return _table(net)


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_backend_fp32_matches_torch(backend, tiny_encoder_dir, tiny_heads_dir, cache, torch_table):
    net = EmoNetFace.from_pretrained(
        encoder=tiny_encoder_dir,
        heads=tiny_heads_dir,
        device="cpu",
        dtype="float32",
        backend=backend,
        compiled_dir=cache,
    )
    assert isinstance(net.encoder, CompiledEncoder) and net.encoder.backend == backend
    table = _table(net)
    np.testing.assert_allclose(_centred(table), _centred(torch_table), atol=FP32_TOL, rtol=0)
    assert list(table["top1"]) == list(torch_table["top1"])
    description = net.describe()["encoder"]
    assert (description["backend"], description["precision"], description["device"]) == (backend, "float32", "cpu")


def test_openvino_float32_forces_the_precision_hint(tiny_encoder_dir, cache):
    """OpenVINO picks bf16 by itself on bf16 CPUs: an explicit float32 must pin f32."""
    import openvino as ov

    encoder = load_encoder(tiny_encoder_dir, backend="openvino", device="cpu", dtype="float32", compiled_dir=cache)
    hint = encoder.runtime._compiled.get_property("INFERENCE_PRECISION_HINT")
    assert hint == ov.Type.f32


def test_openvino_splits_a_batch_over_streams_in_row_order(tiny_encoder_dir, cache, monkeypatch):
    """$EMONET_FACE_OPENVINO_HINT=THROUGHPUT: a batch runs as one request per stream; the rows come
    back in order and equal single-image runs and the default LATENCY hint's one-request run."""
    encoder = load_encoder(tiny_encoder_dir, backend="openvino", device="cpu", dtype="float32", compiled_dir=cache)
    path = encoder.cache_entry / "encoder.xml"
    monkeypatch.setenv(backends.OV_HINT_ENV, "throughput")
    runtime = backends.GraphRuntime(path, "openvino", "float32", threads=2)
    assert runtime.streams >= 2
    pixels = np.random.default_rng(0).uniform(-1, 1, (5, 3, 32, 32)).astype(np.float32)
    batch = runtime.run(pixels)["embedding"]
    single = np.concatenate([runtime.run(pixels[i : i + 1])["embedding"] for i in range(len(pixels))])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    monkeypatch.delenv(backends.OV_HINT_ENV)
    latency = backends.GraphRuntime(path, "openvino", "float32", threads=2)
    assert latency.streams == 1
    np.testing.assert_allclose(latency.run(pixels)["embedding"], batch, atol=1e-5)
    monkeypatch.setenv(backends.OV_HINT_ENV, "fastest")
    with pytest.raises(InputError, match="THROUGHPUT or LATENCY"):
        backends.GraphRuntime(path, "openvino", "float32")


def test_openvino_blob_cache_keeps_precisions_apart(tiny_encoder_dir, cache):
    """A float32 compile and a later bfloat16 compile of one graph, sharing the compiled-blob cache in
    one process, each give finite features near float32 (OpenVINO 2026.4 returned NaN for the second)."""
    encoder = load_encoder(tiny_encoder_dir, backend="openvino", device="cpu", dtype="float32", compiled_dir=cache)
    path, blobs = encoder.cache_entry / "encoder.xml", encoder.cache_entry / "ov-blobs"
    pixels = np.random.default_rng(1).uniform(-1, 1, (3, 3, 32, 32)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without it: float32 or emulated, warned about
        runs = {
            p: backends.GraphRuntime(path, "openvino", p, blob_cache=blobs).run(pixels)["embedding"]
            for p in ("float32", "bfloat16")
        }
    assert np.isfinite(runs["bfloat16"]).all()
    np.testing.assert_allclose(runs["bfloat16"], runs["float32"], atol=0.05)


def _openvino_capabilities() -> list[str]:
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _load_bf16(backend: str, encoder_dir, heads_dir, cache) -> tuple[EmoNetFace, list[str]]:
    """``--dtype bfloat16`` on ``backend``, with the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = EmoNetFace.from_pretrained(
            encoder=encoder_dir, heads=heads_dir, device="cpu", dtype="bfloat16", backend=backend, compiled_dir=cache
        )
    return net, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_bf16_within_documented_bound(tiny_encoder_dir, tiny_heads_dir, cache, torch_table):
    """``--dtype bfloat16`` gives what each CPU computes, and says so. PyTorch computes bf16 on every
    CPU (emulated, with a warning, without AVX512_BF16/AMX): within the bf16 bound. OpenVINO computes
    bf16 where its capabilities list ``BF16`` (within the bound, no warning); on an AVX2-only CPU it
    has no bf16 and runs float32: a warning says so, the outputs say float32 and the scores are
    float32's; on an AVX-512 CPU without AVX512_BF16 it emulates bf16 (a warning says so)."""
    torch_net, said = _load_bf16("torch", tiny_encoder_dir, tiny_heads_dir, cache)
    assert torch_net.encoder.describe()["precision"] == "bfloat16"
    assert any("PyTorch emulates" in m for m in said) == (not device.cpu_has_bf16()), said
    drift = np.abs(_centred(_table(torch_net)) - _centred(torch_table)).max()
    assert drift < BF16_TOL, ("torch", drift)

    capabilities = _openvino_capabilities()
    net, said = _load_bf16("openvino", tiny_encoder_dir, tiny_heads_dir, cache)
    runs = net.encoder.describe()["precision"]
    assert net.describe()["encoder"]["precision"] == runs  # what the outputs' metadata records
    centred = _centred(_table(net))
    openvino_said = [m for m in said if "OpenVINO" in m]
    if "BF16" in capabilities:  # native bf16 (AVX512_BF16, AMX, AVX2-VNNI-2)
        assert runs == "bfloat16" and openvino_said == [], (runs, said)
        assert np.abs(centred - _centred(torch_table)).max() < BF16_TOL
    elif runs == "float32":  # no bf16 kernels at all (AVX2 only): the hint is dropped
        assert any("runs float32 instead" in m for m in openvino_said), said
        np.testing.assert_allclose(centred, _centred(torch_table), atol=FP32_TOL, rtol=0)
    else:  # AVX-512 without AVX512_BF16: emulated
        assert runs == "bfloat16" and any("OpenVINO emulates" in m for m in openvino_said), (runs, said)
        assert np.abs(centred - _centred(torch_table)).max() < BF16_TOL


def test_openvino_precision_warnings_say_what_runs():
    """The warning for each answer OpenVINO can give to a bf16 hint (whatever this CPU is)."""
    avx2 = ["FP32", "INT8", "BIN", "EXPORT_IMPORT"]  # an AMD EPYC with AVX2 only, OpenVINO 2026.4
    with pytest.warns(UserWarning, match="no bfloat16 on this CPU .*runs float32 instead"):
        backends._say_openvino_precision("bfloat16", "float32", avx2)
    with pytest.warns(UserWarning, match="OpenVINO emulates it"):
        backends._say_openvino_precision("bfloat16", "bfloat16", ["WINOGRAD", *avx2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backends._say_openvino_precision("bfloat16", "bfloat16", ["BF16", "WINOGRAD", *avx2])


def test_second_load_reuses_the_cache_without_converting(tiny_encoder_dir, cache, monkeypatch):
    first = load_encoder(tiny_encoder_dir, backend="openvino", device="cpu", dtype="float32", compiled_dir=cache)
    assert (first.cache_entry / "key.json").is_file()

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again despite a cache entry")

    monkeypatch.setattr(backends, "convert_openvino", no_conversion)
    monkeypatch.setattr(
        backends.EncoderCheckpoint, "load_vision_model", lambda *a, **k: pytest.fail("torch weights loaded on a hit")
    )
    second = load_encoder(tiny_encoder_dir, backend="openvino", device="cpu", dtype="float32", compiled_dir=cache)
    assert second.cache_hit and second.cache_entry == first.cache_entry
    pixels = first.preprocess(_images(2))["pixel_values"]
    torch.testing.assert_close(first(pixels), second(pixels))
    # a different precision is a runtime choice: the same converted entry serves it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without it: float32 or emulated, warned about
        assert load_encoder(tiny_encoder_dir, backend="openvino", dtype="bfloat16", compiled_dir=cache).cache_hit


def test_killed_conversion_leaves_no_cache_entry(tiny_encoder_dir, tmp_path, monkeypatch):
    def killed(module, example, path, **kwargs):
        path.write_text("half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(backends, "convert_openvino", killed)
    with pytest.raises(KeyboardInterrupt):
        load_encoder(tiny_encoder_dir, backend="openvino", device="cpu", dtype="float32", compiled_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []

    class Rebuilt(Exception):
        pass

    def rebuilt(*args, **kwargs):
        raise Rebuilt

    monkeypatch.setattr(backends, "convert_openvino", rebuilt)  # the next start converts again
    with pytest.raises(Rebuilt):
        load_encoder(tiny_encoder_dir, backend="openvino", device="cpu", dtype="float32", compiled_dir=tmp_path)


def test_auto_choices(monkeypatch):
    monkeypatch.delenv(device.BACKEND_ENV, raising=False)
    monkeypatch.delenv(device.DTYPE_ENV, raising=False)
    assert resolve_backend("auto", CPU) == "openvino"  # a core dependency: the fast path by default
    assert resolve_backend("onnx", CPU) == "onnx"
    with pytest.raises(InputError, match="--backend"):
        resolve_backend("tensorrt", CPU)
    with pytest.raises(InputError, match="runs on the CPU"):
        resolve_backend("openvino", torch.device("cuda"))
    for has_bf16, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(device, "cpu_has_bf16", lambda v=has_bf16: v)
        assert resolve_precision(None, CPU, "openvino") == expected
        assert resolve_precision("auto", CPU, "torch") == expected
        assert resolve_precision(None, CPU, "onnx") == "float32"
        assert resolve_precision("float32", CPU, "openvino") == "float32"
    with pytest.raises(InputError, match="ONNX Runtime"):
        resolve_precision("bfloat16", CPU, "onnx")


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="CPU flags are read from /proc/cpuinfo (Linux)")
def test_cpu_bf16_detection_agrees_with_the_cpu_flags(monkeypatch):
    flags = Path("/proc/cpuinfo").read_text()
    assert device.detect_cpu_bf16() == (" avx512_bf16" in flags or " amx_bf16" in flags)
    monkeypatch.delenv(device.CPU_BF16_ENV, raising=False)
    assert device.cpu_has_bf16() == device.detect_cpu_bf16()


def test_cpu_bf16_switch(monkeypatch):
    """$EMONET_FACE_CPU_BF16: 0 hides bf16 (auto = float32, as on an AVX2-only CPU), 1 claims it,
    empty detects; anything else is refused. An explicit bfloat16 on PyTorch then warns, naming it."""
    monkeypatch.delenv(device.DTYPE_ENV, raising=False)
    for value, has, auto in (("0", False, "float32"), ("1", True, "bfloat16"), (" 1 ", True, "bfloat16")):
        monkeypatch.setenv(device.CPU_BF16_ENV, value)
        assert device.cpu_has_bf16() is has
        assert resolve_precision(None, CPU, "openvino") == auto == resolve_precision("auto", CPU, "torch")
        assert resolve_precision(None, CPU, "onnx") == "float32"
    monkeypatch.setenv(device.CPU_BF16_ENV, "0")
    with pytest.warns(UserWarning, match=r"\(AVX512_BF16/AMX; \$EMONET_FACE_CPU_BF16=0\): PyTorch emulates"):
        assert resolve_precision("bfloat16", CPU, "torch") == "bfloat16"
    monkeypatch.setenv(device.CPU_BF16_ENV, "")
    assert device.cpu_has_bf16() == device.detect_cpu_bf16()
    monkeypatch.setenv(device.CPU_BF16_ENV, "yes")
    with pytest.raises(InputError, match="EMONET_FACE_CPU_BF16=yes: use 0"):
        device.cpu_has_bf16()


@pytest.fixture(scope="module")
def exported(tiny_encoder_dir, tiny_heads_dir, tmp_path_factory):
    """The ONNX folder through the CLI, the OpenVINO one through the Python API."""

    root = tmp_path_factory.mktemp("exported")
    command = ["export", "--encoder", str(tiny_encoder_dir), "--heads", str(tiny_heads_dir), "--format", "onnx"]
    result = run_cli(*command, "--out", str(root / "onnx"))
    assert result.exit_code == 0, result.output
    return {
        "onnx": root / "onnx",
        "openvino": export_model(root / "openvino", encoder=tiny_encoder_dir, heads=tiny_heads_dir, fmt="openvino"),
    }


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_exported_folder_reproduces_the_table(fmt, exported, torch_table):
    net = EmoNetFace.from_pretrained(str(exported[fmt]), dtype="float32")
    assert isinstance(net.encoder, ExportedGraph) and net.heads is None
    table = _table(net)
    assert list(table.columns) == list(torch_table.columns)
    np.testing.assert_allclose(_centred(table), _centred(torch_table), atol=FP32_TOL, rtol=0)
    probs = [f"prob.{k}" for k in tx.EMOTION_KEYS]
    np.testing.assert_allclose(table[probs].to_numpy(float), torch_table[probs].to_numpy(float), atol=FP32_TOL)


def test_exported_graph_outputs_and_config(exported, tiny_encoder_dir, tiny_heads_dir):
    """The graph's own centred/probs outputs equal the heads' math, and config.json says what a runtime needs."""
    from emonet_face.heads import load_heads, postprocess_scores

    config = json.loads((exported["onnx"] / "config.json").read_text())
    heads = load_heads(tiny_heads_dir)
    assert config["head_keys"] == list(heads.keys) == list(tx.HEAD_KEYS)
    assert config["display_names"]["anger"] == tx.emotion("anger").name
    assert config["prob_keys"] == list(tx.EMOTION_KEYS)
    assert config["preprocessing"]["size"] == {"height": 32, "width": 32}
    assert config["preprocessing"]["image_mean"] == [0.5, 0.5, 0.5] and config["preprocessing"]["resample"] == 2
    assert config["sources"]["heads"]["id"] == str(tiny_heads_dir)
    assert "license" in config and "onnx" in config["versions"]

    graph = ExportedGraph(exported["onnx"])
    encoder = ImageEncoder.from_pretrained(tiny_encoder_dir)
    pixels = encoder.preprocess(_images())["pixel_values"]
    out = graph.outputs(pixels)
    assert out["embedding"].shape == (3, 32) and out["probs"].shape == (3, 40)
    with torch.no_grad():
        embedding = encoder(pixels)
        raw = heads(embedding)
    centred, probs = postprocess_scores(raw, heads.neutral_mean.numpy(), heads.emotion_index)
    np.testing.assert_allclose(out["embedding"].numpy(), embedding.numpy(), atol=FP32_TOL)
    np.testing.assert_allclose(out["centred"].numpy(), centred, atol=FP32_TOL)
    np.testing.assert_allclose(out["probs"].numpy(), probs, atol=FP32_TOL)
    # dynamic batch: one graph for every batch size
    assert graph.outputs(pixels[:1])["raw"].shape == (1, 44)


def test_export_refuses_a_used_folder_and_bad_options(tiny_encoder_dir, tiny_heads_dir, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        export_model(tmp_path / "used", encoder=tiny_encoder_dir, heads=tiny_heads_dir)
    with pytest.raises(InputError, match="openvino"):
        export_model(tmp_path / "new", encoder=tiny_encoder_dir, heads=tiny_heads_dir, dtype="bfloat16")
    with pytest.raises(ModelLoadError, match="not an emonet-face export"):
        ExportedGraph(tmp_path)


def test_cli_predict_records_backend_and_runs_exports(tiny_encoder_dir, tiny_heads_dir, exported, tmp_path, cache):
    from emonet_face.outputs import read_metadata

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, image in enumerate(_images()):
        image.save(folder / f"{i}.png")
    common = [str(folder), "--faces", "none", "--num-workers", "0", "--quiet"]
    out_torch, out_ov, out_graph = tmp_path / "torch.parquet", tmp_path / "ov.parquet", tmp_path / "graph.parquet"
    env = {"EMONET_FACE_CACHE": str(cache)}
    source = ["--encoder", str(tiny_encoder_dir), "--heads", str(tiny_heads_dir)]
    result = run_cli("predict", *common, *source, "--backend", "torch", "--out", str(out_torch), env=env)
    assert result.exit_code == 0, result.output
    result = run_cli(
        "predict", *common, *source, "--backend", "openvino", "--dtype", "float32", "--out", str(out_ov), env=env
    )
    assert result.exit_code == 0, result.output
    result = run_cli("predict", *common, "--model", str(exported["onnx"]), "--out", str(out_graph))
    assert result.exit_code == 0, result.output
    meta = read_metadata(out_ov)["encoder"]
    assert (meta["backend"], meta["precision"], meta["device"]) == ("openvino", "float32", "cpu")
    assert read_metadata(out_torch)["encoder"]["backend"] == "torch"
    assert read_metadata(out_graph)["encoder"]["exported"] == str(exported["onnx"])
    tables = [pd.read_parquet(p).sort_values("path") for p in (out_torch, out_ov, out_graph)]
    for table in tables[1:]:
        np.testing.assert_allclose(_centred(table), _centred(tables[0]), atol=FP32_TOL, rtol=0)


def test_serve_runs_an_exported_folder_with_the_rows_of_predict(exported, tmp_path):
    """``serve --model DIR`` takes an exported folder as ``predict --model DIR`` does: same rows."""
    pytest.importorskip("fastapi", reason="serve needs the [serve] extra")
    import httpx

    from emonet_face.outputs import read_table
    from emonet_face.serve import ServeConfig, create_app
    from serve_helpers import running_server

    paths = []
    for i, image in enumerate(_images()):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    out = tmp_path / "graph.csv"
    command = ["predict", *map(str, paths), "--model", str(exported["onnx"]), "--faces", "none", "--out", str(out)]
    result = run_cli(*command, "--num-workers", "0", "--quiet")
    assert result.exit_code == 0, result.output
    expected = read_table(out)
    with running_server(create_app(ServeConfig(model=str(exported["onnx"]), faces="none", workers=1))) as url:
        assert httpx.get(f"{url}/v1/info").json()["backend"] == "onnx"
        files = [("file", (p.name, p.read_bytes())) for p in paths]
        response = httpx.post(f"{url}/v1/predict", files=files, timeout=120)
    assert response.status_code == 200, response.text
    rows = pd.DataFrame(response.json()["rows"])
    assert list(rows.columns) == list(expected.columns)
    assert rows["path"].tolist() == [p.name for p in paths]
    np.testing.assert_allclose(_centred(rows), _centred(expected), atol=1e-6, rtol=0)


def test_exported_folder_has_normal_permissions(exported):
    """Export folders were created drwx------ (mkdtemp); they honour the umask like any new folder."""
    umask = os.umask(0)
    os.umask(umask)
    for folder in exported.values():
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask, folder


def test_export_without_onnx_installed_is_one_line_naming_the_extra(
    tiny_encoder_dir, tiny_heads_dir, tmp_path, monkeypatch
):
    """The default --format onnx without the onnx package ended in OnnxExporterError's traceback."""

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx fails, find_spec says absent
    command = [
        "export",
        "--encoder",
        str(tiny_encoder_dir),
        "--heads",
        str(tiny_heads_dir),
        "--out",
        str(tmp_path / "x"),
    ]
    result = run_cli(*command)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "pip install 'emonet-face[onnx]'" in result.output
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())


def test_cli_export_and_help(exported, tmp_path):

    assert (exported["onnx"] / "model.onnx").is_file() and (exported["onnx"] / "preprocessor_config.json").is_file()
    result = run_cli("export", "--format", "tflite", "--out", str(tmp_path / "z"))
    assert result.exit_code == 2 and "--format tflite" in result.output
    help_text = run_cli("predict", "--help", env={"COLUMNS": "200"}).output
    assert "--backend" in help_text and "OpenVINO" in help_text and "precision" in help_text


def test_embed_store_manifest_names_backend(tiny_encoder_dir, tmp_path, cache):
    from emonet_face.data.store import read_manifest

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, image in enumerate(_images()):
        image.save(folder / f"{i}.png")
    store = tmp_path / "store"
    result = run_cli(
        "embed",
        str(folder),
        "--out",
        str(store),
        "--encoder",
        str(tiny_encoder_dir),
        "--backend",
        "onnx",
        "--num-workers",
        "0",
        "--no-progress",
        env={"EMONET_FACE_CACHE": str(cache)},
    )
    assert result.exit_code == 0, result.output
    encoder = read_manifest(store)["encoder"]
    assert (encoder["backend"], encoder["precision"], encoder["device"]) == ("onnx", "float32", "cpu")


def test_compiled_models_leave_the_signal_stack_valid():
    """OpenVINO swaps the thread's alternate signal stack while compiling and swaps it back when a
    compiled model dies; destroyed first-made-first, that left a freed stack behind and the next
    Python signal handler (a DataLoader's SIGCHLD) crashed the process. _Runtime keeps it valid."""
    import ctypes
    import gc

    import openvino as ov

    from emonet_face.runtime.backends import _keep_signal_stack, _stack_t

    libc = ctypes.CDLL(None)

    def current() -> tuple[int, int, int]:
        stack = _stack_t()
        assert libc.sigaltstack(None, ctypes.byref(stack)) == 0
        return stack.ss_sp or 0, stack.ss_flags, stack.ss_size

    before = current()
    graph = ov.convert_model(torch.nn.Linear(4, 4), example_input=torch.zeros(1, 4))
    compiled = []
    for _ in range(2):
        with _keep_signal_stack():
            compiled.append(ov.Core().compile_model(graph, "CPU"))
        assert current() == before
    while compiled:  # first made, first destroyed
        del compiled[0]
        gc.collect()
        assert current() == before


# --- int8 (tests/test_precision.py: check-precision and its records) ---------------------------------
INT8_TOL = 0.01
"""Loose bound for the int8 path on the tiny random model (int8 weights per channel,
7-bit range, activations quantised per batch): centred scores within 0.01 of torch float32 (measured
1.1e-3; the scores' own spread across images is 2.4e-2, so a broken graph cannot pass). It only
proves the plumbing: random weights cannot judge int8 accuracy on real faces."""


def _quantised_ops(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


def test_int8_is_quantised_and_near_float32(tiny_encoder_dir, tiny_heads_dir, cache, torch_table):
    """--dtype int8 with backend auto runs ONNX Runtime on a really quantised graph, warns that it is not
    checked yet, and stays near fp32."""
    with pytest.warns(UserWarning, match="has not been checked on this CPU"):
        net = EmoNetFace.from_pretrained(
            encoder=tiny_encoder_dir, heads=tiny_heads_dir, device="cpu", dtype="int8", compiled_dir=cache
        )
    encoder = net.encoder
    assert isinstance(encoder, CompiledEncoder) and (encoder.backend, encoder.precision) == ("onnx", "int8")
    key = json.loads((encoder.cache_entry / "key.json").read_text())
    assert key["stored_precision"] == "int8" and key["quantisation"]["float32_nodes"]
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= _quantised_ops(encoder.cache_entry / "encoder.onnx")
    float32 = load_encoder(tiny_encoder_dir, backend="onnx", dtype="float32", compiled_dir=cache)
    assert float32.cache_entry != encoder.cache_entry and "MatMulInteger" not in _quantised_ops(
        float32.cache_entry / "encoder.onnx"
    )
    drift = np.abs(_centred(_table(net)) - _centred(torch_table)).max()
    assert 0 < drift < INT8_TOL, drift
    assert net.describe()["encoder"]["precision"] == "int8"


def test_int8_refuses_other_backends_and_a_missing_runtime(tiny_encoder_dir, cache, monkeypatch):
    for backend in ("torch", "openvino"):
        with pytest.raises(InputError, match="int8 runs on ONNX Runtime on the CPU"):
            resolve_precision("int8", CPU, backend)
    with pytest.raises(InputError, match="int8 runs on ONNX Runtime on the CPU"):
        load_encoder(tiny_encoder_dir, backend="openvino", dtype="int8", compiled_dir=cache)
    # onnxruntime absent: a one-line error naming the extra, before any conversion
    monkeypatch.setattr(device, "installed", lambda module: module != "onnxruntime")
    with pytest.raises(ModelLoadError, match=r"emonet-face\[onnx\]"):
        load_encoder(tiny_encoder_dir, dtype="int8", compiled_dir=cache)
    # onnxruntime's quantisation tools (they need the onnx package) absent
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime.quantization", None)
    with pytest.raises(ModelLoadError, match=r"--dtype int8 needs onnxruntime: pip install 'emonet-face\[onnx\]'"):
        backends.quantize_int8(Path("in.onnx"), Path("out.onnx"))


def test_int8_export_runs_with_a_warning_near_float32(tiny_encoder_dir, tiny_heads_dir, tmp_path, torch_table):
    with pytest.raises(InputError, match="--format onnx"):
        export_model(tmp_path / "ov", encoder=tiny_encoder_dir, heads=tiny_heads_dir, fmt="openvino", dtype="int8")
    folder = export_model(tmp_path / "int8", encoder=tiny_encoder_dir, heads=tiny_heads_dir, dtype="int8")
    config = json.loads((folder / "config.json").read_text())
    assert config["graph"]["precision"] == "int8" and config["graph"]["quantisation"]["method"].startswith("onnxruntime")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.onnx", "preprocessor_config.json"]
    assert "MatMulInteger" in _quantised_ops(folder / "model.onnx")
    with pytest.raises(InputError, match="int8"):
        ExportedGraph(folder, dtype="float32")
    for backend in ("onnx", "openvino"):  # a float32 folder is not quantised on the fly
        with pytest.raises(InputError, match="--format onnx --dtype int8"):
            exported_module._exported_precision("int8", backend)
    with pytest.warns(UserWarning, match="check-precision cannot compare"):
        net = EmoNetFace.from_pretrained(str(folder))
    assert net.encoder.describe()["precision"] == "int8" and net.encoder.backend == "onnx"
    drift = np.abs(_centred(_table(net)) - _centred(torch_table)).max()
    assert 0 < drift < INT8_TOL, drift
