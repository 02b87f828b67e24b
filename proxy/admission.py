"""Admission control: how many requests may be at Ollama at once, and who waits for a slot.

Ollama serves ``OLLAMA_NUM_PARALLEL`` requests per model at a time (default 1), queues up to
``OLLAMA_MAX_QUEUE`` more (default 512) and answers any beyond that with 503 "server busy"
(``server/sched.go``). The proxy keeps its own, smaller pile-up in front of that: at most
``max_concurrent`` requests in flight (and ``max_concurrent_per_model`` or a ``[admission.models]``
glob's bound per model), at most ``max_queue`` waiting, each for at most ``queue_timeout``
seconds. Beyond that a client gets 429 with ``Retry-After``, which the OpenAI SDKs retry.

The queue is first-come first-served among the requests that can run: a release wakes the
oldest waiters that fit, so a waiter blocked only by its own model's bound does not hold up a
request for another model (no head-of-line blocking). A slot is held by ``async with
admission.slot(model)`` and given back on every exit: the answer completes, fails, or the
handler is cancelled because the client went away.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from .config import AdmissionConfig
from .errors import RateLimited
from .modelglob import Globs, canonical

__all__ = ["Admission", "AdmissionRejected", "Slot"]


class AdmissionRejected(RateLimited):
    """No slot: the queue was full or the wait too long (the proxy's capacity, not a caller's
    rate limit; metrics count the two apart)."""


@dataclass(eq=False)
class _Waiter:
    model: str
    future: asyncio.Future[None] = field(repr=False)


class Admission:
    """The slots of one proxy process; every method runs on the event loop (no locks needed)."""

    def __init__(self, config: AdmissionConfig) -> None:
        self.config = config
        self._bounds = Globs(config.models)
        self._bound_values = tuple(config.models.values())
        self.active = 0
        self.by_model: dict[str, int] = {}  # only models with requests in flight: stays small
        self._queue: collections.deque[_Waiter] = collections.deque()

    @property
    def waiting(self) -> int:
        """Requests queued for a slot (every waiter removes itself when it stops waiting)."""
        return len(self._queue)

    def bound(self, model: str) -> int:
        """Concurrent requests allowed for ``model`` (0: only the global bound applies)."""
        i = self._bounds.first(model) if self._bounds else None
        return self._bound_values[i] if i is not None else self.config.max_concurrent_per_model

    def _fits(self, key: str) -> bool:
        limit = self.config.max_concurrent
        if limit and self.active >= limit:
            return False
        per_model = self.bound(key)
        return not per_model or self.by_model.get(key, 0) < per_model

    def _take(self, key: str) -> None:
        self.active += 1
        self.by_model[key] = self.by_model.get(key, 0) + 1

    def _give_back(self, key: str) -> None:
        self.active -= 1
        left = self.by_model[key] - 1
        if left:
            self.by_model[key] = left
        else:
            del self.by_model[key]
        self._wake()

    def _wake(self) -> None:
        """Grant freed slots to the oldest waiters that fit; drop the ones that gave up."""
        limit = self.config.max_concurrent
        kept: collections.deque[_Waiter] = collections.deque()
        while self._queue:
            waiter = self._queue.popleft()
            if waiter.future.done():
                continue  # timed out or cancelled; its coroutine cleans up after itself
            if self._fits(waiter.model):
                self._take(waiter.model)
                waiter.future.set_result(None)
            else:
                kept.append(waiter)
            if limit and self.active >= limit:
                break  # nobody else can fit; keep the rest in order
        kept.extend(self._queue)
        self._queue = kept

    async def _acquire(self, key: str) -> None:
        if self._fits(key):
            self._take(key)
            return
        config = self.config
        if self.waiting >= config.max_queue:
            raise AdmissionRejected(
                f"The proxy is at its limit of concurrent requests and its queue of {config.max_queue} "
                "is full; retry after the indicated time.", retry_after=config.retry_after)
        waiter = _Waiter(key, asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        try:
            async with asyncio.timeout(config.queue_timeout):
                await waiter.future
        except BaseException as exc:
            granted = waiter.future.done() and not waiter.future.cancelled()
            waiter.future.cancel()
            if waiter in self._queue:  # not yet dropped by _wake: leave no dead entry behind
                self._queue.remove(waiter)
            if not granted:
                if isinstance(exc, TimeoutError):
                    raise AdmissionRejected(
                        f"No slot for a request to Ollama freed up within {config.queue_timeout:g} s; "
                        "retry after the indicated time.", retry_after=config.retry_after) from None
                raise
            if not isinstance(exc, TimeoutError):
                # Granted in the same loop turn as the cancellation: hand the slot on, then leave.
                self._give_back(key)
                raise
            # Granted just as the time-out fired: the slot is ours, use it.

    def slot(self, model: str) -> Slot:
        """Hold one slot for a request to ``model`` for the duration of an ``async with`` block."""
        return Slot(self, canonical(model))


class Slot:
    """One request's hold on a slot: taken on entry (at once when one is free), given back on
    every exit. A plain class rather than a generator-based context manager: it is entered on
    every request."""

    __slots__ = ("_admission", "_key")

    def __init__(self, admission: Admission, key: str) -> None:
        self._admission = admission
        self._key = key

    async def __aenter__(self) -> None:
        admission = self._admission
        if admission._fits(self._key):
            admission._take(self._key)
        else:
            await admission._acquire(self._key)

    async def __aexit__(self, *exc_info: object) -> None:
        self._admission._give_back(self._key)
