"""The tolerant label parser and vote-target derivation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emonet_face.data import parse_label
from emonet_face.taxonomy import HEAD_KEYS
from emonet_face.train.targets import rating_targets, vote_targets


def test_binary_votes_are_counted_per_emotion():
    label = [{"human-1": {"Anger": True, "Contentment": False}, "human-3": {"Anger": False, "Contentment": None}}]
    parse = parse_label(label)
    assert parse.vote_counts() == {"anger": (1, 1), "contentment": (0, 1)}
    assert parse.ratings == {}


def test_hq_ratings_are_averaged_over_raters():
    label = [
        {"human-1": {"Negative High-Energy Emotions|Anger": 6, "Longing & Lust|Sexual Lust": 0}},
        {"human-2": {"Negative High-Energy Emotions|Anger": 3}},
    ]
    assert parse_label(label).mean_ratings() == {"anger": 4.5, "sexual_lust": 0.0}


@pytest.mark.parametrize(
    "label",
    [
        json.dumps({"generated": {"Anger": 5, "Valence": -2, "Arousal": "6"}}),
        {"Anger": 5.0, "valence": -2, "arousal": 6},
        [{"emotion": "Anger", "rating": 5}, {"emotion": "Valence", "rating": -2}, {"emotion": "Arousal", "rating": 6}],
        [("anger", 5), ("valence", -2), ("arousal", 6)],  # an Arrow map column's pylist
    ],
)
def test_big_layouts_are_all_understood(label):
    assert parse_label(label).mean_ratings() == {"anger": 5.0, "valence": -2.0, "arousal": 6.0}


def test_unknown_keys_are_reported_not_guessed():
    parse = parse_label({"model": "gpt", "Angrr": 3, "Fear": 2})
    assert parse.mean_ratings() == {"fear": 2.0}
    assert parse.unknown_keys == {"Angrr"}  # "model" holds text, not a value


def test_vote_targets_follow_the_documented_derivation():
    h = len(HEAD_KEYS)
    yes = np.zeros((3, h), int)
    no = np.zeros((3, h), int)
    anger, fear, valence = HEAD_KEYS.index("anger"), HEAD_KEYS.index("fear"), HEAD_KEYS.index("valence")
    yes[0, anger] = 3  # unanimous yes
    no[0, fear] = 2  # unanimous no (contrastive)
    yes[1, anger], no[1, anger] = 1, 1  # split
    yes[2, valence] = 2  # extra dimensions take no votes
    targets, weights = vote_targets(yes, no, HEAD_KEYS)
    assert targets[0, anger] == 7.0 and weights[0, anger] == 3
    assert targets[0, fear] == 0.0 and weights[0, fear] == 2
    assert targets[1, anger] == 3.5 and weights[1, anger] == 2
    assert weights[2, valence] == 0
    assert (weights > 0).sum() == 3


def test_rating_targets_mask_missing():
    ratings = np.array([[1.0, np.nan]], dtype=np.float32)
    targets, weights = rating_targets(ratings)
    assert targets.tolist() == [[1.0, 0.0]] and weights.tolist() == [[1.0, 0.0]]
