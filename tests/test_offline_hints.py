"""Offline and not cached: the one-line error says which flag takes local files instead, and a name
that may be a folder as well as a Hub id (the docs' ``models/eif-large``) is said about both readings."""

from __future__ import annotations

import pytest

from emonet_face.errors import ModelLoadError
from emonet_face.hub import DEFAULT_ENCODER, MODELS, resolve_model_dir


@pytest.mark.parametrize(
    ("what", "ref", "flag"), [("heads", MODELS["large"].heads, "--heads DIR"), ("encoder", DEFAULT_ENCODER, "--encoder DIR")]
)
def test_offline_cache_miss_names_the_flag_for_a_local_folder(tmp_path, what, ref, flag):
    """The released models' ids read as Hub ids only: the message is about the cache."""
    with pytest.raises(ModelLoadError) as caught:
        resolve_model_dir(ref, what=what, cache_dir=tmp_path, local_files_only=True)
    message = str(caught.value)
    assert "not in the local Hugging Face cache" in message and "offline mode" in message
    assert message.endswith(f"or pass a local {what} folder with {flag}") and "\n" not in message
    assert "folder not found" not in message


@pytest.mark.parametrize(("what", "source"), [("heads", MODELS["large"].heads), ("encoder", DEFAULT_ENCODER)])
def test_a_missing_folder_that_reads_as_a_hub_id_names_both_readings(tmp_path, monkeypatch, what, source):
    """``--heads models/eif-large`` (the docs' example) with no such folder, offline: "folder not
    found" first, how to make the folder, and what the Hub reading needs; with ``models/`` present,
    which folder lacks it."""
    monkeypatch.chdir(tmp_path)
    for parent_exists in (False, True):
        if parent_exists:
            (tmp_path / "models").mkdir()
        with pytest.raises(ModelLoadError) as caught:
            resolve_model_dir("models/eif-large", what=what, cache_dir=tmp_path / "hf", local_files_only=True)
        message = str(caught.value)
        where = " (models/ has no eif-large)" if parent_exists else ""
        assert message.startswith(f"models/eif-large: {what} folder not found{where}, and the Hub repository is not "
                                  "in the local Hugging Face cache (offline mode is on: HF_HUB_OFFLINE=1); "), message  # fmt: skip
        assert f"for a folder, `hf download {source} --local-dir models/eif-large` makes it" in message
        assert message.endswith("for a Hub id, run once with network access (or `hf download models/eif-large`)")
        assert "\n" not in message
