"""``proxy/upstream/probe.py``: the sharing rules of the readiness check, with a hand-driven clock and an
upstream call the test releases itself (no network, no sleeps)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from proxy.errors import UpstreamUnavailable
from proxy.upstream.probe import HealthProbe


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """A ``/api/version`` call that answers when the test says so."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.fail: Exception | None = None

    async def fetch(self) -> str:
        self.calls += 1
        self.entered.set()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return "0.12.6"


def probe(
    upstream: Upstream,
    clock: Clock,
    interval: float = 1.0,
    timeout: float = 2.0,
    camel: bool = False,
) -> HealthProbe:
    return HealthProbe(upstream.fetch, interval=interval, timeout=timeout, camel=camel, clock=clock)


async def test_concurrent_probes_share_one_call_in_flight() -> None:
    upstream, clock = Upstream(), Clock()
    health = probe(upstream, clock)
    waiters = [asyncio.create_task(health.check()) for _ in range(500)]
    await upstream.entered.wait()
    assert upstream.calls == 1
    upstream.release.set()
    results = await asyncio.gather(*waiters)
    assert {id(r) for r in results} == {id(results[0])}
    assert results[0].status == 200
    assert orjson.loads(results[0].body) == {
        "status": "ok",
        "ollama": {"reachable": True, "version": "0.12.6", "latency_ms": 0.0},
    }


@pytest.mark.parametrize(
    ("advance", "calls"),
    [(0.0, 1), (0.999, 1), (1.0, 2), (5.0, 2)],
    ids=[
        "same instant shares",
        "within interval shares",
        "interval over asks again",
        "long after asks again",
    ],
)
async def test_result_is_shared_for_the_interval(advance: float, calls: int) -> None:
    upstream, clock = Upstream(), Clock()
    upstream.release.set()
    health = probe(upstream, clock, interval=1.0)
    await health.check()
    clock.now += advance
    await health.check()
    assert upstream.calls == calls == health.upstream_calls


async def test_interval_zero_shares_only_the_call_in_flight() -> None:
    upstream, clock = Upstream(), Clock()
    upstream.release.set()
    health = probe(upstream, clock, interval=0.0)
    await asyncio.gather(health.check(), health.check())
    await health.check()
    assert upstream.calls == 2


async def test_unreachable_ollama_is_503_with_the_reason() -> None:
    upstream, clock = Upstream(), Clock()
    upstream.fail = UpstreamUnavailable("Could not connect to Ollama.")
    upstream.release.set()
    result = await probe(upstream, clock).check()
    assert (result.ok, result.status) == (False, 503)
    assert orjson.loads(result.body) == {
        "status": "unavailable",
        "reason": "Could not connect to Ollama.",
        "ollama": {"reachable": False, "latency_ms": 0.0},
    }


async def test_a_hanging_ollama_is_503_after_the_timeout() -> None:
    upstream, clock = Upstream(), Clock()  # never released
    result = await probe(upstream, clock, timeout=0.01).check()
    assert result.status == 503
    assert orjson.loads(result.body)["reason"] == "Ollama did not answer within 0.01 s."


async def test_a_probe_that_goes_away_does_not_cancel_the_shared_call() -> None:
    upstream, clock = Upstream(), Clock()
    health = probe(upstream, clock)
    first = asyncio.create_task(health.check())
    second = asyncio.create_task(health.check())
    await upstream.entered.wait()
    first.cancel()
    upstream.release.set()
    assert (await second).status == 200
    assert first.cancelled()
    assert upstream.calls == 1


async def test_latency_is_measured_on_the_given_clock() -> None:
    upstream, clock = Upstream(), Clock()
    health = probe(upstream, clock)
    task = asyncio.create_task(health.check())
    await upstream.entered.wait()
    clock.now += 0.0125
    upstream.release.set()
    assert orjson.loads((await task).body)["ollama"]["latency_ms"] == 12.5


async def test_camel_key_style() -> None:
    upstream, clock = Upstream(), Clock()
    upstream.release.set()
    result = await probe(upstream, clock, camel=True).check()
    assert orjson.loads(result.body)["ollama"] == {
        "reachable": True,
        "version": "0.12.6",
        "latencyMs": 0.0,
    }


async def test_close_cancels_the_call_in_flight() -> None:
    upstream, clock = Upstream(), Clock()
    health = probe(upstream, clock)
    waiter = asyncio.create_task(health.check())
    await upstream.entered.wait()
    await health.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter
