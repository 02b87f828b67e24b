"""Scaffolding shared by the two reference proxies (bytes-only and naive).

Both must differ from each other only in how they relay the upstream body, so app setup,
the OpenAI→Ollama request rewrite and the process lifecycle live here, once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bench._common import LOOPBACK, check_loopback, install_uvloop, raise_nofile, wait_for_stop

SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
CHAT_URL: web.AppKey[str] = web.AppKey("chat_url", str)
JSON_HEADERS = {"Content-Type": "application/json"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def to_ollama(body: dict[str, Any]) -> tuple[bytes, bool]:
    """Minimal OpenAI→Ollama body rewrite (cheap; both references pay the same cost)."""
    stream = bool(body.get("stream", False))
    up: dict[str, Any] = {
        "model": body.get("model"),
        "messages": body.get("messages") or [],
        "stream": stream,
    }
    if body.get("max_tokens") is not None:
        up["options"] = {"num_predict": body["max_tokens"]}
    return orjson.dumps(up), stream


async def health(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def build_app(chat: Handler, upstream: str) -> web.Application:
    """aiohttp app with one shared ClientSession (no connection limit) to the upstream."""
    app = web.Application()
    app[CHAT_URL] = upstream.rstrip("/") + "/api/chat"

    async def session_ctx(app: web.Application) -> Any:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        app[SESSION] = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        )
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/health", health)
    return app


async def _serve(app: web.Application, host: str, port: int, lifetime: float) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    try:
        await wait_for_stop(lifetime)
    finally:
        await runner.cleanup()


def main(chat: Handler, description: str, argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--host", default=LOOPBACK)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument(
        "--upstream",
        default=os.environ.get("OLLAMA_BASE_URL", "http://127.0.0.1:11434"),
        help="Ollama base URL (default: $OLLAMA_BASE_URL)",
    )
    ap.add_argument("--lifetime", type=float, default=3600.0, help="exit by itself after S seconds")
    ap.add_argument("--no-uvloop", action="store_true")
    args = ap.parse_args(argv)
    raise_nofile()
    install_uvloop(not args.no_uvloop)
    app = build_app(chat, args.upstream)
    asyncio.run(_serve(app, check_loopback(args.host), args.port, args.lifetime))
