"""Prompts come from the taxonomy; answers are parsed tolerantly and validated exactly as asked."""

from __future__ import annotations

import json

import pytest

from emonet_face.errors import InputError
from emonet_face.taxonomy import EMOTIONS, EXTRA_DIMENSIONS, resolve_emotion
from emonet_face.vlm.parse import ParseError, extract_json, parse_answer, validate
from emonet_face.vlm.prompts import build_prompt
from vlm_fakes import answer


@pytest.mark.parametrize("kind", ["zero-shot", "multi-shot"])
def test_prompt_lists_every_emotion_descriptor_and_dimension_scale(kind: str) -> None:
    prompt = build_prompt(kind)
    for emotion in EMOTIONS:
        assert f"- {emotion.name}: " in prompt.text
        assert f'"{emotion.name}": {{"rating"' in prompt.text  # the answer skeleton spells every key
        for word in emotion.descriptors:
            assert word in prompt.text
    for dim in EXTRA_DIMENSIONS:
        assert f"- {dim.name} ({dim.low} to {dim.high})" in prompt.text
    for level in range(8):
        assert f"- {level} = " in prompt.text
    assert len(prompt.sha256) == 64


def test_multi_shot_adds_examples_and_top5_rule_zero_shot_imposes_no_count() -> None:
    zs, ms = build_prompt("zero-shot"), build_prompt("multi-shot")
    assert ms.max_nonzero == 5 and zs.max_nonzero is None
    assert "at most 5 emotions may have a non-zero rating" in ms.text
    assert "at most 5" not in zs.text and "Example" not in zs.text
    assert (zs.suffix, ms.suffix) == ("ZS", "MS")
    assert zs.sha256 != ms.sha256
    # The worked examples are themselves valid multi-shot answers.
    examples = ms.text.split("Example ")[1:]
    assert len(examples) == 2
    for example in examples:
        parsed = parse_answer(example, max_nonzero=5)
        assert 1 <= parsed.n_nonzero <= 5


def test_prompt_file_is_a_template_and_changes_the_hash(tmp_path) -> None:
    template = tmp_path / "mine.txt"
    template.write_text('Rate these: $emotion_list\nJSON like {"emotions": {}} please. $unknown stays.\n$answer_format')
    prompt = build_prompt("zero-shot", template)
    assert "- Jealousy & Envy: jealousy, envy, covetousness" in prompt.text
    assert '{"emotions": {}}' in prompt.text and "$unknown stays" in prompt.text
    assert prompt.source == str(template)
    assert prompt.sha256 != build_prompt("zero-shot").sha256
    with pytest.raises(InputError, match=r"missing\.txt"):
        build_prompt("zero-shot", tmp_path / "missing.txt")
    with pytest.raises(InputError, match="--prompt"):
        build_prompt("few-shot")


VALID = answer(3, nonzero=4)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(VALID),
        "```json\n" + json.dumps(VALID, indent=2) + "\n```",
        "Here is my annotation:\n```\n" + json.dumps(VALID) + "\n```\nHope this helps!",
        json.dumps(VALID) + "\n\nNote: ratings are subjective {really}.",
        "Sure! " + json.dumps(VALID),
        repr(VALID),  # single quotes: a Python dict literal
    ],
    ids=["bare", "fence-json", "fence-prose", "trailing-text", "leading-text", "single-quotes"],
)
def test_extract_json_tolerates_fences_trailing_text_and_single_quotes(text: str) -> None:
    assert extract_json(text) == VALID
    parsed = parse_answer(text)
    assert parsed.emotions == {resolve_emotion(name).key: item["rating"] for name, item in VALID["emotions"].items()}


def test_single_quotes_with_apostrophes_in_reasons() -> None:
    data = answer(1)
    data["emotions"][EMOTIONS[0].name]["reason"] = "the person's smile"
    text = repr(data)
    assert '"the person\'s smile"' in text and "'rating'" in text
    assert parse_answer(text).reasons[EMOTIONS[0].name] == "the person's smile"


def test_no_json_at_all_is_a_parse_error() -> None:
    for text in ["", "I cannot help with that.", "{not json at all"]:
        with pytest.raises(ParseError):
            extract_json(text)


def test_reasoning_is_accepted_for_reason_and_hq_keys_resolve() -> None:
    parsed = parse_answer(json.dumps(answer(2, reason_key="reasoning")))
    assert parsed.reasons["Elation"] == "because 0"
    hq = parsed.hq_annotations()
    assert len(hq) == 44
    for key, value in hq.items():
        item = resolve_emotion(key)
        assert key == item.annotation_key
        assert isinstance(value, int)
    assert hq["Extra Dimensions|Valence"] == parsed.extra_dimensions["valence"]


def test_missing_emotions_are_named() -> None:
    broken = answer(0)
    del broken["emotions"]["Awe"], broken["emotions"]["Jealousy & Envy"]
    with pytest.raises(ParseError) as err:
        validate(broken)
    assert 'missing emotions (2): "Awe", "Jealousy & Envy"' in str(err.value)


def test_out_of_range_and_non_integer_ratings_are_rejected() -> None:
    cases = [
        ({"Anger": 8}, "outside 0..7"),
        ({"Anger": -1}, "outside 0..7"),
        ({"Anger": 2.5}, "not an integer"),
        ({"Anger": "high"}, "not an integer"),
        ({"Anger": True}, "not an integer"),
    ]
    for overrides, message in cases:
        with pytest.raises(ParseError, match=message):
            validate(answer(0, overrides=overrides))
    bad_extra = answer(0)
    bad_extra["extra_dimensions"]["Valence"]["rating"] = 5  # valence is -3..3
    with pytest.raises(ParseError, match=r'"Valence": rating 5 is outside -3..3'):
        validate(bad_extra)
    # Integral floats and digit strings are integers.
    lenient = answer(0, overrides={"Anger": 3.0, "Fear": "2"})
    assert validate(lenient).emotions["anger"] == 3 and validate(lenient).emotions["fear"] == 2


def test_top5_rule_only_when_the_prompt_asks_for_it() -> None:
    many = answer(0, nonzero=25)  # what the release's retry loop forced on every zero-shot VLM
    assert validate(many).n_nonzero == 25  # zero-shot: no count imposed
    for nonzero in (0, 1, 7, 40):
        assert validate(answer(0, nonzero=nonzero)).n_nonzero == nonzero
    with pytest.raises(ParseError, match="6 emotions are non-zero but at most 5"):
        validate(answer(0, nonzero=6), max_nonzero=5)
    assert validate(answer(0, nonzero=5), max_nonzero=5).n_nonzero == 5


def test_unknown_and_duplicate_names_are_errors_and_spellings_are_tolerated() -> None:
    renamed = answer(0)
    renamed["emotions"]["jealousy_&_envy"] = renamed["emotions"].pop("Jealousy & Envy")
    renamed["emotions"]["astonishment / surprise"] = renamed["emotions"].pop("Astonishment/Surprise")
    assert validate(renamed).emotions["jealousy_&_envy"] == 0
    extra = answer(0)
    extra["emotions"]["Happiness"] = {"rating": 3, "reason": ""}
    with pytest.raises(ParseError, match='unknown emotions key "Happiness"'):
        validate(extra)
    duplicate = answer(0)
    duplicate["emotions"]["anger"] = {"rating": 1, "reason": ""}
    with pytest.raises(ParseError, match='"Anger" is given twice'):
        validate(duplicate)
