"""Every upstream fault, end to end: the proxy answers each within its configured time-out (set
small here; the bound asserted is that time-out plus generous slack, never a speed), logs it
exactly once with the request id, closes the upstream request, gives its admission slot back,
and serves the next request normally."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from proxy.appkeys import ADMISSION, CLIENT
from tests.conftest import AppFactory
from tests.fake_ollama import FakeOllama, Reply

SLACK = 5.0  # seconds added to a configured time-out: a bound, not a speed claim
USER = [{"role": "user", "content": "hi"}]
BUSY = "server busy, please try again.  maximum pending requests exceeded"  # Ollama's ErrMaxQueue

Start = Callable[..., Awaitable[tuple[str, web.Application]]]


@pytest.fixture
def start_proxy(app_factory: AppFactory) -> Start:
    """``proxy_factory`` that also hands back the app (for its admission and pool)."""
    return app_factory


def frames(raw: bytes) -> list[Any]:
    """The SSE events of a whole stream body: JSON objects, and "[DONE]"."""
    out: list[Any] = []
    for event in raw.split(b"\n\n"):
        if event.startswith(b"data: "):
            data = event[6:]
            out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out


async def post(url: str, rid: str, stream: bool) -> tuple[int, CIMultiDict[str], bytes]:
    body = {"model": "llama3.2", "messages": USER, "stream": stream}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/chat/completions", json=body, headers={"X-Request-Id": rid}) as r,
    ):
        return r.status, CIMultiDict(r.headers), await r.read()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fault_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("proxy")]


# name, reply, config, stream, status, code, a phrase of the message, the time-out that bounds it
BEFORE_HEADERS = [
    ("refused connection", None, {"upstream": {"timeouts": {"connect": 0.5}}}, False,
     502, "upstream_unreachable", "Could not connect", 0.5),
    ("refused connection, streaming", None, {"upstream": {"timeouts": {"connect": 0.5}}}, True,
     502, "upstream_unreachable", "Could not connect", 0.5),
    ("hang before the headers", Reply(hang_before_headers=True), {"upstream": {"timeouts": {"first_byte": 0.3}}},
     True, 504, "upstream_timeout", "0.3 s", 0.3),
    ("hang without answering (non-streaming)", Reply(hang=True), {"upstream": {"timeouts": {"first_byte": 0.3}}},
     False, 504, "upstream_timeout", "0.3 s", 0.3),
    # Ollama's own failures: OpenAI's generic text and the request id; Ollama's text only in the log
    ("HTTP 500 with Ollama's error", Reply(status=500, error="llama runner process has terminated"), {},
     True, 502, "upstream_error",
     "The model server had an error while processing your request. (request id fault-upstream_error-502)", 0.0),
    ("an HTML error page", Reply(status=502, html_error=True), {}, False, 502, "upstream_error",
     "The model server had an error", 0.0),
    ("a non-streamed answer cut off midway (it did connect)", Reply(die_after_lines=2), {}, False,
     502, "upstream_error", "Ollama closed the connection before the answer was complete", 0.0),
    ("Ollama's queue is full", Reply(status=503, error=BUSY), {}, True, 503, "upstream_busy", BUSY, 0.0),
]  # fmt: skip


@pytest.mark.parametrize("reply, toml, stream, status, code, phrase, timeout",
                         [r[1:] for r in BEFORE_HEADERS], ids=[r[0] for r in BEFORE_HEADERS])
async def test_faults_before_the_headers_are_an_error_status(
    start_proxy: Start, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture,
    reply: Reply | None, toml: dict[str, Any], stream: bool, status: int, code: str, phrase: str, timeout: float,
) -> None:
    upstream = f"http://127.0.0.1:{closed_port()}" if reply is None else None
    url, app = await start_proxy(toml, upstream_url=upstream)
    if reply is not None:
        fake_ollama.push(reply)
    rid = f"fault-{code}-{status}"
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    got, headers, raw = await post(url, rid, stream)
    assert time.monotonic() - started < timeout + SLACK
    error = orjson.loads(raw)["error"]
    assert (got, error["code"]) == (status, code)
    assert phrase in error["message"] and "<html" not in error["message"]
    assert headers["X-Request-Id"] == rid
    if status == 503:
        assert headers["Retry-After"] == "1"  # the SDKs retry a 503 and honour Retry-After
    records = fault_records(caplog)
    assert len(records) == 1 and rid in records[0].getMessage()
    if reply is not None and reply.status >= 500 and reply.status != 503:
        assert error["type"] == "server_error"
        assert reply.error is None or (reply.error not in error["message"] and reply.error in records[0].getMessage())
    assert app[ADMISSION].active == 0 and not app[CLIENT].session.connector._acquired  # type: ignore[union-attr]
    if reply is not None:
        fake_ollama.push(Reply(content="fine again"))
        got, _, raw = await post(url, "after", False)
        assert got == 200 and orjson.loads(raw)["choices"][0]["message"]["content"] == "fine again"


MID_STREAM = [
    ("reset mid-stream", Reply(chunks=["a", "b", "c"], die_after_lines=2), {}, "upstream_error", 0.0),
    ("a malformed line", Reply(chunks=["a", "b", "c"], garbage_after_lines=2), {}, "upstream_error", 0.0),
    ("Ollama's error line", Reply(chunks=["a", "b", "c"], error_after_lines=2, error="CUDA error"), {},
     "upstream_error", 0.0),
    ("a stall between lines", Reply(chunks=["a", "b", "c"], hang=True), {"upstream": {"timeouts": {"idle": 0.3}}},
     "upstream_timeout", 0.3),
    ("a 1 MB line beyond max_line_bytes", Reply(chunks=["a", "b"], huge_line_bytes=1 << 20),
     {"upstream": {"max_line_bytes": 65536}}, "upstream_error", 0.0),
]  # fmt: skip


@pytest.mark.parametrize("reply, toml, code, timeout", [r[1:] for r in MID_STREAM], ids=[r[0] for r in MID_STREAM])
async def test_faults_mid_stream_end_it_with_an_error_frame(
    start_proxy: Start, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture,
    reply: Reply, toml: dict[str, Any], code: str, timeout: float,
) -> None:
    url, app = await start_proxy(toml)
    fake_ollama.push(reply)
    rid = f"midstream-{code}"
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    status, _, raw = await post(url, rid, True)
    assert time.monotonic() - started < timeout + SLACK
    events = frames(raw)
    assert status == 200 and events[-1]["error"]["code"] == code and "[DONE]" not in events
    contents = [e["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert contents in (["a", "b"], ["a"], [])  # what arrived before the fault, in order
    records = fault_records(caplog)
    assert len(records) == 1 and rid in records[0].getMessage()
    # Everything is given back before the client sees the end of the stream.
    assert app[ADMISSION].active == 0 and not app[CLIENT].session.connector._acquired  # type: ignore[union-attr]
    if code == "upstream_timeout":
        await asyncio.wait_for(fake_ollama.stream_closed.wait(), SLACK)  # the stalled request is closed
    fake_ollama.push(Reply(chunks=["fine", " again"]))
    status, _, raw = await post(url, "after", True)
    assert status == 200 and frames(raw)[-1] == "[DONE]"


async def test_a_1_mb_line_within_the_limit_passes_whole(start_proxy: Start, fake_ollama: FakeOllama) -> None:
    url, _ = await start_proxy()
    fake_ollama.push(Reply(chunks=["a"], huge_line_bytes=1 << 20))
    status, _, raw = await post(url, "huge", True)
    events = frames(raw)
    assert status == 200 and events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"]["content"] == "x" * (1 << 20)


async def test_a_line_cut_off_by_a_dying_server_ends_with_an_error_frame(
    start_proxy: Start, caplog: pytest.LogCaptureFixture,
) -> None:
    async def truncating(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        line = {"model": "m", "created_at": "", "message": {"role": "assistant", "content": "a"}, "done": False}
        await response.write(orjson.dumps(line) + b"\n" + b'{"model":"m","message":{"role":"assis')
        assert request.transport is not None
        request.transport.close()  # no terminating chunk, half a line
        return response

    dying = web.Application()
    dying.router.add_post("/api/chat", truncating)
    async with TestServer(dying) as upstream:
        url, app = await start_proxy(upstream_url=f"http://127.0.0.1:{upstream.port}")
        caplog.set_level(logging.INFO)
        status, _, raw = await post(url, "truncated", True)
    events = frames(raw)
    assert status == 200 and events[0]["choices"][0]["delta"]["content"] == "a"
    assert events[-1]["error"]["code"] == "upstream_error"
    assert len(fault_records(caplog)) == 1 and app[ADMISSION].active == 0
