"""The lean core install: a feature whose extra is not installed stops with one line naming the extra
(errors.require_extra), never with a traceback. Each test hides the package as an uninstalled one
would be (``sys.modules[name] = None`` makes its import fail); .ci/smoke_wheel.sh checks the same
with the wheel installed without extras."""

from __future__ import annotations

import asyncio
import sys

import pytest

from emonet_face.errors import EmoNetError, require_extra
from helpers_cli import one_line_error, run_cli


def hide(monkeypatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_the_message_names_the_feature_the_package_and_the_extra(monkeypatch):
    hide(monkeypatch, "dlib")
    with pytest.raises(EmoNetError) as info:
        require_extra("dlib", feature="--detector dlib", extra="dlib")
    assert str(info.value) == "--detector dlib needs dlib: pip install 'emonet-face[dlib]'"


def test_a_missing_module_of_our_own_is_a_bug_not_an_extra():
    with pytest.raises(ImportError):
        require_extra("emonet_face.no_such_module", feature="x", extra="all")


def test_detector_dlib_without_dlib(monkeypatch):
    from emonet_face.faces import DetectorError, get_detector

    hide(monkeypatch, "dlib")
    with pytest.raises(DetectorError) as info:
        get_detector("dlib")
    assert str(info.value) == (
        "--detector dlib needs dlib: pip install 'emonet-face[dlib]'; or choose another --detector"
    )


def test_bench_binary_without_scikit_learn(monkeypatch, tmp_path):
    from emonet_face.bench.binary import analyse_binary

    hide(monkeypatch, "sklearn", "sklearn.metrics")
    with pytest.raises(EmoNetError, match=r"bench binary needs scikit-learn: pip install 'emonet-face\[bench\]'"):
        analyse_binary(tmp_path / "votes.csv")


def test_train_without_scikit_learn_fails_before_reading_a_store(monkeypatch, tmp_path):
    from emonet_face.train import train_heads

    hide(monkeypatch, "sklearn", "sklearn.metrics")
    with pytest.raises(EmoNetError, match=r"train needs scikit-learn: pip install 'emonet-face\[train\]'"):
        train_heads(tmp_path / "run", pretrain=tmp_path / "no-store")


def test_vlm_annotate_without_httpx(monkeypatch):
    from emonet_face.vlm.client import ChatClient

    hide(monkeypatch, "httpx")

    async def open_client() -> None:
        async with ChatClient("http://127.0.0.1:9/v1", "model"):
            pass

    with pytest.raises(EmoNetError, match=r"vlm annotate needs httpx: pip install 'emonet-face\[vlm\]'"):
        asyncio.run(open_client())


def test_serve_without_fastapi(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("emonet_face.serve")]:
        monkeypatch.delitem(sys.modules, name)  # imported again (and failing) as in a fresh process
    hide(monkeypatch, "fastapi")
    line = one_line_error(run_cli("serve", "--encoder", "enc", "--heads", "heads"))
    assert line == "error: emonet-face serve needs fastapi: pip install 'emonet-face[serve]'"


def test_every_extra_a_message_names_is_defined_and_all_pulls_them():
    """A message that names an extra the package does not define would send users to a failing pip."""
    import re
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    root = Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pattern = re.compile(r"emonet-face\[(\w+)\]|extra=\"(\w+)\"")
    named = {name for path in (root / "src").rglob("*.py") for pair in pattern.findall(path.read_text()) for name in pair if name}
    assert named and named <= set(extras), sorted(named - set(extras))
    in_all = set(re.findall(r"\w+", extras["all"][0].split("[", 1)[1]))
    assert named <= in_all and "emonet-face[all]" in extras["test"]
