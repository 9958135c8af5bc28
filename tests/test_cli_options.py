"""Every command's options, walked from the typer app (the tree ``emonet-face --help`` shows).

* An option spelled the same in two commands means the same thing: the same help, type, spelling
  (short and ``--no-`` forms), range and default.
* A command that loads a model takes every model option, a command that finds faces every face
  option (the shared declarations of ``emonet_face.cli.options``).
* A bad value gives the same one-line error (exit 2) from every command that takes the option: the
  error of the dataclass it fills (``emonet_face.options``); no command advertises a range (``x>=0``)
  that its check then refuses.

Differences that are meant are listed in ``ALLOWED`` with the reason, and model options a command
does without in ``NOT_TAKEN``. Every entry of both lists is checked to still describe a real
difference, so one that is fixed must leave its list: the lists can only shrink silently, never grow.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from emonet_face.cli.main import app
from emonet_face.errors import InputError
from emonet_face.options import FaceOptions, MediaOptions, ModelOptions
from helpers_cli import run_cli

MODEL_OPTIONS = (
    "--model", "--encoder", "--heads", "--revision", "--cache-dir", "--device", "--backend", "--dtype", "--no-normalize",
    "--force-precision",
)  # fmt: skip
FACE_OPTIONS = ("--faces", "--detector", "--min-face-score", "--align", "--margin")
LOADS_A_MODEL = ("--encoder", "--heads", "--backend", "--no-normalize")
"""Options only a command that loads (part of) a model takes: such a command takes every model option."""
SIGNATURE = ("help", "type", "spelling", "range", "default")
"""What two commands' declarations of one option are compared on; ``values`` (the bad-value test)
and ``missing`` (the model/face option sets) complete the aspects an entry below may name."""

ALLOWED: dict[tuple[str, str], tuple[frozenset[str], str]] = {
    ("--out", "*"): (
        frozenset({"help"}),
        "each command writes something else: a score table file (predict, score), rows as they come (live), a "
        "folder of maps (explain), of pictures (plot), of reports (bench, stats, train), a bundle, a store, a graph",
    ),
    ("--batch-size", "explain"): (
        frozenset({"help", "default"}),
        "crops per forward pass of the explainer (occluded copies, path points), not images per encoder batch",
    ),
    ("--batch-size", "train"): (frozenset({"help", "default"}), "embeddings per optimiser step, not images"),
    ("--by", "bench hq"): (
        frozenset({"help", "default"}),
        "groups the agreement with the experts (only with --meta; then gender,age_group,fairface), where stats "
        "groups a score table's scores (gender by default)",
    ),
    ("--n-perm", "bench hq"): (
        frozenset({"help", "range", "default"}),
        "another test: agreement differing across groups (200 permutations, at least 19), where stats tests the "
        "model's gap against the humans' (2000, at least 99)",
    ),
    ("--name", "bench hq"): (
        frozenset({"help", "type"}),
        "one annotator name per --predictions file (repeatable); vlm annotate names its one annotator",
    ),
    ("--seed", "train"): (
        frozenset({"help", "default"}),
        "seeds training (split, initialisation, shuffling, dropout), not bootstraps and permutation tests",
    ),
    ("--device", "train"): (
        frozenset({"help", "default"}),
        "trains small heads on cached embeddings: cpu unless asked (mps too), not cuda-if-available",
    ),
    ("--revision", "stats"): (frozenset({"help"}), "the Hub dataset's revision: stats loads no model"),
    ("--revision", "embed"): (frozenset({"help"}), "the encoder's revision: embed loads no heads"),
    ("--model", "score"): (
        frozenset({"help"}),
        "heads only: a released model or a bundle; an exported one-graph folder has no separate heads",
    ),
    ("--model", "export"): (
        frozenset({"help"}),
        "the released model (large, small) whose encoder and heads are exported; a bundle or an exported folder "
        "is not a source",
    ),
    ("--model", "vlm annotate"): (
        frozenset({"help", "spelling", "default"}),
        "a VLM's name on an OpenAI-compatible server, not an EmoNet-Face model",
    ),
    ("--model", "vlm cost"): (
        frozenset({"help", "spelling", "default"}),
        "a VLM's name (whose finished images are left out), not an EmoNet-Face model",
    ),
    ("--dtype", "export"): (
        frozenset({"help", "default", "values"}),
        "the precision the graph's weights are written in (float32; float16/bfloat16 for OpenVINO, int8 for "
        "ONNX), not the encoder's compute precision (auto is no choice there)",
    ),
    ("--fps", "live"): (
        frozenset({"help", "default"}),
        "a ceiling on the rate a stream is scored at (default: as fast as the model goes), not the frames taken "
        "per second of a video; the same check (more than 0) and error",
    ),
    ("--api-key-env", "vlm annotate"): (
        frozenset({"help", "default"}),
        "the key sent to a VLM server (OPENAI_API_KEY), where serve's is the key its own clients must send",
    ),
    ("--log", "vlm cost"): (frozenset({"help"}), "reads the log vlm annotate writes, to count what is left"),
    ("--batch-size", "embed"): (
        frozenset({"default"}),
        "whole dataset images (already face crops) into a store: 32 per batch, where predict's crops come 16 at a time",
    ),
    ("--faces", "vlm annotate"): (
        frozenset({"default"}),
        "sends whole images unless asked (none): the EmoNet-Face datasets it is meant for are face crops already",
    ),
}
"""(option, command) → the aspects in which the command's option may differ from the others', and why.
The command ``"*"`` stands for every command."""

NOT_TAKEN: dict[str, tuple[frozenset[str], str]] = {
    "score": (
        frozenset({"--encoder", "--backend", "--dtype", "--no-normalize", "--force-precision"}),
        "scores cached embeddings with the heads only: no encoder is loaded",
    ),
    "export": (
        frozenset({"--device", "--backend", "--no-normalize", "--force-precision"}),
        "writes a graph and runs nothing (no device, no backend, no precision check to obey); the graph normalises "
        "as the released model does",
    ),
    "embed": (
        frozenset({"--model", "--heads"}),
        "embeds with the encoder alone; any heads score the store later (emonet-face score)",
    ),
    "download": (
        frozenset({"--model", "--device", "--backend", "--dtype", "--no-normalize", "--force-precision"}),
        "fetches files into a bundle and runs nothing; the model is its MODEL argument",
    ),
    "check-precision": (
        frozenset({"--force-precision"}),
        "measures the precision and records the verdict; a failing earlier record does not stop a new check",
    ),
}
"""Model options a command that loads part of a model does not take, and why."""


# --- the tree ---------------------------------------------------------------------------------------
def _leaves(command: Any, name: str = "") -> Iterator[tuple[str, Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield name, command
        return
    for sub_name, sub in sorted(subcommands.items()):
        yield from _leaves(sub, f"{name} {sub_name}".strip())


COMMANDS = dict(_leaves(typer.main.get_command(app)))


def _long_name(param: Any) -> str:
    return next(opt for opt in param.opts if opt.startswith("--"))


OPTIONS: dict[str, dict[str, Any]] = {
    name: {_long_name(p): p for p in command.params if p.param_type_name == "option"}
    for name, command in COMMANDS.items()
}
"""command → {long option name → its click parameter}."""
SHARED = sorted({o for options in OPTIONS.values() for o in options if sum(o in v for v in OPTIONS.values()) > 1})


def _range(param: Any) -> tuple[Any, Any]:
    kind = getattr(param, "type", None)  # click's own parameters keep the range on the type
    return (getattr(param, "min", getattr(kind, "min", None)), getattr(param, "max", getattr(kind, "max", None)))


def _signature(param: Any) -> dict[str, Any]:
    descriptor = getattr(param, "type_descriptor", None)  # typer >= 0.20 keeps the annotation here
    kind = descriptor.annotation if descriptor is not None else getattr(param, "type", None)
    return {
        "help": " ".join((param.help or "").split()),
        "type": repr(kind),
        "spelling": (tuple(sorted(param.opts)), tuple(sorted(param.secondary_opts))),
        "range": _range(param),
        "default": param.default,
    }


def _excused(option: str, command: str) -> frozenset[str]:
    """The aspects in which ``command``'s ``option`` may differ (ALLOWED)."""
    aspects: frozenset[str] = frozenset()
    for key in ((option, command), (option, "*")):
        aspects |= ALLOWED.get(key, (frozenset(), ""))[0]
    return aspects


def _differences(option: str, a: str, b: str, aspects: frozenset[str] | None = None) -> list[str]:
    first, second = _signature(OPTIONS[a][option]), _signature(OPTIONS[b][option])
    compared = aspects if aspects is not None else set(SIGNATURE) - _excused(option, a) - _excused(option, b)
    return [
        f"{option}: `{a}` and `{b}` differ in {aspect}: {first[aspect]!r} vs {second[aspect]!r}"
        for aspect in SIGNATURE
        if aspect in compared and first[aspect] != second[aspect]
    ]


def _takers(option: str) -> list[str]:
    return [name for name, options in OPTIONS.items() if option in options]


# --- one option, one meaning --------------------------------------------------------------------------
@pytest.mark.parametrize("option", SHARED)
def test_an_option_means_the_same_in_every_command(option):
    problems = [d for a, b in itertools.combinations(_takers(option), 2) for d in _differences(option, a, b)]
    assert not problems, "\n".join(problems)


def test_every_command_that_loads_a_model_or_finds_faces_takes_every_such_option():
    problems = []
    for name, options in OPTIONS.items():
        groups = []
        if any(o in options for o in LOADS_A_MODEL):
            groups.append(("model", MODEL_OPTIONS, NOT_TAKEN.get(name, (frozenset(), ""))[0]))
        if any(o in options for o in FACE_OPTIONS):
            groups.append(("face", FACE_OPTIONS, frozenset()))
        for kind, wanted, not_taken in groups:
            missing = [o for o in wanted if o not in options and o not in not_taken]
            missing = [o for o in missing if "missing" not in _excused(o, name)]
            problems += [f"`{name}` {'loads a model' if kind == 'model' else 'finds faces'} but lacks {o}" for o in missing]
    assert not problems, "\n".join(problems)


def test_every_listed_difference_is_still_there():
    """A difference that went away leaves ALLOWED, an option a command now takes leaves NOT_TAKEN: the
    lists say exactly what is different, and why."""
    stale = []
    for table_name, table in (("ALLOWED", ALLOWED),):
        for (option, command), (aspects, _reason) in table.items():
            commands = _takers(option) if command == "*" else [command]
            if aspects == {"missing"}:
                if option in OPTIONS[command]:
                    stale.append(f"{table_name}[{option}, {command}]: `{command}` takes {option} now")
                continue
            if not all(option in OPTIONS.get(c, {}) for c in commands):
                stale.append(f"{table_name}[{option}, {command}]: `{command}` has no {option}")
                continue
            signature_aspects = aspects & set(SIGNATURE)
            if signature_aspects and not any(
                _differences(option, c, other, signature_aspects) for c in commands for other in _takers(option) if other != c
            ):
                stale.append(f"{table_name}[{option}, {command}]: no longer differs in {sorted(signature_aspects)}")
    for command, (options, _reason) in NOT_TAKEN.items():
        stale += [f"NOT_TAKEN[{command}]: `{command}` takes {o} now" for o in options if o in OPTIONS[command]]
    assert not stale, "\n".join(stale)


def test_the_lists_give_reasons():
    for table in (ALLOWED,):
        for key, (aspects, reason) in table.items():
            assert aspects and aspects <= {*SIGNATURE, "values", "missing"} and len(reason) > 20, key
    assert all(len(reason) > 20 for _, reason in NOT_TAKEN.values())


# --- one bad value, one error -------------------------------------------------------------------------
BAD_VALUES = [
    ("--fps", "0", MediaOptions, {"fps": 0.0}),
    ("--fps", "-1", MediaOptions, {"fps": -1.0}),
    ("--max-frames", "0", MediaOptions, {"max_frames": 0}),
    ("--margin", "-1", FaceOptions, {"margin": -1.0}),
    ("--min-face-score", "-0.5", FaceOptions, {"min_face_score": -0.5}),
    ("--faces", "sideways", FaceOptions, {"faces": "sideways"}),
    ("--dtype", "int4", ModelOptions, {"dtype": "int4"}),
    ("--backend", "abacus", ModelOptions, {"backend": "abacus"}),
]


def _required_args(command: Any, tmp_path) -> list[str]:
    """Placeholders for a command's required arguments and options (never reached: the bad value fails first)."""
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        if param.param_type_name == "argument":
            args.append(str(tmp_path / "nothing.png"))
        else:
            args += [_long_name(param), str(tmp_path / param.name)]
    return args


def _advertises(param: Any, value: float) -> bool:
    """Whether the help's range (``[x>=0]``) promises that ``value`` is accepted."""
    low, high = _range(param)
    return (low is not None or high is not None) and (low is None or value >= low) and (high is None or value <= high)


@pytest.mark.parametrize(("option", "value", "options", "fields"), BAD_VALUES, ids=[f"{o} {v}" for o, v, *_ in BAD_VALUES])
def test_a_bad_value_gives_the_same_one_line_error_everywhere(option, value, options, fields, tmp_path):
    with pytest.raises(InputError) as refused:
        options(**fields)
    expected = f"error: {refused.value}"
    commands = [c for c in _takers(option) if "values" not in _excused(option, c)]
    assert len(commands) >= 2, commands
    for name in commands:
        param = OPTIONS[name][option]
        if isinstance(next(iter(fields.values())), float | int):
            assert not _advertises(param, float(value)), f"`{name}` {option}: the help's range accepts {value}"
        args = [*name.split(), *_required_args(COMMANDS[name], tmp_path), option, value]
        result = run_cli(*args)
        assert result.exit_code == 2, (name, result.output)
        assert result.stderr.strip().splitlines() == [expected], (name, result.stderr)
