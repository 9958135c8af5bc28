"""Run a VLM over many images as one more benchmark annotator, resumably.

The JSONL log is the source of truth: every answer (or final failure) is appended and flushed the
moment it arrives, so a killed run loses nothing already answered, and a rerun skips every image
the log already holds for the same model and prompt hash. The CSV in the HQ layout (``image``,
``annotator``, ``human``, ``annotations``) grows as answers arrive and is rewritten from the log
(atomically) when the run ends, so it is whole again even after a crash.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

from emonet_face import faces
from emonet_face.errors import EmoNetError, InputError
from emonet_face.faces.regions import FaceMode
from emonet_face.inputs import IMAGE_SUFFIXES, discover_inputs, load_image
from emonet_face.options import FaceOptions
from emonet_face.runfolder import atomic_path, claim_output, provenance, utc_timestamp
from emonet_face.vlm.client import ChatClient, FatalRequestError, RequestError, RetryPolicy, image_data_url
from emonet_face.vlm.parse import Annotation, ParseError, parse_answer
from emonet_face.vlm.prompts import Prompt

__all__ = [
    "FACE_MODES",
    "HQ_COLUMNS",
    "AnnotateOptions",
    "RunSummary",
    "annotator_name",
    "default_log_path",
    "done_items",
    "done_sources",
    "read_log",
    "run_annotation",
    "write_hq_csv",
]

HQ_COLUMNS = ("image", "annotator", "human", "annotations")
RERUN_HINT = "the answers received so far are kept in the log: rerun the same command to finish"
"""The end of a write error's message (an annotation run resumes when the same command runs again)."""
FACE_MODES = tuple(m.value for m in FaceMode)


def annotator_name(model: str, prompt: Prompt, name: str | None = None) -> str:
    """``--name`` or ``"<model> ZS|MS"``, the convention of the HQ table's VLM rows."""
    return name or f"{model} {prompt.suffix}"


def default_log_path(out: Path) -> Path:
    """``scores.csv`` → ``scores.log.jsonl`` beside it."""
    return out.with_name(out.stem + ".log.jsonl")


@dataclass
class AnnotateOptions:
    model: str
    base_url: str
    prompt: Prompt
    out: Path
    log: Path | None = None
    name: str | None = None
    faces: FaceOptions = field(default_factory=lambda: FaceOptions("none"))
    """Faces cropped as ``predict`` crops them; ``--faces none`` (the default) sends whole images."""
    concurrency: int = 4
    temperature: float | None = 0.0
    max_tokens: int | None = 4096
    timeout: float = 120.0
    json_mode: bool = True
    repair_attempts: int = 2
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    api_key_env: str = "OPENAI_API_KEY"
    progress: bool = False

    @property
    def log_path(self) -> Path:
        return self.log or default_log_path(self.out)

    @property
    def annotator(self) -> str:
        return annotator_name(self.model, self.prompt, self.name)


@dataclass
class RunSummary:
    inputs: int = 0
    skipped: int = 0
    annotated: int = 0
    failed: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    nonzero_counts: dict[int, int] = field(default_factory=dict)
    """Non-zero emotions per annotation → number of annotations, over all of this annotator's rows."""
    stopped: str | None = None
    """Why the run stopped early (a fatal endpoint error), else ``None``."""

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["nonzero_counts"] = {str(k): v for k, v in sorted(self.nonzero_counts.items())}
        return data

    def lines(self) -> list[str]:
        """Human-readable summary for the terminal."""
        out = [
            f"annotated {self.annotated}, failed {self.failed}, skipped {self.skipped} already done "
            f"({self.inputs} input files); {self.requests} HTTP requests, "
            f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens",
        ]
        if self.failed:
            out.append(f"{self.failed} images failed after all retries and repairs: see 'error' in the log")
        if self.nonzero_counts:
            dist = ", ".join(f"{k}: {v}" for k, v in sorted(self.nonzero_counts.items()))
            out.append(f"non-zero emotions per annotation (count: images): {dist}")
            total = sum(self.nonzero_counts.values())
            if len(self.nonzero_counts) == 1 and total >= 10:
                only = next(iter(self.nonzero_counts))
                out.append(
                    f"note: every annotation has exactly {only} non-zero emotions; a fixed count usually comes "
                    "from the prompt or a retry rule, not from the faces"
                )
        if self.stopped:
            out.append(f"stopped early: {self.stopped}")
        return out


# ---------------------------------------------------------------------------------------------- log


def read_log(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL log; a torn last line (a run killed mid-write) is skipped."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def done_items(log: Path, model: str, prompt_sha256: str) -> set[tuple[str, int | None]]:
    """``(source file name, face index)`` already annotated by this model with this exact prompt."""
    return {
        (record["source"], record.get("face"))
        for record in read_log(log)
        if record.get("type") == "image"
        and record.get("status") == "ok"
        and record.get("model") == model
        and record.get("prompt_sha256") == prompt_sha256
        and "source" in record
    }


def done_sources(log: Path | None, model: str | None, prompt: Prompt) -> set[str]:
    """Source files a rerun of ``model`` with ``prompt`` would skip (for cost estimates); none without a
    model or a log."""
    if not model or log is None:
        return set()
    return {source for source, _ in done_items(log, model, prompt.sha256)}


class _LogWriter:
    """Append-only JSONL writer: one flushed (and fsynced) line per record."""

    def __init__(self, path: Path, redact: Callable[[str], str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self._handle: TextIO = path.open("a", encoding="utf-8")
        if needs_newline:  # a killed run may have left half a line; never glue a record onto it
            self._handle.write("\n")
        self._redact = redact

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(self._redact(json.dumps(record, ensure_ascii=False)) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


# ---------------------------------------------------------------------------------------------- CSV


def _hq_row(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "image": record["image"],
        "annotator": record["annotator"],
        "human": False,
        "annotations": repr(record["annotations"]),  # a Python dict literal, as in the published hq.csv
    }


def write_hq_csv(log: Path, out: Path) -> int:
    """Rewrite ``out`` from every successful record in ``log`` (latest per image and annotator), atomically."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in read_log(log):
        if record.get("type") == "image" and record.get("status") == "ok" and record.get("annotations"):
            latest[(record["image"], record["annotator"])] = record
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HQ_COLUMNS)
        writer.writeheader()
        writer.writerows(_hq_row(record) for record in latest.values())
    return len(latest)


class _CsvAppender:
    def __init__(self, path: Path) -> None:
        new = not path.exists() or path.stat().st_size == 0
        self._handle = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=HQ_COLUMNS)
        if new:
            self._writer.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        self._writer.writerow(_hq_row(record))
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


# -------------------------------------------------------------------------------------------- faces


Crop = tuple[Image.Image, dict[str, Any]]
"""A face crop and where it came from (box and detector score, logged with the answer)."""


def face_cropper(options: FaceOptions | str) -> Callable[[Image.Image], list[Crop]] | None:
    """The face-cropping function for the face options (``None`` for ``--faces none``), built before
    any request.

    Detection and portrait crops are :mod:`emonet_face.faces`, shared with ``predict`` (the same
    ``--detector``, ``--min-face-score``, ``--align`` and ``--margin``); images where no face is found
    send nothing.
    """
    options = options if isinstance(options, FaceOptions) else FaceOptions(options)
    if not options.finds_faces:
        return None
    detector = faces.get_detector(options.detector, **options.detector_options)

    def regions(image: Image.Image) -> list[Crop]:
        found = faces.face_regions(image, detector, options.faces, margin=options.margin, align=options.align)
        return [(region.image, dict(region.ids)) for region in found if region.image is not None]

    return regions


# ------------------------------------------------------------------------------------------ running


@dataclass
class _Item:
    path: Path
    source: str
    face: int | None = None
    faces_in_image: int | None = None

    def image_id(self) -> str:
        """HQ ``image``: the file name; ``<name>#face<i>`` only when an image holds several faces."""
        if self.face is None or (self.faces_in_image or 0) <= 1:
            return self.source
        return f"{self.source}#face{self.face}"


def _repair_message(error: ParseError) -> str:
    return (
        f"Your answer could not be used: {error}. Answer again with ONE corrected JSON object only, in the "
        'required format: "emotions" with all 40 emotions and "extra_dimensions" with all 4 dimensions, each '
        '{"rating": <integer on its scale>, "reason": "<short reason>"}.'
    )


def _add_usage(total: dict[str, int], usage: dict[str, int]) -> None:
    for key, value in usage.items():
        total[key] = total.get(key, 0) + value


async def _annotate_image(client: ChatClient, image: Image.Image, prompt: Prompt, repairs: int) -> dict[str, Any]:
    """Ask, parse, repair up to ``repairs`` times; the log fields for this image."""
    data_url = await asyncio.to_thread(image_data_url, image)
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": prompt.text},
                {"type": "image_url", "image_url": {"url": data_url}},
            ],
        }
    ]
    attempts: list[dict[str, Any]] = []
    usage: dict[str, int] = {}
    started = time.perf_counter()
    annotation: Annotation | None = None
    error: str | None = None
    raw: str | None = None
    for attempt in range(1, repairs + 2):
        try:
            result = await client.complete(messages)
        except FatalRequestError:
            raise
        except RequestError as exc:
            attempts.append({"attempt": attempt, "http_attempts": exc.http_attempts, "error": str(exc)})
            error = str(exc)
            break
        _add_usage(usage, result.usage)
        raw = result.text
        entry = {
            "attempt": attempt,
            "http_attempts": result.http_attempts,
            "retry_waits_s": [round(w, 3) for w in result.retry_waits],
            "latency_s": round(result.latency_s, 3),
            "usage": result.usage,
            "finish_reason": result.finish_reason,
            "raw_response": raw,
        }
        try:
            annotation = parse_answer(raw, max_nonzero=prompt.max_nonzero)
        except ParseError as exc:
            entry["error"] = str(exc)
            attempts.append(entry)
            error = f"invalid answer after {attempt} attempts: {exc}"
            if result.finish_reason == "length":
                error += " (the answer was cut off at --max-tokens; raise it)"
            messages += [{"role": "assistant", "content": raw}, {"role": "user", "content": _repair_message(exc)}]
            continue
        attempts.append(entry)
        error = None
        break
    fields: dict[str, Any] = {
        "status": "ok" if annotation else "error",
        "error": error,
        "attempts": attempts,
        "raw_response": raw,
        "latency_s": round(time.perf_counter() - started, 3),
        "usage": usage,
    }
    if annotation is not None:
        ratings, extras = annotation.named_ratings()
        fields.update(
            annotations=annotation.hq_annotations(),
            ratings=ratings,
            extra_dimensions=extras,
            reasons=annotation.reasons,
            n_nonzero=annotation.n_nonzero,
        )
    return fields


def _check_unique_names(paths: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in paths:
        if path.name in seen:
            raise InputError(
                f"{path} and {seen[path.name]} share the file name {path.name!r}, which is the image id in the HQ "
                "layout; annotate them into separate --out files or rename one"
            )
        seen[path.name] = path


def run_annotation(inputs: list[str], options: AnnotateOptions, api_key: str | None) -> RunSummary:
    """Annotate every input image (or face) not yet done; see the module docstring for the guarantees."""
    if options.concurrency < 1:
        raise InputError(f"--concurrency {options.concurrency}: must be at least 1")
    paths = discover_inputs(inputs, suffixes=IMAGE_SUFFIXES)  # folders: images only (no video frames here)
    _check_unique_names(paths)
    cropper = face_cropper(options.faces)
    log_path = options.log_path
    if options.out.exists() and not log_path.exists():
        raise InputError(
            f"{options.out} exists but its log {log_path} does not, so finished images cannot be told apart; "
            "pass --log with the original log or choose a new --out"
        )
    with claim_output(options.out, then=RERUN_HINT):  # one run per --out; a write error names it
        done = done_items(log_path, options.model, options.prompt.sha256)
        summary = RunSummary(inputs=len(paths))
        return asyncio.run(_AnnotationRun(options, api_key, cropper, done, summary).run(paths))


class _AnnotationRun:
    """One annotation run: the client, the log and the CSV it appends to, what was done before, the tally."""

    log: _LogWriter
    csv_out: _CsvAppender
    progress: Callable[..., None]

    def __init__(
        self,
        options: AnnotateOptions,
        api_key: str | None,
        cropper: Callable[[Image.Image], list[Crop]] | None,
        done: set[tuple[str, int | None]],
        summary: RunSummary,
    ) -> None:
        self.options = options
        self.cropper = cropper
        self.done = done
        self.summary = summary
        self.client = ChatClient(
            options.base_url,
            options.model,
            api_key=api_key,
            timeout=options.timeout,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
            json_mode=options.json_mode,
            retry=options.retry,
            max_connections=options.concurrency,
        )
        self.base = {
            "model": options.model,
            "annotator": options.annotator,
            "prompt": options.prompt.kind,
            "prompt_sha256": options.prompt.sha256,
        }

    async def run(self, paths: list[Path]) -> RunSummary:
        """Annotate ``paths`` (those not done) with ``concurrency`` workers; the log and CSV are whole at the end."""
        options = self.options
        self.log = _LogWriter(options.log_path, self.client.redact)
        write_hq_csv(options.log_path, options.out)  # whole again even if a killed run tore its last line
        self.csv_out = _CsvAppender(options.out)
        self.log.write(self._run_record())
        self.progress = _progress(len(paths), options.progress)
        queue: asyncio.Queue[Path] = asyncio.Queue()
        for path in paths:
            if self.cropper is None and (path.name, None) in self.done:
                self.summary.skipped += 1
                self.progress(1)
            else:
                queue.put_nowait(path)
        try:
            async with self.client:
                await self._work(queue)
        finally:
            self._close()
        return self.summary

    def _run_record(self) -> dict[str, Any]:
        """The log's header for this run: provenance, model, prompt and settings (never the API key)."""
        options = self.options
        return {
            "type": "run",
            **provenance(),
            **self.base,
            "base_url": options.base_url,
            "prompt_source": options.prompt.source,
            "prompt_text": options.prompt.text,
            "settings": {
                "faces": FaceMode(options.faces.faces).value,
                "concurrency": options.concurrency,
                "temperature": options.temperature,
                "max_tokens": options.max_tokens,
                "timeout": options.timeout,
                "json_mode": options.json_mode,
                "repair_attempts": options.repair_attempts,
                "max_retries": options.retry.max_retries,
                "api_key_env": options.api_key_env,
            },
        }

    async def _work(self, queue: asyncio.Queue[Path]) -> None:
        """Workers until the queue is empty; a fatal endpoint error stops them all and is noted in the summary."""
        workers = min(self.options.concurrency, max(queue.qsize(), 1))
        tasks = [asyncio.create_task(self._worker(queue)) for _ in range(workers)]
        try:
            finished, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in finished:
            exc = task.exception()
            if isinstance(exc, FatalRequestError):
                self.summary.stopped = self.client.redact(str(exc))
            elif exc is not None:
                raise exc

    async def _worker(self, queue: asyncio.Queue[Path]) -> None:
        while True:
            try:
                path = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self._handle(path)
            self.progress(1)

    async def _handle(self, path: Path) -> None:
        """One image: load it, crop its faces (``--faces``), annotate each face not done yet."""
        cropper = self.cropper
        item = _Item(path=path, source=path.name)
        try:
            image = await asyncio.to_thread(load_image, path)
            crops: list[Crop] = [(image, {})] if cropper is None else await asyncio.to_thread(cropper, image)
        except EmoNetError as exc:
            self._record(item, {"status": "error", "error": str(exc), "attempts": []})
            return
        if cropper is not None and not crops:
            self._record(item, {"status": "error", "error": f"{path}: no face found", "attempts": []})
            return
        for index, (crop, region) in enumerate(crops):
            face_item = _Item(
                path, path.name, None if cropper is None else index, None if cropper is None else len(crops)
            )
            if (face_item.source, face_item.face) in self.done:
                self.summary.skipped += 1
                continue
            fields = await _annotate_image(self.client, crop, self.options.prompt, self.options.repair_attempts)
            if region:
                fields["region"] = {k: v for k, v in region.items() if k != "face"}
            self._record(face_item, fields)

    def _record(self, item: _Item, fields: dict[str, Any]) -> None:
        """Log one answer (or failure) at once, append a successful one to the CSV, count it."""
        entry = {
            "type": "image",
            "time": utc_timestamp(),
            "image": item.image_id(),
            "source": item.source,
            "path": str(item.path),
            "face": item.face,
            "faces_in_image": item.faces_in_image,
            **self.base,
            **fields,
        }
        self.log.write(entry)
        if entry["status"] == "ok":
            self.summary.annotated += 1
            self.csv_out.write(entry)
        else:
            self.summary.failed += 1
        self.summary.prompt_tokens += fields.get("usage", {}).get("prompt_tokens", 0)
        self.summary.completion_tokens += fields.get("usage", {}).get("completion_tokens", 0)

    def _close(self) -> None:
        """Rewrite the CSV from the log (whole even after a crash) and end the log with the summary."""
        options, summary = self.options, self.summary
        summary.requests = self.client.requests_sent
        self.progress(0, close=True)
        self.csv_out.close()
        write_hq_csv(options.log_path, options.out)
        summary.nonzero_counts = _nonzero_counts(options.log_path, options.model, options.prompt.sha256)
        self.log.write({"type": "summary", "time": utc_timestamp(), **self.base, **summary.as_dict()})
        self.log.close()


def _nonzero_counts(log: Path, model: str, prompt_sha256: str) -> dict[int, int]:
    latest: dict[str, int] = {}
    for record in read_log(log):
        if (
            record.get("type") == "image"
            and record.get("status") == "ok"
            and record.get("model") == model
            and record.get("prompt_sha256") == prompt_sha256
        ):
            latest[record["image"]] = int(record.get("n_nonzero", 0))
    return dict(sorted(Counter(latest.values()).items()))


def _progress(total: int, enabled: bool) -> Callable[..., None]:
    """A tqdm bar on stderr when wanted and on a terminal; otherwise a no-op."""
    if not enabled or not sys.stderr.isatty():

        def noop(step: int, close: bool = False) -> None:
            return None

        return noop
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", file=sys.stderr)

    def update(step: int, close: bool = False) -> None:
        if step:
            bar.update(step)
        if close:
            bar.close()

    return update
