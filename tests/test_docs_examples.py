"""The documentation's Python examples run, with the tests' tiny model in place of the released one.

How a page's examples are run: every fenced ``python`` block of the page, in order, in one namespace,
in a temporary working folder. The names ``ENCODER``, ``HEADS``, ``PHOTOS``, ``PHOTO`` and ``VIDEO``
are set to the tiny random model and the test photos and video; where a block assigns one of them
(``ENCODER = "google/..."``, the values a reader uses), that line is replaced by the test's value. A
block whose first line names a file of the repository (``# src/emonet_face/outputs.py``) shows an
edit to that file and is skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import face_video
from emonet_face.outputs import read_table

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = Path(__file__).resolve().parents[1] / "docs"
PLACEHOLDERS = ("ENCODER", "HEADS", "PHOTOS", "PHOTO", "VIDEO")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
FILE_EDIT = re.compile(r"#\s+(src|benchmarks|tests)/\S+")


def python_blocks(page: str) -> list[str]:
    """The page's runnable Python blocks, in order (file edits left out)."""
    blocks = BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))
    return [block for block in blocks if not FILE_EDIT.fullmatch(block.splitlines()[0].strip())]


def with_values(block: str, values: dict[str, str]) -> tuple[str, set[str]]:
    """``block`` with each placeholder assignment replaced by the test's value; the names replaced."""
    replaced = set()
    for name, value in values.items():
        block, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", block, flags=re.M)
        if count:
            replaced.add(name)
    return block, replaced


def run_page(page: str, values: dict[str, str]) -> tuple[dict, set[str]]:
    """Execute the page's blocks in one namespace; returns it and the placeholders the page assigns."""
    namespace: dict = {"__name__": "__docs__", **values}
    assigned: set[str] = set()
    blocks = python_blocks(page)
    assert blocks, f"{page}: no python block found"
    for number, block in enumerate(blocks, 1):
        code, replaced = with_values(block, values)
        assigned |= replaced
        exec(compile(code, f"{page} block {number}", "exec"), namespace)  # the documentation, our own code
    return namespace, assigned


@pytest.fixture
def values(tiny_encoder_dir, tiny_heads_dir, photos, astronaut, tmp_path, monkeypatch) -> dict[str, str]:
    """The placeholders' values, and a temporary working folder for the files the examples write."""
    video = face_video(tmp_path / "clip.mp4", astronaut)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return {
        "ENCODER": str(tiny_encoder_dir),
        "HEADS": str(tiny_heads_dir),
        "PHOTOS": str(photos["group"].parent),
        "PHOTO": str(photos["group"]),
        "VIDEO": str(video),
    }


@pytest.fixture
def registries(monkeypatch):
    """Detectors and backends the examples register are gone after the test."""
    from emonet_face.faces import registry
    from emonet_face.runtime import base

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def test_the_python_guide_runs_a_whole_run(values):
    ns, assigned = run_page("guides/python.md", values)
    assert assigned == set(PLACEHOLDERS), "the guide's example must assign every placeholder the test replaces"
    table, summary, again = ns["table"], ns["summary"], ns["again"]
    assert len(table) >= 4 and table["error"].isna().all()
    assert {"face", "top1", "prob.anger", "raw.anger", "valence"} <= set(table.columns)  # faces by default
    assert "face" not in ns["whole"].columns and len(ns["whole"]) == 4  # faces="none": one row per photo
    assert ns["arrays"]["path"].unique().tolist() == ["<array 0>", "<array 1>"]
    assert ns["clip"]["frame"].notna().all() and len(ns["clip"]) > 1

    written = read_table("scores.parquet")
    assert (summary.rows, summary.errors, summary.skipped) == (len(written), 0, 0)
    assert set(table.columns) <= set(written.columns) and written["track"].notna().any()
    assert Path("tracks.csv").is_file() and any(Path("vis").rglob("*.png"))
    items = written[["path", "frame"]].drop_duplicates()
    assert (again.rows, again.skipped) == (0, len(items))  # resume: nothing new
    assert len(read_table("scores.parquet")) == len(written)

    assert ns["features"].shape == (1, 32)  # the tiny encoder's width
    assert ns["scores"]["path"].tolist() == [values["PHOTO"]]


def test_the_extension_examples_run(values, registries):
    ns, _ = run_page("extending.md", values)
    largest = ns["largest"]
    assert largest["face"].max() == 0 and largest["path"].is_unique  # at most one face per photo
    assert ns["traced"].describe()["encoder"]["backend"] == "torchscript" and len(ns["scores"]) >= 4
    zipped = ns["zipped"]
    assert zipped["key"].notna().all() and len(zipped) >= 4 and zipped["error"].isna().all()
