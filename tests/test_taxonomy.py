import json

import pytest

from emonet_face import taxonomy as tx


def test_matches_annotation_guide(release_data):
    guide = json.loads((release_data / "emonet-face_guide.json").read_text())["options"]
    assert list(guide["buttons"]) == list(tx.FAMILIES)
    ours = {e.name: e for e in tx.EMOTIONS}
    assert len(ours) == 40
    for family, names in guide["buttons"].items():
        for name in names:
            assert ours[name].family == family
            assert list(ours[name].descriptors) == guide["labels"][name]


def test_keys_match_released_head_names(release_data):
    first = json.loads((release_data / "emonet-face_eval_ferd.jsonl").read_text().splitlines()[0])
    released = {tx.head_key_from_file_name(k) for k in first["results"]}
    assert released == set(tx.HEAD_KEYS)
    assert len(tx.HEAD_KEYS) == 44
    assert tx.head_file_name("jealousy_&_envy") == "model_jealousy_&_envy_best.pth"


@pytest.mark.parametrize(
    "spelling",
    [
        "jealousy_&_envy",
        "Jealousy & Envy",
        "Negative Low-Energy Emotions|Jealousy & Envy",
        "model_jealousy_&_envy_best",
    ],
)
def test_resolve_emotion_spellings(spelling):
    assert tx.resolve_emotion(spelling).key == "jealousy_&_envy"


def test_extra_dimension_scales():
    scales = {d.key: (d.low, d.high) for d in tx.EXTRA_DIMENSIONS}
    assert scales == {"valence": (-3, 3), "arousal": (0, 7), "dominance": (-3, 3), "emotional_vulnerability": (0, 5)}
    with pytest.raises(KeyError):
        tx.resolve_emotion("Happiness")


def test_binary_csv_names_resolve(release_data):
    import pandas as pd

    names = pd.read_csv(release_data / "emonet-face_binary.csv", usecols=["emotion"])["emotion"].unique()
    keys = {tx.resolve_emotion(n).key for n in names}
    assert keys == set(tx.EMOTION_KEYS)
    assert tx.resolve_emotion("Hopelessness").key == "helplessness"
