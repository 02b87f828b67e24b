"""Per-key requests-per-minute and tokens-per-minute limits, behind one small interface.

The algorithm is GCRA (the generic cell rate algorithm, as in redis-cell and Stripe's limiter)
over a one-minute window: a bucket keeps one "theoretical arrival time" (TAT) per limit; a
request of cost ``c`` moves it ``c × 60 s / limit`` later and is allowed while the TAT stays
within a minute of now. That allows a full minute's limit in a burst, refills continuously,
and takes any cost, so a token reservation and its later settlement (a refund moves the TAT
back, never before now) are the same arithmetic. ``rpm`` and ``tpm`` are checked together and
charged only when both allow, so a refused request costs nothing.

Two backends: ``MemoryLimiter`` (one process; with ``workers = N`` each worker is given 1/N of
every limit) and ``RedisLimiter`` (``redis_backend.py``: one Lua script, Redis's clock, one
round trip to take and one to settle). ``Decision`` carries what OpenAI's ``x-ratelimit-*``
headers say; ``headers`` and ``refusal`` render it exactly as OpenAI does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..errors import RateLimitExceeded
from .keys import Limits

__all__ = [
    "WINDOW", "Decision", "Limiter", "MemoryLimiter", "go_duration", "rate_headers", "refusal",
    "too_large",
]

WINDOW = 60.0  # seconds: limits are per minute


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~2 µs per request here
class Decision:
    """One check of a bucket: allowed or not, and the state OpenAI's headers report."""

    allowed: bool
    limit_requests: int
    remaining_requests: int
    reset_requests: float  # seconds until the request limit is whole again
    limit_tokens: int
    remaining_tokens: int
    reset_tokens: float
    retry_after: float = 0.0  # seconds until the refused request would fit
    refused: str | None = None  # "requests", "tokens" or "too_large" (more than the limit)


class Limiter(Protocol):
    """A rate-limit store. ``take`` checks and charges one request's reservation atomically;
    ``settle`` charges (``delta`` > 0) or gives back (< 0) tokens once the real count is known."""

    name: str

    async def take(self, limits: Limits, tokens: int) -> Decision: ...

    def settle(self, limits: Limits, delta: int) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class MemoryLimiter:
    """Buckets in this process's memory, on its monotonic clock.

    ``take_now`` is GCRA for the two limits at once, the arithmetic the Lua script mirrors (it runs
    on every metered request): a cost of ``c`` moves a TAT ``c × 60 s / limit`` on from
    ``max(TAT, now)`` and fits while it stays within a minute of now; what is left is the whole
    requests or tokens between the TAT and a minute from now. Each ``Limits``' per-worker share
    and intervals are worked out once."""

    name = "memory"

    def __init__(self, share: int = 1) -> None:
        self.share = max(1, share)  # workers sharing the port: each enforces limit / share
        self._tats: dict[tuple[str, str], float] = {}
        self._plans: dict[Limits, _Plan] = {}  # by value: a handful per key, bounded below

    def _limit(self, limit: int) -> int:
        return max(1, limit // self.share) if limit else 0

    def _plan(self, limits: Limits) -> _Plan:
        plan = self._plans.get(limits)
        if plan is None:
            if len(self._plans) >= _PLANS:
                self._plans.clear()
            rpm, tpm = self._limit(limits.rpm), self._limit(limits.tpm)
            plan = self._plans[limits] = _Plan(rpm, tpm, WINDOW / rpm if rpm else 0.0, WINDOW / tpm if tpm else 0.0,
                                               (limits.bucket, "r"), (limits.bucket, "t"))
        return plan

    async def take(self, limits: Limits, tokens: int) -> Decision:
        return self.take_now(limits, tokens, time.monotonic())

    def take_now(self, limits: Limits, tokens: int, now: float) -> Decision:
        rpm, tpm, r_interval, t_interval, r_key, t_key = self._plan(limits)
        if tpm and tokens > tpm:
            return Decision(False, rpm, 0, 0.0, tpm, 0, 0.0, refused="too_large")
        tats = self._tats
        r_fits = t_fits = True
        r_base = r_new = t_base = t_new = now
        if rpm:
            r_base = max(now, tats.get(r_key, now))
            r_new = r_base + WINDOW / rpm
            # A tolerance for float rounding: (now + 60.0) - now is 60.00000000000003 at some clock
            # values, which would refuse a whole bucket's first request.
            r_fits = r_new - now <= WINDOW + 1e-9
        if tpm:
            t_base = max(now, tats.get(t_key, now))
            t_new = t_base + tokens * WINDOW / tpm
            t_fits = t_new - now <= WINDOW + 1e-9
        allowed = r_fits and t_fits
        if allowed:  # both or neither: a refused request costs nothing
            if rpm:
                tats[r_key] = r_new
            if tpm:
                tats[t_key] = t_new
        r_left = t_left = 0
        r_reset = t_reset = 0.0
        if rpm:
            r_tat = r_new if allowed else r_base
            r_left, r_reset = max(0, min(rpm, math.floor((now + WINDOW - r_tat) / r_interval + 1e-9))), r_tat - now
        if tpm:
            t_tat = t_new if allowed else t_base
            t_left, t_reset = max(0, min(tpm, math.floor((now + WINDOW - t_tat) / t_interval + 1e-9))), t_tat - now
        if allowed:
            return Decision(True, rpm, r_left, r_reset, tpm, t_left, t_reset)
        retry = max(r_new - now - WINDOW, t_new - now - WINDOW, 0.0)
        return Decision(False, rpm, r_left, r_reset, tpm, t_left, t_reset, retry, "requests" if not r_fits else "tokens")

    def settle(self, limits: Limits, delta: int) -> None:
        self.settle_now(limits, delta, time.monotonic())

    def settle_now(self, limits: Limits, delta: int, now: float) -> None:
        if not delta:
            return
        _, tpm, _, _, _, key = self._plan(limits)
        if not tpm:
            return
        tat = self._tats.get(key, now) + delta * WINDOW / tpm
        if tat <= now:
            self._tats.pop(key, None)  # whole again: nothing to remember
        else:
            self._tats[key] = tat

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._tats.clear()


_PLANS = 4096  # bounded: limits changed by reloads add entries; past this the lot is dropped


class _Plan(NamedTuple):
    """One ``Limits`` as this worker enforces it."""

    rpm: int
    tpm: int
    r_interval: float  # seconds of the window one request takes
    t_interval: float  # seconds one token takes
    r_key: tuple[str, str]
    t_key: tuple[str, str]


# ---- OpenAI's rendering ------------------------------------------------------------------------


def go_duration(seconds: float) -> str:
    """A duration as Go prints it, to the millisecond, as OpenAI's reset headers show it:
    ``0s``, ``120ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h0m0s``."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest // 1000}" + (f".{rest % 1000:03d}".rstrip("0") if rest % 1000 else "") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


def rate_headers(d: Decision) -> tuple[tuple[str, str], ...]:
    """OpenAI's six ``x-ratelimit-*`` headers (a side without a limit is left out)."""
    out: list[tuple[str, str]] = []
    if d.limit_requests:
        out += [("x-ratelimit-limit-requests", str(d.limit_requests)),
                ("x-ratelimit-remaining-requests", str(d.remaining_requests)),
                ("x-ratelimit-reset-requests", go_duration(d.reset_requests))]
    if d.limit_tokens:
        out += [("x-ratelimit-limit-tokens", str(d.limit_tokens)),
                ("x-ratelimit-remaining-tokens", str(d.remaining_tokens)),
                ("x-ratelimit-reset-tokens", go_duration(d.reset_tokens))]
    return tuple(out)


def refusal(d: Decision, model: str, tokens: int) -> RateLimitExceeded:
    """The 429 for a refused ``Decision``, in OpenAI's words."""
    if d.refused == "too_large":
        return too_large(model, d.limit_tokens, tokens)
    retry = go_duration(d.retry_after)
    if d.refused == "tokens":
        used = d.limit_tokens - d.remaining_tokens
        what, limit, requested = "tokens per min (TPM)", d.limit_tokens, tokens
    else:
        used = d.limit_requests - d.remaining_requests
        what, limit, requested = "requests per min (RPM)", d.limit_requests, 1
    return RateLimitExceeded(
        f"Rate limit reached for {model} on {what}: Limit {limit}, Used {used}, Requested {requested}. "
        f"Please try again in {retry}.", kind=d.refused or "requests", retry_after=d.retry_after)


def too_large(model: str, limit: int, tokens: int) -> RateLimitExceeded:
    """A reservation that no wait can satisfy: refused at once, and the SDKs told not to retry."""
    return RateLimitExceeded(
        f"Request too large for {model} on tokens per min (TPM): Limit {limit}, Requested {tokens}. "
        "The input or output tokens must be reduced in order to run successfully.",
        kind="tokens", retry_after=None, headers=(("x-should-retry", "false"),))
