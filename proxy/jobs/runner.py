"""The batch runner: a background task per process that moves batches along and runs their lines.

Each line is sent as a real HTTP request to this proxy over loopback, with the header of
``secret.py``: the access gate makes it the batch owner's request in the ``low`` class, so a line
passes exactly the gates, limits and translation a live request of its endpoint does, and live
traffic is served first. At most ``[batches] concurrency`` lines run at a time per process.

Durability: every line is a row. A runner claims a few rows with a lease (renewed while they
run), writes each answer once (``done = 0 → 1``: a line run twice, after a crash or a lost lease,
keeps its first answer), and a batch whose rows are all done is finalized under a lease of its
own: its output and error files and its end are one transaction. A runner killed mid-batch
loses only its leases; they expire and the lines run again, here after a restart or on another
replica. A line the proxy answered 429 or 503 (busy, or the owner's rate limit) is given back
to be tried again after ``Retry-After``, not recorded as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from ..appkeys import CONFIG, STORE
from ..config import BatchesConfig, ServerConfig
from ..ids import new_id
from ..store.base import Store, StoreError
from . import records
from .lines import output_line
from .secret import BATCH_HEADER, line_header, process_secret

__all__ = ["BATCH_RUNNER", "BatchRunner", "batch_runner_ctx", "loopback_url"]

log = logging.getLogger("proxy.batches")
_RETRY = frozenset({429, 503})  # the proxy or the key was busy: the line goes back, not to the error file


def loopback_url(server: ServerConfig) -> str:
    """Where this process's own app listens, as seen from this machine."""
    host = server.host
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{server.port}" if ":" in host else f"http://{host}:{server.port}"


class BatchRunner:
    """Claims lines of active batches, runs them, finalizes batches; one per process."""

    def __init__(self, store: Store, config: BatchesConfig, base_url: str, secret: str) -> None:
        self.store = store
        self.config = config
        self.base_url = base_url
        self.owner = new_id("runner_")
        self._secret = secret
        self._inflight: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._renew_at = 0.0

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        self._task = asyncio.create_task(self._run(), name="batch-runner")

    async def stop(self) -> None:
        """Stop claiming, drop the lines in flight and hand their leases back (a graceful stop
        resumes at once on the next start; a killed one after ``lease``)."""
        tasks = [t for t in (self._task, *self._inflight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(StoreError):
            await self.store.execute("UPDATE batch_lines SET lease_until = 0, owner = '' WHERE owner = ? AND done = 0",
                                     self.owner)
        if self._session is not None:
            await self._session.close()

    def wake(self) -> None:
        """Look for work now (a batch was created or cancelled here)."""
        self._wake.set()

    @property
    def running(self) -> int:
        return len(self._inflight)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.tick()
            except StoreError as exc:
                log.warning("batch runner: the store failed (%s); trying again", exc)
            except Exception:
                log.exception("batch runner: a pass failed; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_interval):
                    await self._wake.wait()

    async def tick(self) -> None:
        """One pass over every unfinished batch."""
        store, config = self.store, self.config
        now = time.time()
        if self._inflight and now >= self._renew_at:
            await records.renew_leases(store, self.owner, now + config.lease)
            self._renew_at = now + config.lease / 3
        for batch_id, key_id, status, data in await records.active_batches(store):
            if status == "validating":
                data["in_progress_at"] = int(now)
                if not await records.set_status(store, batch_id, None, ("validating",), "in_progress", data):
                    continue
                status = "in_progress"
            if status == "cancelling":
                await self._finish(data, key_id, "cancelling", "cancelled", "batch_cancelled")
            elif status == "finalizing":  # a finalizer died mid-way: its lease runs out, then this one
                await self._finish(data, key_id, "finalizing", "completed", "")
            elif data.get("expires_at") is not None and data["expires_at"] <= now:
                await self._finish(data, key_id, "in_progress", "expired", "batch_expired")
            else:
                await self._advance(batch_id, key_id, data, now)

    async def _advance(self, batch_id: str, key_id: str, data: dict[str, Any], now: float) -> None:
        free = self.config.concurrency - len(self._inflight)
        claimed: list[records.Claimed] = []
        if free > 0:
            claimed = await records.claim_lines(self.store, batch_id, self.owner, now, self.config.lease, free)
            if claimed:
                self._renew_at = min(self._renew_at or now + self.config.lease / 3, now + self.config.lease / 3)
        for line, custom_id, body in claimed:
            task = asyncio.create_task(self._line(batch_id, key_id, data["endpoint"], line, custom_id, body))
            self._inflight[(batch_id, line)] = task
        if claimed or any(b == batch_id for b, _ in self._inflight):
            return
        *_, pending = await records.line_counts(self.store, batch_id)
        if pending == 0:
            data["finalizing_at"] = int(now)
            if await records.set_status(self.store, batch_id, None, ("in_progress",), "finalizing", data):
                await self._finish(data | {"status": "finalizing"}, key_id, "finalizing", "completed", "")

    async def _finish(self, data: dict[str, Any], key_id: str, status: str, terminal: str, code: str) -> None:
        now = time.time()
        batch_id = data["id"]
        if not await records.claim_batch(self.store, batch_id, status, now, self.config.lease):
            return  # another runner is finalizing it
        for (b, line), task in list(self._inflight.items()):
            if b == batch_id:
                task.cancel()
        await records.finalize(self.store, data, key_id, status, terminal, code, int(now),
                               lambda: new_id("batch_req_"))
        log.info("batch %s %s", batch_id, terminal)

    async def _line(self, batch_id: str, key_id: str, endpoint: str, line: int, custom_id: str, body: str) -> None:
        """Run one line through the app and keep its answer (or give it back to retry)."""
        assert self._session is not None
        headers = {BATCH_HEADER: line_header(self._secret, batch_id, key_id), "Content-Type": "application/json"}
        try:
            async with self._session.post(self.base_url + endpoint, data=body.encode(), headers=headers) as r:
                raw = await r.read()
                status, request_id = r.status, r.headers.get("X-Request-Id", "")
                retry_after = _seconds(r.headers.get("Retry-After"))
            if status in _RETRY:
                await records.release_line(self.store, batch_id, line, self.owner, time.time() + retry_after)
                return
            await records.record_result(self.store, batch_id, line, status,
                                        output_line(new_id("batch_req_"), custom_id, status, request_id, _json(raw)))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("batch %s line %d: the proxy could not be reached (%s); retrying", batch_id, line, exc)
            with contextlib.suppress(StoreError):
                await records.release_line(self.store, batch_id, line, self.owner, time.time() + 1)
        except StoreError as exc:
            log.warning("batch %s line %d: the store failed (%s); the line runs again", batch_id, line, exc)
        finally:
            self._inflight.pop((batch_id, line), None)
            self._wake.set()


def _seconds(value: str | None) -> float:
    try:
        return max(0.1, min(60.0, float(value))) if value else 1.0
    except ValueError:
        return 1.0


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"error": {"message": raw[:200].decode(errors="replace"), "type": "server_error", "param": None,
                          "code": None}}


BATCH_RUNNER = web.AppKey("batch_runner", BatchRunner)


async def batch_runner_ctx(app: web.Application) -> AsyncIterator[None]:
    """The runner for the app's life (after the store opened; stopped before it closes)."""
    config = app[CONFIG]
    runner = BatchRunner(app[STORE], config.batches, loopback_url(config.server), process_secret())
    app[BATCH_RUNNER] = runner
    runner.start()
    yield
    await runner.stop()
