"""The chat client against a real HTTP server on 127.0.0.1: retries, Retry-After, timeouts, JSON mode."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import pytest
from PIL import Image

from emonet_face.vlm.client import (
    ChatClient,
    FatalRequestError,
    RequestError,
    RetryPolicy,
    chat_completions_url,
    image_data_url,
    parse_retry_after,
)
from vlm_fakes import FakeVLM, Reply, Seen, completion

FAST = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.01)
MESSAGES = [{"role": "user", "content": "rate"}]


def call(server: FakeVLM, *, retry: RetryPolicy = FAST, timeout: float = 5.0, key: str | None = None, **kw):
    async def go():
        async with ChatClient(server.url, "test-model", api_key=key, timeout=timeout, retry=retry, **kw) as client:
            return await client.complete(MESSAGES), client

    return asyncio.run(go())


def test_success_sends_model_json_mode_and_reads_usage() -> None:
    with FakeVLM(lambda seen: Reply(content='{"a": 1}')) as server:
        result, client = call(server, key="sk-test", temperature=0.2, max_tokens=99)
    (seen,) = server.seen
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "test-model" and seen.body["messages"] == MESSAGES
    assert seen.body["response_format"] == {"type": "json_object"}
    assert seen.body["temperature"] == 0.2 and seen.body["max_tokens"] == 99
    assert seen.headers["Authorization"] == "Bearer sk-test"
    assert result.text == '{"a": 1}' and result.http_attempts == 1
    assert result.usage == {"prompt_tokens": 1000, "completion_tokens": 400, "total_tokens": 1400}
    assert client.requests_sent == 1


def test_500_then_success_is_retried() -> None:
    def behaviour(seen: Seen) -> Reply:
        return Reply(status=500, content="boom") if seen.number == 0 else Reply(content="fine")

    with FakeVLM(behaviour) as server:
        result, _ = call(server)
    assert len(server.seen) == 2 and result.text == "fine" and result.http_attempts == 2


def test_429_honours_retry_after() -> None:
    def behaviour(seen: Seen) -> Reply:
        if seen.number == 0:
            return Reply(status=429, content="slow down", headers={"Retry-After": "0.4"})
        return Reply(content="fine")

    with FakeVLM(behaviour) as server:
        result, _ = call(server)  # backoff alone would wait ~1 ms
    assert len(server.seen) == 2 and result.text == "fine"
    gap = server.seen[1].time - server.seen[0].time
    assert gap >= 0.35, gap
    assert result.retry_waits == [0.4]


def test_retries_are_bounded_and_back_off_exponentially() -> None:
    with (
        FakeVLM(lambda seen: Reply(status=503, content="down")) as server,
        pytest.raises(RequestError, match="gave up after 4 requests; last: HTTP 503") as err,
    ):
        call(server, retry=RetryPolicy(max_retries=3, base_delay=0.05, max_delay=10))
    assert len(server.seen) == 4 and err.value.http_attempts == 4
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    for index, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (2.5, 5), (2.5, 5)]):
        waits = [policy.backoff(index) for _ in range(200)]
        assert low <= min(waits) and max(waits) <= high and len(set(waits)) > 1  # jittered


def test_slow_response_times_out_and_is_retried() -> None:
    def behaviour(seen: Seen) -> Reply:
        return Reply(content="late", delay=3.0) if seen.number == 0 else Reply(content="fine")

    with FakeVLM(behaviour) as server:
        started = time.perf_counter()
        result, _ = call(server, timeout=0.3)
        elapsed = time.perf_counter() - started
    assert result.text == "fine" and len(server.seen) == 2
    assert elapsed < 2.5  # did not wait for the slow answer


def test_slow_every_time_gives_up_with_a_timeout_error() -> None:
    with FakeVLM(lambda seen: Reply(content="late", delay=3.0)) as server, pytest.raises(RequestError, match="timeout"):
        call(server, timeout=0.2, retry=RetryPolicy(max_retries=1, base_delay=0.001))
    assert len(server.seen) == 2


def test_json_mode_rejected_falls_back_and_stays_off() -> None:
    def behaviour(seen: Seen) -> Reply:
        if "response_format" in seen.body:
            return Reply(status=400, content="response_format is not supported")
        return Reply(content="fine")

    async def go():
        async with ChatClient(server.url, "m", retry=FAST) as client:
            first = await client.complete(MESSAGES)
            second = await client.complete(MESSAGES)
            return first, second, client

    with FakeVLM(behaviour) as server:
        first, second, client = asyncio.run(go())
    assert first.text == second.text == "fine"
    assert ["response_format" in s.body for s in server.seen] == [True, False, False]
    assert client.json_mode is False


def test_auth_and_not_found_are_fatal_and_not_retried() -> None:
    for status in (401, 404):
        with (
            FakeVLM(lambda seen, status=status: Reply(status=status, content="nope")) as server,
            pytest.raises(FatalRequestError, match=f"HTTP {status}"),
        ):
            call(server)
        assert len(server.seen) == 1


def test_other_client_errors_fail_without_retry() -> None:
    with (
        FakeVLM(lambda seen: Reply(status=413, content="image too large")) as server,
        pytest.raises(RequestError, match=r"HTTP 413: .*image too large"),
    ):
        call(server)
    assert len(server.seen) == 1


def test_echoed_key_is_redacted_from_errors_and_answers() -> None:
    key = "sk-SECRET-123456"

    def behaviour(seen: Seen) -> Reply:
        echoed = seen.headers["Authorization"]
        return Reply(status=500, content=f"bad {echoed}") if seen.number == 0 else Reply(content=f"ok {echoed}")

    with FakeVLM(behaviour) as server:
        result, _ = call(server, key=key)
    assert key not in result.text and "[REDACTED]" in result.text
    with (
        FakeVLM(lambda seen: Reply(status=400, content=f"bad key {seen.headers['Authorization']}")) as server,
        pytest.raises(RequestError) as err,
    ):
        call(server, key=key, json_mode=False)
    assert key not in str(err.value)


def test_not_a_completion_is_an_error() -> None:
    with (
        FakeVLM(lambda seen: Reply(raw=b"<html>proxy</html>")) as server,
        pytest.raises(RequestError, match="not a chat completion"),
    ):
        call(server)


def test_helpers() -> None:
    assert chat_completions_url("http://h/v1/") == "http://h/v1/chat/completions"
    assert chat_completions_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"
    assert parse_retry_after("3") == 3.0 and parse_retry_after("0.5") == 0.5 and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert parse_retry_after("soon") is None
    url = image_data_url(Image.new("RGB", (8, 8), (200, 10, 10)))
    assert url.startswith("data:image/jpeg;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (8, 8)


def test_a_400_for_another_reason_does_not_turn_json_mode_off() -> None:
    async def go():
        async with ChatClient(server.url, "m", retry=FAST) as client:
            with pytest.raises(RequestError, match="HTTP 400"):
                await client.complete(MESSAGES)
            return client

    with FakeVLM(lambda seen: Reply(status=400, content="image could not be decoded")) as server:
        client = asyncio.run(go())
    assert ["response_format" in s.body for s in server.seen] == [True, False]
    assert client.json_mode is True


def test_error_object_with_status_200_is_retried_and_finish_reason_kept() -> None:
    def behaviour(seen: Seen) -> Reply:
        if seen.number == 0:
            return Reply(raw=b'{"error": {"message": "upstream overloaded", "code": 502}}')
        body = json.loads(completion("partial {"))
        body["choices"][0]["finish_reason"] = "length"
        return Reply(raw=json.dumps(body).encode())

    with FakeVLM(behaviour) as server:
        result, _ = call(server)
    assert len(server.seen) == 2 and result.text == "partial {" and result.finish_reason == "length"
