"""`emonet-face vlm annotate` and `emonet-face vlm cost`: VLM baselines as benchmark annotators."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from emonet_face.cli._common import fail
from emonet_face.cli.options import AlignOpt, DetectorOpt, FacesOpt, MarginOpt, MinFaceScoreOpt, QuietOpt, face_options

app = typer.Typer(
    help="Rate emotions with a VLM as a baseline.\n\n"
    "Rate the 40 emotions with any VLM behind an OpenAI-compatible chat-completions endpoint.",
    no_args_is_help=True,
)


class PromptKind(str, Enum):
    zero_shot = "zero-shot"
    multi_shot = "multi-shot"


ImagesArg = Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.", show_default=False)]
PromptOpt = Annotated[
    PromptKind,
    typer.Option("--prompt", help="zero-shot, or multi-shot (worked examples + at most 5 non-zero emotions)."),
]
PromptFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--prompt-file",
        help="Your own prompt template (may use $emotion_list, $rating_scale, $extra_dimensions, $answer_format, "
        "$examples, $nonzero_rule). --prompt still decides validation and the ZS/MS suffix.",
    ),
]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="Completion token limit per request.")]
RepairOpt = Annotated[
    int, typer.Option("--repair-attempts", min=0, help="Times an invalid answer is sent back with its errors.")
]


def _echo_lines(lines: list[str], *, err: bool = True) -> None:
    for line in lines:
        typer.echo(line, err=err)


BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="OpenAI-compatible API root, e.g. https://api.openai.com/v1 or http://localhost:8000/v1."),
]
AnnotatorNameOpt = Annotated[
    str | None, typer.Option("--name", help='Annotator name (default "<model> ZS" or "<model> MS").')
]
LogOpt = Annotated[Path | None, typer.Option("--log", help="JSONL log (default: <out stem>.log.jsonl beside --out).")]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="Sampling temperature.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.001, help="Seconds to wait for one answer.")]
VlmKeyOpt = Annotated[str, typer.Option("--api-key-env", help="Environment variable holding the API key (never logged).")]
MaxRetriesOpt = Annotated[int, typer.Option("--max-retries", min=0, help="Retries on 429/5xx/timeouts per request.")]
RetryDelayOpt = Annotated[
    float, typer.Option("--retry-base-delay", min=0.0, help="First backoff delay in seconds (doubles, jittered).")
]
JsonModeOpt = Annotated[bool, typer.Option("--json-mode/--no-json-mode", help="Ask for response_format json_object.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Only estimate requests and tokens.")]


@app.command()
def annotate(
    images: ImagesArg,
    model: Annotated[str, typer.Option("--model", help="Model name as the server knows it, e.g. gpt-4o.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV in the HQ layout (image, annotator, human, annotations).")],
    prompt: PromptOpt = PromptKind.zero_shot,
    base_url: BaseUrlOpt = None,
    prompt_file: PromptFileOpt = None,
    name: AnnotatorNameOpt = None,
    log: LogOpt = None,
    faces: FacesOpt = "none",
    detector: DetectorOpt = None,
    min_face_score: MinFaceScoreOpt = None,
    align: AlignOpt = False,
    margin: MarginOpt = 0.4,
    concurrency: ConcurrencyOpt = 4,
    temperature: TemperatureOpt = 0.0,
    max_tokens: MaxTokensOpt = 4096,
    timeout: TimeoutOpt = 120.0,
    api_key_env: VlmKeyOpt = "OPENAI_API_KEY",
    max_retries: MaxRetriesOpt = 5,
    retry_base_delay: RetryDelayOpt = 1.0,
    repair_attempts: RepairOpt = 2,
    json_mode: JsonModeOpt = True,
    dry_run: DryRunOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rate images with a VLM (resumable).

    Annotate images with a VLM; rerun the same command to resume. Faces are cropped as predict crops
    them with --faces detect or auto; the default, none, sends whole images (the EmoNet-Face datasets
    are face crops already)."""
    from emonet_face.errors import EmoNetError
    from emonet_face.vlm.annotate import AnnotateOptions, default_log_path, done_sources, run_annotation
    from emonet_face.vlm.client import RetryPolicy
    from emonet_face.vlm.cost import estimate_cost
    from emonet_face.vlm.prompts import build_prompt

    try:
        face_opts = face_options(faces=faces, detector=detector, min_face_score=min_face_score, align=align, margin=margin)
        built = build_prompt(prompt.value, prompt_file)
        log_path = log or default_log_path(out)
        if dry_run:
            done = done_sources(log_path, model, built)
            estimate = estimate_cost(images, built, max_tokens=max_tokens, repair_attempts=repair_attempts, done_sources=done)
            _echo_lines(estimate.lines(), err=False)
            return
        if not base_url:
            fail("--base-url is required (the OpenAI-compatible API root, e.g. http://localhost:8000/v1)")
        api_key = os.environ.get(api_key_env) or None
        if api_key is None:
            typer.echo(f"note: ${api_key_env} is not set; sending requests without an API key", err=True)
        retry = RetryPolicy(max_retries=max_retries, base_delay=retry_base_delay)
        options = AnnotateOptions(
            model=model, base_url=base_url, prompt=built, out=out, log=log, name=name, faces=face_opts,
            concurrency=concurrency, temperature=temperature, max_tokens=max_tokens, timeout=timeout,
            json_mode=json_mode, repair_attempts=repair_attempts, retry=retry, api_key_env=api_key_env,
            progress=not quiet,
        )
        summary = run_annotation(images, options, api_key)
    except EmoNetError as exc:
        fail(str(exc))
    _echo_lines(summary.lines())
    typer.echo(f"wrote {out} and {log_path}", err=True)
    if summary.stopped:
        fail(summary.stopped)
    if summary.failed:
        raise typer.Exit(code=1)


@app.command()
def cost(
    images: ImagesArg,
    prompt: PromptOpt = PromptKind.zero_shot,
    prompt_file: PromptFileOpt = None,
    model: Annotated[
        str | None, typer.Option("--model", help="With --out: leave out images this model already annotated.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="The annotate --out file, to count only what is left.")
    ] = None,
    log: Annotated[Path | None, typer.Option("--log", help="The annotate --log file (default from --out).")] = None,
    max_tokens: MaxTokensOpt = 4096,
    repair_attempts: RepairOpt = 2,
    price_input: Annotated[
        float | None, typer.Option("--price-input", help="USD per 1M input tokens (with --price-output: a cost).")
    ] = None,
    price_output: Annotated[float | None, typer.Option("--price-output", help="USD per 1M output tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON on stdout.")] = False,
) -> None:
    """Estimate the requests and tokens of a run.

    Estimate requests and tokens of an annotate run before spending money."""
    from emonet_face.errors import EmoNetError
    from emonet_face.vlm.annotate import default_log_path, done_sources
    from emonet_face.vlm.cost import estimate_cost
    from emonet_face.vlm.prompts import build_prompt

    try:
        built = build_prompt(prompt.value, prompt_file)
        done = done_sources(log or (default_log_path(out) if out else None), model, built)
        estimate = estimate_cost(
            images,
            built,
            max_tokens=max_tokens,
            repair_attempts=repair_attempts,
            done_sources=done,
            price_input_per_million=price_input,
            price_output_per_million=price_output,
        )
    except EmoNetError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(estimate.as_dict(), indent=2))
    else:
        _echo_lines(estimate.lines(), err=False)
