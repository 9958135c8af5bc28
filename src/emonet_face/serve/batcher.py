"""Dynamic batching of encoder inputs from concurrent requests.

The batch unit is one encoder input (an image, a face crop, a video frame), not a request: a
request with three faces puts three items in the queue, and a batch may mix items of several
requests. One worker thread owns the model (torch inference is not run from two threads at once);
it takes the first waiting item, waits at most ``timeout_s`` for more (or until
``max_batch_size``), encodes them in one call and resolves each item's future, so every request
gets back exactly its own features. The queue is bounded: :meth:`Batcher.submit` raises
:class:`QueueFull` instead of letting latency grow without limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

__all__ = ["Batcher", "QueueFull"]

log = logging.getLogger("emonet_face.serve")


class QueueFull(Exception):
    """The queue holds ``max_queue`` items already; the caller should answer 503 + Retry-After."""


class Batcher:
    """Run ``fn(items) -> results`` (one result per item, same order) on batches of queued items."""

    def __init__(
        self, fn: Callable[[list[Any]], Sequence[Any]], *, max_batch_size: int, timeout_s: float, max_queue: int
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or timeout_s < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, timeout_s >= 0")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self._queue: deque[tuple[Any, Future]] = deque()
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

    def submit(self, items: Sequence[Any]) -> list[Future]:
        """Queue ``items``; one future per item, resolved with its result (or its batch's exception).

        All items of one call are queued together, so they are taken in order. A call larger than
        the whole queue is still accepted when the queue is empty (a video or a crowd photo must not
        be unservable); otherwise a call that does not fit raises :class:`QueueFull`.
        """
        futures = [Future() for _ in items]
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if self._queue and len(self._queue) + len(items) > self.max_queue:
                raise QueueFull(f"{len(self._queue)} encoder inputs are waiting (limit {self.max_queue})")
            self._queue.extend(zip(items, futures))
            self._cond.notify()
        return futures

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
            deadline = time.monotonic() + self.timeout_s
            while len(self._queue) < self.max_batch_size and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(self.max_batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            # a future its caller cancelled (a live stream that ended) is dropped unencoded; the others
            # are marked running, so that a late cancel can no longer make set_result fail
            batch = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            if not batch:
                continue
            items = [item for item, _ in batch]
            try:
                results = self.fn(items)
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
