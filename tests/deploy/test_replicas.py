"""Two replicas, real processes on this machine: one ``redis-server`` and one PostgreSQL shared,
two stand-in Ollamas in the pool, streaming and whole answers from the official SDK; then the
faults a team's set-up meets, one after the other:

1. ``kill -9`` one replica: the other keeps serving; the killed one loses only its in-flight
   requests and at most its last ``flush_interval`` of usage; restarted, it serves again.
2. Redis stopped for a while: ``fail_closed`` answers 503 and ``/readyz`` says so on both;
   Redis back, both recover without a restart and a key's rpm is exact again across them.
3. PostgreSQL restarted: answers go on, usage and stored completions wait in memory and are
   written once it is back; none lost.

Each replica's loops use their own API key, so usage and stored completions (per key in the
store) tell the replicas apart. The numbers are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]

from proxy.access.keys import hash_key
from proxy.config import StoreConfig
from tests.deploy.procs import Load, ProxyProcess
from tests.fake_ollama import FakeOllama
from tests.pg import reset_postgres, start_postgres, stop_postgres
from tests.redis_server import RedisProcess

KEYS = {"replica-a": "sk-replica-a", "replica-b": "sk-replica-b", "limited": "sk-limited"}
LIMITED_RPM = 5
WRITE_SLACK = 1.0  # the last write's own time on this shared machine (see test_crash.py)


def config_text(pg: str, redis: str, ollamas: list[str]) -> str:
    pool = "".join(f'[[upstreams]]\nbase_url = "{u}"\n' for u in ollamas)
    keys = "".join(
        f'[[auth.keys]]\nid = "{key_id}"\nsha256 = "{hash_key(key)}"\nrpm = {LIMITED_RPM if key_id == "limited" else 1000000}\n'
        for key_id, key in KEYS.items())
    return (f'{pool}[store]\nenabled = true\nurl = "{pg}"\nchat_completions = "always"\n'
            f'[ratelimit]\nbackend = "redis"\nurl = "{redis}"\non_backend_error = "fail_closed"\n{keys}')


async def readyz(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url + "/readyz") as r:
        return r.status, await r.json()


async def until_ready(session: aiohttp.ClientSession, url: str, check: Any, within: float = 60.0) -> dict[str, Any]:
    """Poll ``/readyz`` (a probe, like a kubelet's) until ``check(status, body)``; bounded."""
    async with asyncio.timeout(within):
        while True:
            status, body = await readyz(session, url)
            if check(status, body):
                return body
            await asyncio.sleep(0.1)


async def stored(pg: str) -> dict[str, tuple[int, int]]:
    """Per key: requests counted in usage, stored completions."""
    conn = await asyncpg.connect(pg)
    try:
        usage = dict(await conn.fetch("SELECT key_id, SUM(requests) FROM usage_hourly GROUP BY key_id"))
        chats = dict(await conn.fetch("SELECT key_id, COUNT(*) FROM chat_completions GROUP BY key_id"))
    finally:
        await conn.close()
    return {k: (int(usage.get(k, 0)), int(chats.get(k, 0))) for k in KEYS}


async def test_two_replicas_through_a_replica_kill_a_redis_outage_and_a_postgres_restart(
        fake_ollama: FakeOllama, tmp_path: Path, postgres_server: str, redis_url: str,
        redis_process: RedisProcess) -> None:
    reset_postgres(postgres_server)
    second = FakeOllama()
    await second.start()
    config = tmp_path / "proxy.toml"
    config.write_text(config_text(postgres_server, redis_url, [fake_ollama.url, second.url]))
    a = ProxyProcess(config, tmp_path / "a.log")
    b = ProxyProcess(config, tmp_path / "b.log")
    await asyncio.gather(a.start(), b.start())
    load = Load([(a.url, KEYS["replica-a"]), (b.url, KEYS["replica-b"])], loops=4)
    interval = StoreConfig().flush_interval
    numbers: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            load.start()
            # Long enough that B's last interval is a part of what it answered, not all of it.
            await load.until(lambda: load.count(0) >= 40 and load.count(1) >= 40
                             and time.monotonic() - started > interval + WRITE_SLACK + 2)

            # 1. kill -9 replica B; A keeps serving.
            killed_at = time.monotonic()
            b.kill()
            await b.wait()
            a_before = load.count(0)
            await load.until(lambda: load.count(0) >= a_before + 40 and load.failures(1) >= 4)
            assert load.failures(0) == 0  # nothing on A failed
            b_lost_window = load.count(1, since=killed_at - interval - WRITE_SLACK, before=killed_at)
            b_answered_first_life = load.count(1, before=killed_at)
            restarted_at = time.monotonic()
            await b.start()
            await load.until(lambda: load.count(1, since=restarted_at) >= 20)
            numbers["kill"] = {"b_failed": dict(load.failed[1]), "b_answered_before_kill": b_answered_first_life}

            # 2. Redis down: 503 from both (fail_closed), /readyz says so; back: recovery, exact limits.
            failed_before = [load.failures(0, "503"), load.failures(1, "503")]
            redis_process.stop()
            await load.until(lambda: load.failures(0, "503") >= failed_before[0] + 5
                             and load.failures(1, "503") >= failed_before[1] + 5)
            for replica in (a, b):
                status, body = await readyz(session, replica.url)
                assert status == 503 and body["ratelimit"]["status"] == "unreachable"
            redis_process.start()
            back = time.monotonic()
            await load.until(lambda: load.count(0, since=back) >= 10 and load.count(1, since=back) >= 10)
            for replica in (a, b):
                await until_ready(session, replica.url, lambda s, body: s == 200 and body["ratelimit"]["status"] == "ok")
            statuses = []
            for i in range(LIMITED_RPM + 3):  # alternating replicas: one limit for both
                url = (a, b)[i % 2].url
                async with session.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEYS['limited']}"},
                                        json={"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}) as r:
                    statuses.append(r.status)
            assert statuses.count(200) == LIMITED_RPM and statuses.count(429) == 3, statuses
            numbers["redis"] = {"503_a": load.failures(0, "503") - failed_before[0],
                                "503_b": load.failures(1, "503") - failed_before[1], "limited": statuses}

            # 3. PostgreSQL restarted: serving goes on, writes wait, then land.
            stop_postgres(postgres_server)
            down = time.monotonic()
            try:
                await load.until(lambda: load.count(0, since=down) >= 30 and load.count(1, since=down) >= 30)
                for replica in (a, b):  # the store says it is behind (the API is still served)
                    await until_ready(session, replica.url, lambda s, body: body["store"]["ok"] is False)
            finally:
                start_postgres(postgres_server)
            for replica in (a, b):
                await until_ready(session, replica.url, lambda s, body: body["store"]["ok"] is True)
            up = time.monotonic()
            await load.until(lambda: load.count(0, since=up) >= 10 and load.count(1, since=up) >= 10)
            await load.stop()
            for replica in (a, b):  # nothing pending once the retries have run
                body = await until_ready(session, replica.url, lambda s, body: body["store"]["pending_completions"] == 0)
                assert body["store"]["dropped"] == 0
        await asyncio.gather(a.stop(), b.stop())  # SIGTERM: the last flush of usage
    finally:
        await load.stop()
        await asyncio.gather(a.stop(), b.stop())
        await second.stop()
        if redis_process.process is None:
            redis_process.start()
    rows = await stored(postgres_server)
    answered = [load.count(0), load.count(1)]
    numbers["sent"] = dict(load.sent)
    numbers["answered"] = answered
    numbers["failed"] = {i: dict(load.failed[i]) for i in (0, 1)}
    numbers["stored (usage requests, completions)"] = rows
    numbers["b_at_most_lost"] = b_lost_window
    print("\nreplica fault test:", numbers)
    usage_a, chats_a = rows["replica-a"]
    usage_b, chats_b = rows["replica-b"]
    # Usage counts the requests that reached Ollama (not the 503s of the Redis outage, nor 429s).
    assert usage_a == answered[0] and chats_a == answered[0]  # A: through every fault, nothing lost
    # B: at most its last interval (and the requests in flight, counted but never answered).
    in_flight = load.loops // 2
    assert answered[1] - b_lost_window <= usage_b <= answered[1] + in_flight
    assert answered[1] - b_lost_window <= chats_b <= answered[1] + in_flight
    assert rows["limited"] == (LIMITED_RPM, LIMITED_RPM)
    assert a.traceback_free() and b.traceback_free()
