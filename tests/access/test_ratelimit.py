"""proxy/access/ratelimit.py and redis_backend.py: GCRA, OpenAI's headers and words, and one
behaviour suite run against both backends (the Redis one on a real redis-server)."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator

import pytest

from proxy.access.keys import Limits
from proxy.access.ratelimit import (
    WINDOW,
    Decision,
    Limiter,
    MemoryLimiter,
    go_duration,
    rate_headers,
    refusal,
)
from proxy.access.redis_backend import RedisLimiter, redis_keys
from proxy.errors import RateLimitExceeded


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.0004, "1ms"), (0.12, "120ms"), (0.644, "644ms"), (1, "1s"), (1.5, "1.5s"),
    (59.999, "59.999s"), (60, "1m0s"), (360, "6m0s"), (61.25, "1m1.25s"), (3600, "1h0m0s"), (-3, "0s"),
], ids=lambda v: str(v))
def test_go_duration_as_openai_prints_resets(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_a_fresh_bucket_allows_a_full_minute_in_a_burst_then_refuses_with_the_wait() -> None:
    limiter = MemoryLimiter()
    limits = Limits("k", rpm=3, tpm=0)
    decisions = [limiter.take_now(limits, 0, 100.0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining_requests for d in decisions[:3]] == [2, 1, 0]
    assert decisions[2].reset_requests == pytest.approx(60.0)
    refused = decisions[3]
    assert (refused.refused, refused.retry_after) == ("requests", pytest.approx(20.0))
    # 20 s later one request's worth has come back, and not more
    assert limiter.take_now(limits, 0, 120.0).allowed
    assert not limiter.take_now(limits, 0, 120.0).allowed


def test_rpm_and_tpm_are_charged_together_or_not_at_all() -> None:
    limiter = MemoryLimiter()
    limits = Limits("k", rpm=10, tpm=100)
    assert limiter.take_now(limits, 80, 0.0).allowed
    refused = limiter.take_now(limits, 30, 0.0)
    assert (refused.allowed, refused.refused, refused.remaining_requests) == (False, "tokens", 9)
    assert refused.retry_after == pytest.approx(10 * 60 / 100)  # 10 tokens short at 100 a minute
    ok = limiter.take_now(limits, 20, 0.0)
    assert (ok.allowed, ok.remaining_requests, ok.remaining_tokens) == (True, 8, 0)


def test_settling_gives_back_or_charges_the_difference() -> None:
    limiter = MemoryLimiter()
    limits = Limits("k", rpm=0, tpm=100)
    assert limiter.take_now(limits, 90, 0.0).allowed
    limiter.settle_now(limits, -80, 0.0)  # only 10 used
    assert limiter.take_now(limits, 90, 0.0).allowed
    limiter.settle_now(limits, +5, 0.0)  # used 5 more than reserved: the bucket is over
    assert limiter.take_now(limits, 0, 0.0).remaining_tokens == 0


def test_a_reservation_above_the_limit_is_too_large_whatever_the_wait() -> None:
    decision = MemoryLimiter().take_now(Limits("k", rpm=0, tpm=100), 101, 0.0)
    assert (decision.allowed, decision.refused) == (False, "too_large")
    error = refusal(decision, "llama3.2", 101)
    assert error.message == ("Request too large for llama3.2 on tokens per min (TPM): Limit 100, Requested 101. "
                             "The input or output tokens must be reduced in order to run successfully.")
    assert error.retry_after is None and ("x-should-retry", "false") in error.headers


def test_with_several_workers_each_enforces_its_share() -> None:
    limiter = MemoryLimiter(share=4)
    decisions = [limiter.take_now(Limits("k", rpm=8, tpm=0), 0, 0.0) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[0].limit_requests == 2


def test_the_refusal_is_openais_429_word_for_word() -> None:
    decision = Decision(False, 0, 0, 0.0, 1000, 200, 48.3, retry_after=0.644, refused="tokens")
    error = refusal(decision, "llama3.2", 300)
    assert isinstance(error, RateLimitExceeded)
    assert (error.status, error.type, error.code, error.kind) == (429, "tokens", "rate_limit_exceeded", "tokens")
    assert error.message == ("Rate limit reached for llama3.2 on tokens per min (TPM): Limit 1000, Used 800, "
                             "Requested 300. Please try again in 644ms.")
    requests = refusal(Decision(False, 3, 0, 20.0, 0, 0, 0.0, retry_after=20.0, refused="requests"), "m", 5)
    assert (requests.type, requests.kind) == ("requests", "requests")
    assert requests.message == ("Rate limit reached for m on requests per min (RPM): Limit 3, Used 3, Requested 1. "
                                "Please try again in 20s.")


def test_headers_are_openais_six_with_go_durations() -> None:
    assert rate_headers(Decision(True, 60, 59, 1.0, 150000, 149984, 0.006)) == (
        ("x-ratelimit-limit-requests", "60"), ("x-ratelimit-remaining-requests", "59"),
        ("x-ratelimit-reset-requests", "1s"), ("x-ratelimit-limit-tokens", "150000"),
        ("x-ratelimit-remaining-tokens", "149984"), ("x-ratelimit-reset-tokens", "6ms"))
    assert rate_headers(Decision(True, 0, 0, 0, 10, 5, 30.0)) == (
        ("x-ratelimit-limit-tokens", "10"), ("x-ratelimit-remaining-tokens", "5"), ("x-ratelimit-reset-tokens", "30s"))


def test_redis_keys_share_one_hash_tag() -> None:
    assert redis_keys("alice|qwen*") == ["{ratelimit:alice|qwen*}:r", "{ratelimit:alice|qwen*}:t"]


# ---- one suite, both backends -------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    backend: Limiter
    if request.param == "memory":
        backend = MemoryLimiter()
    else:
        backend = RedisLimiter(request.getfixturevalue("redis_url"), timeout=2.0)
    yield backend
    await backend.close()


async def test_backend_burst_then_refusal(limiter: Limiter) -> None:
    limits = Limits("suite", rpm=5, tpm=0)
    results = [await limiter.take(limits, 0) for _ in range(6)]
    assert [d.allowed for d in results] == [True] * 5 + [False]
    assert [d.remaining_requests for d in results] == [4, 3, 2, 1, 0, 0]
    assert results[-1].refused == "requests" and 11.0 < results[-1].retry_after <= 12.0


async def test_backend_tokens_reserve_settle_and_too_large(limiter: Limiter) -> None:
    limits = Limits("suite", rpm=100, tpm=1000)
    assert (await limiter.take(limits, 900)).remaining_tokens == 100
    refused = await limiter.take(limits, 200)
    assert (refused.allowed, refused.refused, refused.remaining_requests) == (False, "tokens", 99)
    limiter.settle(limits, -800)
    if isinstance(limiter, RedisLimiter):
        await limiter.close()  # waits for the settlement in flight
        limiter = RedisLimiter(limiter_url(limiter), timeout=2.0)
    allowed = await limiter.take(limits, 200)
    assert allowed.allowed and 690 <= allowed.remaining_tokens <= 710
    assert (await limiter.take(limits, 1001)).refused == "too_large"
    await limiter.close()


def limiter_url(limiter: RedisLimiter) -> str:
    kwargs = limiter._redis.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


async def test_backend_buckets_are_apart(limiter: Limiter) -> None:
    assert (await limiter.take(Limits("a", rpm=1, tpm=0), 0)).allowed
    assert not (await limiter.take(Limits("a", rpm=1, tpm=0), 0)).allowed
    assert (await limiter.take(Limits("b", rpm=1, tpm=0), 0)).allowed


def _step(tat: float, now: float, limit: int, cost: int) -> tuple[bool, float, float]:
    """GCRA's step as the module docstring states it: (fits, TAT before, TAT after charging)."""
    base = max(tat, now)
    new = base + cost * WINDOW / limit
    return new - now <= WINDOW + 1e-9, base, new


def _state(tat: float, now: float, limit: int) -> tuple[int, float]:
    """(remaining, seconds until whole) of a bucket whose TAT is ``tat``."""
    interval = WINDOW / limit
    return max(0, min(limit, math.floor((now + WINDOW - tat) / interval + 1e-9))), tat - now


def _reference_take(tats: dict[str, float], limits: Limits, tokens: int, now: float) -> tuple[object, ...]:
    """GCRA step by step, one limit at a time: what MemoryLimiter.take_now writes out inline."""
    rpm, tpm = limits.rpm, limits.tpm
    if tpm and tokens > tpm:
        return (False, rpm, 0, 0.0, tpm, 0, 0.0, 0.0, "too_large")
    r = _step(tats.get("r", now), now, rpm, 1) if rpm else (True, now, now)
    t = _step(tats.get("t", now), now, tpm, tokens) if tpm else (True, now, now)
    allowed = r[0] and t[0]
    if allowed:
        if rpm:
            tats["r"] = r[2]
        if tpm:
            tats["t"] = t[2]
    r_left, r_reset = _state(r[2] if allowed else r[1], now, rpm) if rpm else (0, 0.0)
    t_left, t_reset = _state(t[2] if allowed else t[1], now, tpm) if tpm else (0, 0.0)
    retry = 0.0 if allowed else max(r[2] - now - WINDOW, t[2] - now - WINDOW, 0.0)
    refused = None if allowed else ("requests" if not r[0] else "tokens")
    return (allowed, rpm, r_left, r_reset, tpm, t_left, t_reset, retry, refused)


@pytest.mark.parametrize("rpm,tpm", [(3, 0), (0, 500), (7, 1000), (1, 1), (1_000_000_000, 10**12)])
def test_take_now_is_the_gcra_of_step_and_state(rpm: int, tpm: int) -> None:
    rng = random.Random(rpm * 31 + tpm)
    limiter, limits, tats = MemoryLimiter(), Limits("k", rpm, tpm), {}
    now = 1_000_000.0 + rng.random()
    for _ in range(400):
        now += rng.choice((0.0, 0.001, 0.5, 3.0, 61.0))
        tokens = rng.choice((0, 1, 10, 200, 499, 600))
        got = limiter.take_now(limits, tokens, now)
        want = _reference_take(tats, limits, tokens, now)
        assert (got.allowed, got.limit_requests, got.remaining_requests, got.reset_requests, got.limit_tokens,
                got.remaining_tokens, got.reset_tokens, got.retry_after, got.refused) == want
        if got.allowed and tpm and rng.random() < 0.3:  # a settlement moves both the same way
            delta = rng.choice((-150, -5, 3, 40))
            limiter.settle_now(limits, delta, now)
            tat = max(tats.get("t", now) + delta * WINDOW / tpm, now)
            if tat <= now:
                tats.pop("t", None)
            else:
                tats["t"] = tat
