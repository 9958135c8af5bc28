"""Offline and not cached: the one-line error says which flag takes local files instead."""

from __future__ import annotations

import pytest

from emonet_face.errors import ModelLoadError
from emonet_face.hub import resolve_model_dir


@pytest.mark.parametrize(("what", "flag"), [("heads", "--heads DIR"), ("encoder", "--encoder DIR")])
def test_offline_cache_miss_names_the_flag_for_a_local_folder(tmp_path, what, flag):
    with pytest.raises(ModelLoadError) as caught:
        resolve_model_dir("nobody/not-cached", what=what, cache_dir=tmp_path, local_files_only=True)
    message = str(caught.value)
    assert "not in the local Hugging Face cache" in message and "offline mode" in message
    assert message.endswith(f"or pass a local {what} folder with {flag}") and "\n" not in message
