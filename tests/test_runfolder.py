"""The run-folder helper (emonet_face.runfolder): atomic writes, versioned manifests, the resume
check and provenance, shared by the Ray engine, the embedding store, bundles, VLM annotation and
predict's score tables."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path

import pytest

from emonet_face._version import __version__
from emonet_face.errors import InputError, ModelLoadError
from emonet_face.runfolder import (
    ManifestFormat,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    check_out_folder,
    provenance,
    remove_temporaries,
    require_new_folder,
    staged_folder,
    utc_timestamp,
    versions,
)

FORMAT = ManifestFormat(
    "test-run",
    2,
    "manifest.json",
    "a test run folder",
    "test run",
    hint="create one with the test",
    redo="write it again",
)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# --- atomic writes ------------------------------------------------------------------------------------
def test_a_failed_serialisation_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    atomic_write_json(target, {"count": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"count": 2, "bad": _Unserialisable()})
    assert json.loads(target.read_text()) == {"count": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


class _Unserialisable:
    def __str__(self) -> str:  # json's default=str calls this: make it fail as a broken value would
        raise TypeError("cannot serialise")


def test_a_writer_failing_mid_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "part-00000.parquet"

    def half_written(path: Path) -> None:
        path.write_bytes(b"PAR1 half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), atomic_path(target) as tmp:
        half_written(tmp)
    assert not list(tmp_path.iterdir())  # neither the target nor the temporary

    atomic_write_text(target, "old")
    with pytest.raises(OSError), atomic_path(target) as tmp:
        half_written(tmp)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_atomic_path_writes_beside_the_target_then_renames(tmp_path):
    target = tmp_path / "scores.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        tmp.write_text("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n" and not tmp.exists()


def test_remove_temporaries_clears_what_a_kill_left(tmp_path):
    (tmp_path / ".part-00001.parquet.tmp").write_bytes(b"x")
    (tmp_path / "part-00002.parquet.tmp").write_bytes(b"x")
    (tmp_path / "part-00000.parquet").write_bytes(b"kept")
    remove_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["part-00000.parquet"]


def test_staged_folder_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError), staged_folder(out) as tmp:
        (tmp / "a.txt").write_text("a")
        raise RuntimeError("interrupted")
    assert not list(tmp_path.iterdir())
    with staged_folder(out) as tmp:
        (tmp / "a.txt").write_text("a")
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"] and (out / "a.txt").read_text() == "a"


# --- manifests ----------------------------------------------------------------------------------------
def test_a_manifest_round_trips_with_its_format_and_version_first(tmp_path):
    FORMAT.write(tmp_path, {"count": 3, "name": "é"})
    text = (tmp_path / "manifest.json").read_text(encoding="utf-8")
    assert list(json.loads(text)) == ["format", "version", "count", "name"] and "é" in text
    assert FORMAT.read(tmp_path) == {"format": "test-run", "version": 2, "count": 3, "name": "é"}
    assert FORMAT.is_in(tmp_path) and not FORMAT.is_in(tmp_path / "elsewhere")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"^{path}: unreadable manifest \(.+\); write it again$"),
        ('{"format": "emonet-face-bundle", "version": 1}', r"^{path}: not the manifest of a test run folder \(format 'emonet-face-bundle', expected 'test-run'\); write it again$"),
        ("[1, 2]", r"^{path}: not the manifest of a test run folder \(format None, expected 'test-run'\); write it again$"),
        ('{"format": "test-run", "version": "2"}', r"^{path}: test run version '2' is not a positive integer; write it again$"),
    ],
)
def test_a_foreign_or_corrupt_manifest_is_refused_in_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "manifest.json"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        FORMAT.read(tmp_path)
    assert re.match(message.format(path=re.escape(str(path))), one_line(info))
    assert FORMAT.is_in(tmp_path) == ('"test-run"' in content)


def test_a_newer_version_is_refused_and_a_missing_manifest_explained(tmp_path):
    with pytest.raises(InputError) as info:
        FORMAT.read(tmp_path)
    assert one_line(info) == f"{tmp_path}: not a test run folder (no manifest.json); create one with the test"
    with pytest.raises(InputError, match=r"cannot resume into it$"):
        FORMAT.read(tmp_path, hint="cannot resume into it")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "test-run", "version": 3, "versions": {"emonet-face": "9.0"}}))
    with pytest.raises(InputError) as info:
        FORMAT.read(tmp_path)
    assert one_line(info) == (
        f"{tmp_path}: written by a newer emonet-face (9.0, test run format 3); this emonet-face ({__version__}) reads "
        "test run format 2: upgrade emonet-face, or write the test run again with this version"
    )


def test_a_format_raises_its_own_error_class_and_version_key(tmp_path):
    bundle_like = ManifestFormat("b", 1, "b.json", "a b", "b", "h", "r", version_key="format_version", error=ModelLoadError)
    bundle_like.write(tmp_path, {"x": 1})
    assert json.loads((tmp_path / "b.json").read_text()) == {"format": "b", "format_version": 1, "x": 1}
    (tmp_path / "b.json").write_text("")
    with pytest.raises(ModelLoadError, match=r"b\.json: unreadable manifest"):
        bundle_like.read(tmp_path)


# --- the resume check ---------------------------------------------------------------------------------
def test_a_non_empty_output_folder_needs_resume(tmp_path):
    out = tmp_path / "run"
    assert check_out_folder(out, resume=False) is False  # new
    out.mkdir()
    assert check_out_folder(out, resume=True) is False  # empty: nothing to continue
    (out / "part-00000.parquet").write_bytes(b"x")
    with pytest.raises(InputError) as info:
        check_out_folder(out, resume=False)
    assert one_line(info) == f"{out}: output folder is not empty; pass --resume to continue it or choose another --out"
    assert check_out_folder(out, resume=True) is True
    with pytest.raises(InputError, match="is a file, not an output folder"):
        check_out_folder(out / "part-00000.parquet", resume=True)


def test_a_folder_that_cannot_be_continued_must_be_new(tmp_path):
    assert require_new_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert require_new_folder(tmp_path / "empty") == tmp_path / "empty"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError) as info:
        require_new_folder(tmp_path / "file")
    assert one_line(info) == f"{tmp_path / 'file'}: already exists and is not empty; choose a new --out folder"


def test_the_not_empty_message_is_written_once_in_the_package():
    src = Path(__file__).resolve().parents[1] / "src" / "emonet_face"
    hits = [p.name for p in src.rglob("*.py") if "output folder is not empty" in p.read_text(encoding="utf-8")]
    assert hits == ["runfolder.py"]


# --- provenance ---------------------------------------------------------------------------------------
def test_provenance_names_python_the_libraries_the_host_and_the_time():
    import torch

    found = versions("pyarrow", "surely-not-installed-package")
    assert found["python"] == platform.python_version() and found["emonet-face"]
    assert found["torch"] == torch.__version__.split("+")[0] or found["torch"] == torch.__version__
    assert "transformers" in found and found["pyarrow"] and "surely-not-installed-package" not in found
    assert versions("surely-not-installed-package", core=False, missing=True) == {
        "python": platform.python_version(),
        "surely-not-installed-package": None,
    }
    record = provenance("pyarrow")
    assert record["host"] == platform.node() and record["versions"]["pyarrow"] == found["pyarrow"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["time"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc_timestamp(zulu=True))
