"""The shared rate-limit store: Redis, for several replicas or ``--workers N`` on one host.

One Lua script does a request's whole check-and-charge in one round trip (``EVALSHA``), with
Redis's own ``TIME`` as the clock so every replica agrees on "now", and the same GCRA
arithmetic as ``MemoryLimiter``. The second mode of the same script settles a request's tokens
when its answer is complete. Both keys of a bucket share the hash tag ``{ratelimit:<bucket>}``,
so in Redis Cluster they live on one slot and the script may touch both. Keys expire once
their TAT is in the past (the bucket is whole again), so idle keys cost no memory.

When Redis cannot be reached the limiter raises ``BackendDown``; the gate answers it by
``[ratelimit] on_backend_error``. Settlement runs as a tracked task (never awaited in the
request's path, never left behind on shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .keys import Limits
from .ratelimit import Decision

__all__ = ["LUA", "BackendDown", "RedisLimiter", "redis_keys"]

log = logging.getLogger("proxy.ratelimit")

# KEYS: requests TAT, tokens TAT.  ARGV: mode ("take" | "settle"), rpm, tpm, tokens (or delta).
# Times are milliseconds from Redis TIME; returns integers (Lua numbers become integers).
LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = 60000
local rpm, tpm, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function store(key, tat)
  local ttl = math.ceil(tat - now)
  if ttl > 0 then redis.call('SET', key, string.format('%.3f', tat), 'PX', ttl) else redis.call('DEL', key) end
end
if ARGV[1] == 'settle' then
  if tpm > 0 and cost ~= 0 then
    local tat = tonumber(redis.call('GET', KEYS[2]) or now)
    store(KEYS[2], math.max(tat + cost * window / tpm, now))
  end
  return 1
end
if tpm > 0 and cost > tpm then return {0, 0, 0, 0, 0, 0, 3} end
local function step(key, limit, c)
  if limit <= 0 then return {true, now, now} end
  local base = math.max(tonumber(redis.call('GET', key) or now), now)
  local new = base + c * window / limit
  return {new - now <= window, base, new}
end
local function state(tat, limit)
  if limit <= 0 then return {0, 0} end
  local interval = window / limit
  return {math.max(0, math.min(limit, math.floor((now + window - tat) / interval + 1e-9))), math.ceil(tat - now)}
end
local r = step(KEYS[1], rpm, 1)
local k = step(KEYS[2], tpm, cost)
local allowed = r[1] and k[1]
if allowed then
  if rpm > 0 then store(KEYS[1], r[3]) end
  if tpm > 0 then store(KEYS[2], k[3]) end
end
local rs = state(allowed and r[3] or r[2], rpm)
local ks = state(allowed and k[3] or k[2], tpm)
local retry = allowed and 0 or math.max(r[3] - now - window, k[3] - now - window, 0)
local refused = allowed and 0 or (r[1] and 2 or 1)
return {rs[1], rs[2], ks[1], ks[2], math.ceil(retry), allowed and 1 or 0, refused}
"""

_REFUSED = {0: None, 1: "requests", 2: "tokens", 3: "too_large"}


class BackendDown(Exception):
    """The rate-limit store could not answer."""


def redis_keys(bucket: str) -> list[str]:
    """The two keys of a bucket, hash-tagged so Redis Cluster keeps them on one slot."""
    return [f"{{ratelimit:{bucket}}}:r", f"{{ratelimit:{bucket}}}:t"]


class RedisLimiter:
    """Buckets in Redis at ``url``; every call bounded by ``timeout`` seconds."""

    name = "redis"

    def __init__(self, url: str, timeout: float) -> None:
        import redis.asyncio as aioredis  # only this backend needs the package

        self._redis: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30)
        self._script = self._redis.register_script(LUA)
        self._errors: tuple[type[BaseException], ...] = (aioredis.RedisError, OSError, TimeoutError)
        self._pending: set[asyncio.Task[None]] = set()
        self.healthy = True

    async def _run(self, limits: Limits, mode: str, tokens: int) -> Any:
        try:
            result = await self._script(keys=redis_keys(limits.bucket),
                                        args=[mode, limits.rpm, limits.tpm, tokens])
        except self._errors as exc:
            if self.healthy:
                log.error("rate-limit store unreachable (%s: %s)", type(exc).__name__, exc)
            self.healthy = False
            raise BackendDown(str(exc)) from None
        if not self.healthy:
            log.warning("rate-limit store reachable again")
            self.healthy = True
        return result

    async def take(self, limits: Limits, tokens: int) -> Decision:
        r_left, r_reset, t_left, t_reset, retry, allowed, refused = await self._run(limits, "take", tokens)
        return Decision(bool(allowed), limits.rpm, int(r_left), int(r_reset) / 1000, limits.tpm,
                        int(t_left), int(t_reset) / 1000, int(retry) / 1000, _REFUSED[int(refused)])

    def settle(self, limits: Limits, delta: int) -> None:
        if not limits.tpm or not delta:
            return
        task = asyncio.get_running_loop().create_task(self._settle(limits, delta))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle(self, limits: Limits, delta: int) -> None:
        try:
            await self._run(limits, "settle", delta)
        except BackendDown:
            pass  # logged by _run; a lost settlement errs by the reservation at most

    async def ping(self) -> bool:
        """Whether Redis answers now (for readiness while marked unhealthy)."""
        try:
            await self._redis.ping()
        except self._errors:
            return False
        return True

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._redis.aclose()
