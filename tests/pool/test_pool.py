"""``proxy/upstream/pool.py`` without a network: which failures move a request to the next server,
which count against the server, and which name the model a call is for."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config import Config, RoutingConfig, UpstreamServer
from proxy.errors import (
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProxyError,
    RateLimited,
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.upstream.pool import Pool, _model_in, _model_in_bytes

FIRST_BYTE = 300.0


@pytest.mark.parametrize(("error", "elapsed", "moves_on", "counts"), [
    (UpstreamUnavailable("refused"), 0.01, True, True),
    (UpstreamBusy("busy"), 0.01, True, True),
    (UpstreamError("HTTP 500"), 0.01, True, True),
    (UpstreamTimeout("connect"), 5.0, True, True),
    (UpstreamTimeout("first byte"), FIRST_BYTE, False, True),
    (ModelNotFound("gone"), 0.01, True, False),
    (InvalidRequest("bad"), 0.01, False, False),
    (RateLimited("slow down"), 0.01, False, False),
    (PermissionDenied("no"), 0.01, False, False),
    (ProxyError("a bug"), 0.01, False, False),
], ids=[
    "refused: next server, counted",
    "503: next server, counted",
    "5xx: next server, counted",
    "connect time-out (before the first-byte deadline): next server, counted",
    "first-byte time-out: not re-sent, counted",
    "404 from a server thought to have it: next server, not counted",
    "400: the client's, not counted",
    "429: the client's, not counted",
    "403: the client's, not counted",
    "not an upstream error: not counted",
])
async def test_judge(error: ProxyError, elapsed: float, moves_on: bool, counts: bool) -> None:
    config = Config(upstreams=(UpstreamServer("a", "http://127.0.0.1:1"), UpstreamServer("b", "http://127.0.0.1:2")),
                    routing=RoutingConfig(eject_after=1))
    pool = Pool(config)
    try:
        server = pool.servers[0]
        assert pool._judge(server, error, elapsed, FIRST_BYTE) is moves_on
        assert (server.health.ejections == 1) is counts
    finally:
        await pool.close()


@pytest.mark.parametrize(("path", "body", "model"), [
    ("/api/chat", {"model": "llama3.2"}, "llama3.2"),
    ("/api/show", {"name": "qwen3:8b"}, "qwen3:8b"),
    ("/api/show", {"model": "a", "name": "b"}, "a"),
    ("/api/chat", {"name": "qwen3:8b"}, None),
    ("/api/chat", {"model": 7}, None),
    ("/api/chat", {"model": ""}, None),
    ("/api/tags", None, None),
], ids=["model", "show's older name", "model before name", "name only counts for show", "not a string",
        "empty", "no body"])
def test_model_in(path: str, body: dict[str, Any] | None, model: str | None) -> None:
    assert _model_in(path, body) == model


@pytest.mark.parametrize(("path", "data", "model"), [
    ("/api/chat", b'{"model": "llama3.2", "messages": []}', "llama3.2"),
    ("/api/show?verbose=1", b'{"name": "qwen3:8b"}', "qwen3:8b"),
    ("/api/chat", b'{"model": ', None),
    ("/api/chat", b'["model"]', None),
    ("/api/tags", None, None),
], ids=["JSON body", "show with a query", "not JSON", "not an object", "no body"])
def test_model_in_bytes(path: str, data: bytes | None, model: str | None) -> None:
    assert _model_in_bytes(path, data) == model
