"""``python -m bench.access_cost``: the CPU the key + memory-limiter path adds to one request,
timed in isolation (the shared 2-core machine is too noisy for the end-to-end columns to
resolve a few percent). It runs, per request, exactly what ``proxy/gates/access.py`` adds for a
key with rpm and tpm: find and check the key, parse the body for the model and budget, take
and settle the reservation, render and attach the ``x-ratelimit-*`` headers."""

from __future__ import annotations

import math
import time

import orjson
from aiohttp import web
from multidict import CIMultiDict

from proxy.access.keys import KeyTable, hash_key, presented_key
from proxy.access.ratelimit import MemoryLimiter, rate_headers
from proxy.config import AuthConfig, build

KEY = "sk-bench-0000000000000000000000000000000000000000"
BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100})


def per_request(n: int = 200_000) -> float:
    keys = KeyTable(build(AuthConfig, {"keys": [{"id": "b", "sha256": hash_key(KEY), "rpm": 10**9,
                                                 "tpm": 10**12}]}, "auth."))
    limiter = MemoryLimiter()
    headers = CIMultiDict({"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    response = web.Response()
    start = time.process_time()
    for _ in range(n):
        key = keys.authenticate(presented_key(headers))
        body = orjson.loads(BODY)
        model = body["model"]
        key.allows(model)
        limits = key.limits_for(model)
        reserved = math.ceil(len(BODY) / 4) + body["max_tokens"]
        decision = limiter.take_now(limits, reserved, time.monotonic())
        response.headers.extend(rate_headers(decision))
        limiter.settle_now(limits, 20 - reserved, time.monotonic())
        response.headers.clear()
    return (time.process_time() - start) / n * 1e6


if __name__ == "__main__":
    print(f"key + memory limiter, added CPU per request: {min(per_request() for _ in range(3)):.1f} µs")
