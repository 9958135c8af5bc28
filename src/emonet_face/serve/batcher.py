"""Dynamic batching of encoder inputs from concurrent requests.

The batch unit is one encoder input (an image, a face crop, a video frame), not a request: a
request with three faces puts three items in the queue, and a batch may mix items of several
requests. One worker thread owns the model (torch inference is not run from two threads at once);
it takes the first waiting item, waits at most ``timeout_s`` for more (or until
``max_batch_size``), encodes them in one call and resolves each item's future, so every request
gets back exactly its own features. The queue is bounded: :meth:`Batcher.submit` raises
:class:`QueueFull` instead of letting latency grow without limit.

Live streams come back: a stream submits its next frame as soon as its previous one is answered
(plus the time to decode it and find its faces). Submitting with an ``owner`` (the stream) says so,
and a batch being formed then waits a little for the owners it expects (at most
``company_s``, and at most ``company_fraction`` of the last batch's run time, so only a slow encoder
waits): without that, two streams fall into alternating batches of one, each waiting for the
other's batch, and never share one. :meth:`Batcher.withdraw` says an owner has nothing coming.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Any

__all__ = ["Batcher", "QueueFull"]

log = logging.getLogger("emonet_face.serve")


class QueueFull(Exception):
    """The queue holds ``max_queue`` items already; the caller should answer 503 + Retry-After."""


class Batcher:
    """Run ``fn(items) -> results`` (one result per item, same order) on batches of queued items."""

    def __init__(
        self,
        fn: Callable[[list[Any]], Sequence[Any]],
        *,
        max_batch_size: int,
        timeout_s: float,
        max_queue: int,
        company_s: float = 0.5,
        company_fraction: float = 0.5,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or timeout_s < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, timeout_s >= 0")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self.company_s = company_s
        self.company_fraction = company_fraction
        self._queue: deque[tuple[Any, Future, Hashable | None]] = deque()
        self._expected: set[Hashable] = set()
        """Owners (live streams) that will submit again soon: a forming batch waits a little for them."""
        self._last_run_s = 0.0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="emonet-face-encoder", daemon=True)
        self.batches = 0
        """Batches run so far (with :attr:`items`: the mean batch size, for ``/v1/info`` and tests)."""
        self.items = 0

    def start(self) -> Batcher:
        self._thread.start()
        return self

    @property
    def depth(self) -> int:
        """Items waiting (not yet taken into a batch)."""
        return len(self._queue)

    def submit(self, items: Sequence[Any], *, owner: Hashable | None = None) -> list[Future]:
        """Queue ``items``; one future per item, resolved with its result (or its batch's exception).

        All items of one call are queued together, so they are taken in order. A call larger than
        the whole queue is still accepted when the queue is empty (a video or a crowd photo must not
        be unservable); otherwise a call that does not fit raises :class:`QueueFull`. ``owner`` (a
        live stream) will submit again once answered, until it calls :meth:`withdraw`.
        """
        futures: list[Future] = [Future() for _ in items]
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if self._queue and len(self._queue) + len(items) > self.max_queue:
                raise QueueFull(f"{len(self._queue)} encoder inputs are waiting (limit {self.max_queue})")
            self._queue.extend((item, future, owner) for item, future in zip(items, futures))
            if owner is not None:
                self._expected.add(owner)
            self._cond.notify()
        return futures

    def withdraw(self, owner: Hashable) -> None:
        """``owner`` has nothing to submit for now (its stream is idle, its frame had no face, it closed)."""
        with self._cond:
            self._expected.discard(owner)
            self._cond.notify()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish what is queued, then end the worker thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _take(self) -> list[tuple[Any, Future]] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            start = time.monotonic()
            deadline = start + self.timeout_s
            company = start + max(self.timeout_s, min(self.company_s, self.company_fraction * self._last_run_s))
            while len(self._queue) < self.max_batch_size and not self._stopping:
                missing = self._expected - {owner for _, _, owner in self._queue}
                left = (company if missing else deadline) - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(self.max_batch_size, len(self._queue))
            return [self._queue.popleft()[:2] for _ in range(n)]

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            # a future its caller cancelled (a live stream that ended) is dropped unencoded; the others
            # are marked running, so that a late cancel can no longer make set_result fail
            batch = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            if not batch:
                continue
            items = [item for item, _ in batch]
            started = time.monotonic()
            try:
                results = self.fn(items)
                self._last_run_s = time.monotonic() - started
                if len(results) != len(items):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
            except BaseException as exc:  # the requests in this batch fail; the worker lives on
                log.exception("encoder batch of %d failed", len(items))
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(items)
            for (_, future), result in zip(batch, results):
                future.set_result(result)
