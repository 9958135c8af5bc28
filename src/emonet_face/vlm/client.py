"""A small async client for OpenAI-compatible ``/chat/completions`` endpoints.

One client serves OpenAI, Gemini's and OpenRouter's compatible endpoints, vLLM, Ollama and the
llama.cpp server: images travel as base64 data URLs, JSON mode is requested and dropped for the
rest of the run when a server rejects it, and transient failures (429, 5xx, timeouts, dropped
connections) are retried with exponential backoff and jitter, honouring ``Retry-After``. The API
key lives only in the request header; :meth:`ChatClient.redact` scrubs it from anything a server
echoes back before that text reaches a log.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from PIL import Image

from emonet_face.errors import EmoNetError, require_extra

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ChatClient",
    "ChatResult",
    "FatalRequestError",
    "RequestError",
    "RetryPolicy",
    "image_data_url",
]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
FATAL_STATUS = frozenset({401, 403, 404})
"""Statuses that will fail every image the same way: stop the run instead of burning through it."""
_JSON_MODE_REJECTED = frozenset({400, 415, 422})
_BODY_EXCERPT = 300


class RequestError(EmoNetError):
    """A request failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, message: str, *, status: int | None = None, http_attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.http_attempts = http_attempts


class _ErrorInBody(Exception):
    """A 2xx response whose body is an error object (proxies relay upstream failures this way): retried."""


class FatalRequestError(RequestError):
    """The endpoint refuses every request (bad key, no access, wrong URL or model): stop the run."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    """Retries after the first try (so at most ``max_retries + 1`` HTTP requests per call)."""
    base_delay: float = 1.0
    """First backoff delay in seconds; doubles with every retry."""
    max_delay: float = 60.0
    max_retry_after: float = 300.0
    """Longest ``Retry-After`` honoured; longer waits are capped so a run cannot stall for hours."""

    def backoff(self, retry_index: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of ``base * 2**n`` (capped)."""
        ceiling = min(self.max_delay, self.base_delay * (2**retry_index))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class ChatResult:
    text: str
    usage: dict[str, int]
    latency_s: float
    http_attempts: int
    retry_waits: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    """``"length"`` means the answer was cut off at ``max_tokens``."""


def image_data_url(image: Image.Image, *, quality: int = 95) -> str:
    """Encode an RGB image as a JPEG ``data:`` URL (what every compatible server accepts)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (fractions accepted) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def chat_completions_url(base_url: str) -> str:
    """``https://host/v1`` → ``https://host/v1/chat/completions`` (a full endpoint URL is kept)."""
    url = base_url.strip().rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class ChatClient:
    """Async chat-completions client; use as ``async with ChatClient(...) as client``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        temperature: float | None = 0.0,
        max_tokens: int | None = 4096,
        json_mode: bool = True,
        retry: RetryPolicy | None = None,
        max_connections: int | None = None,
    ) -> None:
        self.url = chat_completions_url(base_url)
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.json_mode = json_mode
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.max_connections = max_connections
        self._api_key = api_key or None
        self._http: httpx.AsyncClient | None = None
        self.requests_sent = 0

    async def __aenter__(self) -> ChatClient:
        httpx = require_extra("httpx", feature="emonet-face vlm annotate", extra="vlm")
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)
        self._http = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(self.timeout), limits=limits, follow_redirects=True
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced, for anything that may reach a log or the terminal."""
        if self._api_key and isinstance(text, str):
            return text.replace(self._api_key, "[REDACTED]")
        return text

    def _payload(self, messages: list[dict[str, Any]], *, json_mode: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        if json_mode:
            payload["response_format"] = {"type": "json_object"}
        return payload

    def _excerpt(self, response: httpx.Response) -> str:
        text = " ".join(response.text.split())
        return self.redact(text[:_BODY_EXCERPT])

    async def complete(self, messages: list[dict[str, Any]]) -> ChatResult:
        """Send one chat request (with retries); return the assistant's text and token usage."""
        if self._http is None:
            raise RuntimeError("use ChatClient as an async context manager")
        import httpx  # installed: __aenter__ checked it

        started = time.perf_counter()
        waits: list[float] = []
        attempts = 0
        retries_left = self.retry.max_retries
        json_mode = self.json_mode
        while True:
            attempts += 1
            self.requests_sent += 1
            wait: float | None = None
            status: int | None = None
            try:
                response = await self._http.post(self.url, json=self._payload(messages, json_mode=json_mode))
            except httpx.TimeoutException:
                failure = f"no answer within {self.timeout:g} s (timeout)"
            except httpx.TransportError as exc:
                failure = f"connection failed ({type(exc).__name__}: {self.redact(str(exc))})"
            else:
                status = response.status_code
                if status < 300:
                    try:
                        result = self._result(response, started, attempts, waits)
                    except _ErrorInBody as exc:  # a proxy's upstream error delivered with a 200
                        failure = str(exc)
                    else:
                        if json_mode != self.json_mode:
                            self.json_mode = json_mode  # the server rejected response_format: stop sending it
                        return result
                else:
                    failure = f"HTTP {status}: {self._excerpt(response)}"
                    if status in _JSON_MODE_REJECTED and json_mode:
                        # Perhaps the server does not know response_format: ask once more without it
                        # (tolerant parsing takes over). Not counted as a retry.
                        json_mode = False
                        continue
                    if status in FATAL_STATUS:
                        raise FatalRequestError(
                            f"{self.url} answered {failure}; check --base-url, --model and the API key",
                            status=status,
                            http_attempts=attempts,
                        )
                    if status not in RETRYABLE_STATUS:
                        raise RequestError(f"{self.url} answered {failure}", status=status, http_attempts=attempts)
                    wait = parse_retry_after(response.headers.get("Retry-After"))
            if retries_left <= 0:
                raise RequestError(
                    f"gave up after {attempts} requests; last: {failure}", status=status, http_attempts=attempts
                )
            retry_index = self.retry.max_retries - retries_left
            retries_left -= 1
            delay = min(wait, self.retry.max_retry_after) if wait is not None else self.retry.backoff(retry_index)
            waits.append(delay)
            await asyncio.sleep(delay)

    def _result(self, response: httpx.Response, started: float, attempts: int, waits: list[float]) -> ChatResult:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "error" in body and not body.get("choices"):
            raise _ErrorInBody(f"HTTP {response.status_code} with an error: {self._excerpt(response)}")
        try:
            choice = body["choices"][0]
            content = choice["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise RequestError(
                f"{self.url} answered HTTP {response.status_code} but not a chat completion: {self._excerpt(response)}",
                status=response.status_code,
                http_attempts=attempts,
            ) from None
        if isinstance(content, list):  # some servers return content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        tokens = {
            k: int(usage[k])
            for k in ("prompt_tokens", "completion_tokens", "total_tokens")
            if isinstance(usage.get(k), (int, float)) and not isinstance(usage.get(k), bool)
        }
        return ChatResult(
            text=self.redact(content or ""),
            usage=tokens,
            latency_s=time.perf_counter() - started,
            http_attempts=attempts,
            retry_waits=waits,
            finish_reason=choice.get("finish_reason") if isinstance(choice, dict) else None,
        )
