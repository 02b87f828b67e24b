"""Admission control: how many requests may be at Ollama at once, and who waits for a slot.

Ollama serves ``OLLAMA_NUM_PARALLEL`` requests per model at a time (default 1), queues up to
``OLLAMA_MAX_QUEUE`` more (default 512) and answers any beyond that with 503 "server busy"
(``server/sched.go``). The proxy keeps its own, smaller pile-up in front of that: at most
``max_concurrent`` requests in flight (and ``max_concurrent_per_model`` or a ``[admission.models]``
glob's bound per model), at most ``max_queue`` waiting, each for at most ``queue_timeout``
seconds. Beyond that a client gets 429 with ``Retry-After``, which the OpenAI SDKs retry.

Who waits goes by ``proxy/upstream/fairqueue.py``: priority classes (``high`` > ``default`` > ``low``,
with an aging bound), then weighted fair sharing across parties (API keys), then arrival order
within a party. A release wakes the next waiters that fit, so a waiter blocked only by its own
model's bound does not hold up a request for another model (no head-of-line blocking). A slot
is held by ``async with admission.slot(model, request)`` and given back on every exit: the
answer completes, fails, or the handler is cancelled because the client went away.

Who a request is (its party, weight and class) is worked out only when it has to wait, by the
``share`` hook the access layer installs (``proxy/gates/access.py``): a request that finds a free
slot pays nothing for fairness.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..config import AdmissionConfig
from ..errors import InvalidRequest, RateLimited
from ..modelglob import Globs, canonical
from .fairqueue import DEFAULT, HIGH, LOW, PRIORITIES, FairQueue, Waiter

__all__ = ["PRIORITIES", "SERVICE_TIER", "Admission", "AdmissionRejected", "Share", "ShareOf", "Slot", "answer_tier",
           "requested_tier", "tier_class"]

# A request's OpenAI ``service_tier``, set by its handler only when the body names one.
SERVICE_TIER = web.RequestKey("service_tier", str)
TIERS = ("auto", "default", "flex", "scale", "priority")  # OpenAI's values

Share = tuple[str, float, int]  # (party, weight, priority class index)
ShareOf = Callable[[Any], Share]  # the request (or None) → its share


def requested_tier(body: dict[str, Any]) -> str | None:
    """The body's ``service_tier`` (None when absent), or 400 for a value OpenAI does not define."""
    tier = body.get("service_tier")
    if tier is None or (isinstance(tier, str) and tier in TIERS):
        return tier
    raise InvalidRequest(f"Invalid value for 'service_tier': expected one of {', '.join(TIERS)}.",
                         param="service_tier", code="invalid_value")


def tier_class(tier: str | None, default: int, ceiling: int) -> int:
    """The class a request runs in: ``flex`` → low, ``priority`` → high, ``default`` (and
    ``scale``) → default, none or ``auto`` → the key's default class; never above ``ceiling``."""
    wanted = {"flex": LOW, "priority": HIGH, "default": DEFAULT, "scale": DEFAULT}.get(tier or "auto", default)
    return max(wanted, ceiling)  # a larger index is a lower class


def answer_tier(priority: int) -> str:
    """The ``service_tier`` an answer reports for the class it ran in (OpenAI's names)."""
    return ("priority", "default", "flex")[priority]


def _anonymous(request: Any) -> Share:
    tier = request.get(SERVICE_TIER) if request is not None else None
    return "anonymous", 1.0, tier_class(tier, DEFAULT, HIGH)


class AdmissionRejected(RateLimited):
    """No slot: the queue was full or the wait too long (the proxy's capacity, not a caller's
    rate limit; metrics count the two apart)."""


class Admission:
    """The slots of one proxy process; every method runs on the event loop (no locks needed)."""

    def __init__(self, config: AdmissionConfig) -> None:
        self.config = config
        self._bounds = Globs(config.models)
        self._bound_values = tuple(config.models.values())
        self.active = 0
        self.by_model: dict[str, int] = {}  # only models with requests in flight: stays small
        self._queue = FairQueue(config.priority_aging)
        self.share: ShareOf = _anonymous  # the access layer installs the keys' own
        self.on_wait: Callable[[int, float], None] | None = None  # (class, seconds) of each queued grant

    @property
    def waiting(self) -> int:
        """Requests queued for a slot (every waiter removes itself when it stops waiting)."""
        return self._queue.size

    def waiting_by(self) -> list[tuple[str, str, int]]:
        """(priority, party, waiting) for every party with requests queued (the gauges)."""
        return list(self._queue.counts())

    def priority_of(self, request: Any) -> int:
        """The class ``request`` runs in (what its answer's ``service_tier`` reports)."""
        return self.share(request)[2]

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
        if self._queue.size:
            self._wake()

    def _wake(self) -> None:
        """Grant freed slots to the next waiters that fit, in the fair queue's order."""
        limit = self.config.max_concurrent
        queue, fits, now = self._queue, self._fits, time.monotonic()
        while not (limit and self.active >= limit):
            waiter = queue.pop(fits, now)
            if waiter is None:
                break  # nobody else can fit
            future: asyncio.Future[None] = waiter.token
            if future.done():
                continue  # gave up in this very turn; its coroutine cleans up after itself
            self._take(waiter.model)
            future.set_result(None)
            if self.on_wait is not None:
                self.on_wait(waiter.priority, now - waiter.since)

    async def _acquire(self, key: str, request: Any) -> None:
        if self._fits(key):
            self._take(key)
            return
        config = self.config
        party, weight, priority = self.share(request)
        if self._queue.size >= config.max_queue:
            raise AdmissionRejected(
                f"The proxy is at its limit of concurrent requests and its queue of {config.max_queue} "
                "is full; retry after the indicated time.", retry_after=config.retry_after)
        if config.max_queue_per_key and self._queue.party_waiting(party) >= config.max_queue_per_key:
            raise AdmissionRejected(
                f"This caller already has {config.max_queue_per_key} requests waiting for a slot "
                "(admission.max_queue_per_key); retry after the indicated time.", retry_after=config.retry_after)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = Waiter(key, party, priority, time.monotonic(), weight, future)
        self._queue.push(waiter)
        try:
            async with asyncio.timeout(config.queue_timeout):
                await future
        except BaseException as exc:
            granted = future.done() and not future.cancelled()
            future.cancel()
            self._queue.remove(waiter)  # not yet popped by _wake: leave no dead entry behind
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

    def slot(self, model: str, request: Any = None) -> Slot:
        """Hold one slot for a request to ``model`` for the duration of an ``async with`` block;
        ``request`` (the aiohttp request) says whose it is, read only if it has to wait."""
        return Slot(self, canonical(model), request)


class Slot:
    """One request's hold on a slot: taken on entry (at once when one is free), given back on
    every exit. A plain class rather than a generator-based context manager: it is entered on
    every request."""

    __slots__ = ("_admission", "_key", "_request")

    def __init__(self, admission: Admission, key: str, request: Any) -> None:
        self._admission = admission
        self._key = key
        self._request = request

    async def __aenter__(self) -> None:
        admission = self._admission
        if admission._fits(self._key):
            admission._take(self._key)
        else:
            await admission._acquire(self._key, self._request)

    async def __aexit__(self, *exc_info: object) -> None:
        self._admission._give_back(self._key)
