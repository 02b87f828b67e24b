"""``proxy/upstream/client.py`` with the client side mocked by ``aioresponses``: how Ollama's HTTP
errors, refused connections and time-outs become the proxy's error family, and the happy path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from proxy.config import Timeouts, UpstreamConfig
from proxy.errors import (
    UPSTREAM_FAULT_MESSAGE,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProxyError,
    RateLimited,
    UpstreamBusy,
    UpstreamError,
    UpstreamFault,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.upstream.client import Deadline, IdleTimer, OllamaClient, error_from_status

BASE = "http://ollama.test:11434"
CHAT = BASE + "/api/chat"
BODY = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}], "stream": False}
NGINX_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
             "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")  # fmt: skip

# (id, status, Ollama's message, requested model, class, status, param, code, message)
MAPPING = [
    ("404 is ModelNotFound with param model", 404, 'model "llama9" not found, try pulling it first', "llama9",
     ModelNotFound, 404, "model", "model_not_found", 'model "llama9" not found, try pulling it first'),
    ("404 without a message names the model", 404, "", "llama9",
     ModelNotFound, 404, "model", "model_not_found", "The model `llama9` does not exist."),
    ("404 without a message or model", 404, "", None,
     ModelNotFound, 404, "model", "model_not_found", "The model does not exist."),
    ("400 does not support tools points at tools", 400,
     "registry.ollama.ai/library/gemma2:2b does not support tools", "gemma2:2b",
     InvalidRequest, 400, "tools", None, "registry.ollama.ai/library/gemma2:2b does not support tools"),
    ("400 does not support thinking points at reasoning_effort", 400, '"llama3.2" does not support thinking',
     "llama3.2", InvalidRequest, 400, "reasoning_effort", None, '"llama3.2" does not support thinking'),
    ("400 about top_logprobs points at top_logprobs", 400, "top_logprobs must be between 0 and 20", None,
     InvalidRequest, 400, "top_logprobs", None, "top_logprobs must be between 0 and 20"),
    ("400 with another message keeps it without param", 400, "invalid options: foo", None,
     InvalidRequest, 400, None, None, "invalid options: foo"),
    ("a client 4xx Ollama names keeps its status", 422, "unprocessable", None,
     InvalidRequest, 422, None, None, "unprocessable"),
    ("a 4xx that is not the client's doing is Ollama's fault", 405, "method not allowed", None,
     UpstreamError, 502, None, "upstream_error", "Ollama answered HTTP 405: method not allowed"),
    ("401 means the proxy's access to Ollama is wrong: 502", 401, "unauthorized", None,
     UpstreamError, 502, None, "upstream_error", "Ollama answered HTTP 401: unauthorized"),
    ("403 is PermissionDenied", 403, "remote inference is disabled", None,
     PermissionDenied, 403, None, None, "remote inference is disabled"),
    ("429 is RateLimited", 429, "too many requests", None,
     RateLimited, 429, None, "rate_limit_exceeded", "too many requests"),
    ("invalid format points at response_format", 400, "invalid format: expected \"json\" or a JSON schema", None,
     InvalidRequest, 400, "response_format", None, "invalid format: expected \"json\" or a JSON schema"),
    ("a message merely mentioning format keeps no param", 400, "invalid model name format", None,
     InvalidRequest, 400, None, None, "invalid model name format"),
    ("503 is UpstreamBusy", 503, "server busy, please try again.  maximum pending requests exceeded", None,
     UpstreamBusy, 503, None, "upstream_busy", "server busy, please try again.  maximum pending requests exceeded"),
    ("503 without a message", 503, "", None,
     UpstreamBusy, 503, None, "upstream_busy", "Ollama is busy; try again shortly."),
    # 5xx: the text (last column) is the logged detail; the client sees the generic message
    ("500 is UpstreamFault 502, Ollama's message kept for the log", 500,
     "llama runner process has terminated: signal: killed", "llama3.2", UpstreamFault, 502, None, "upstream_error",
     "HTTP 500: llama runner process has terminated: signal: killed"),
    ("500 without a message", 500, "", None, UpstreamFault, 502, None, "upstream_error", "HTTP 500"),
    ("502 from a proxy in front of Ollama", 502, "", None, UpstreamFault, 502, None, "upstream_error", "HTTP 502"),
    ("a 4xx without Ollama's message is Ollama's fault", 400, "", None,
     UpstreamError, 502, None, "upstream_error", "Ollama answered HTTP 400"),
]  # fmt: skip


@pytest.mark.parametrize(
    "status, message, model, cls, http_status, param, code, text",
    [r[1:] for r in MAPPING], ids=[r[0] for r in MAPPING],
)  # fmt: skip
def test_error_from_status(status: int, message: str, model: str | None, cls: type[ProxyError], http_status: int,
                           param: str | None, code: str | None, text: str) -> None:
    error = error_from_status(status, message, model=model)
    assert type(error) is cls
    assert (error.status, error.param, error.code, shown(error)) == (http_status, param, code, text)


def shown(error: ProxyError) -> str:
    """The message, or for an upstream fault its logged detail (the message is then generic)."""
    if isinstance(error, UpstreamFault):
        assert error.message == UPSTREAM_FAULT_MESSAGE and error.type == "server_error"
        assert error.detail in error.log_text
        return error.detail
    return error.message


def test_busy_carries_retry_after() -> None:
    assert error_from_status(503, "server busy").retry_after == 1
    assert error_from_status(500, "boom").retry_after is None


@pytest.fixture
async def client() -> AsyncIterator[OllamaClient]:
    ollama = OllamaClient(UpstreamConfig(base_url=BASE + "/", timeouts=Timeouts(connect=1, first_byte=5, idle=5)))
    yield ollama
    await ollama.close()


class _FinishedUpload:
    output_size = 0


class MockedResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without the ``stream_writer`` argument aiohttp 3.14
    requires (pnuckowski/aioresponses#289); give it an upload that has already finished."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _FinishedUpload())
        super().__init__(method, url, **kwargs)


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


# (id, status, body, content type, class, status, param, code, message)
WIRE = [
    ("Ollama's 404 JSON", 404, b'{"error":"model \\"llama9\\" not found, try pulling it first"}', "application/json",
     ModelNotFound, 404, "model", "model_not_found", 'model "llama9" not found, try pulling it first'),
    ("a 404 HTML page names the requested model", 404, b"<html><body>404 page not found</body></html>", "text/html",
     ModelNotFound, 404, "model", "model_not_found", "The model `llama3.2` does not exist."),
    ("Ollama's 400 about tools", 400, b'{"error":"registry.ollama.ai/library/llama3.2:latest does not support tools"}',
     "application/json", InvalidRequest, 400, "tools", None,
     "registry.ollama.ai/library/llama3.2:latest does not support tools"),
    ("Ollama's 503", 503, b'{"error":"server busy, please try again.  maximum pending requests exceeded"}',
     "application/json", UpstreamBusy, 503, None, "upstream_busy",
     "server busy, please try again.  maximum pending requests exceeded"),
    ("Ollama's 500 JSON", 500, b'{"error":"llama runner process has terminated: exit status 2"}', "application/json",
     UpstreamFault, 502, None, "upstream_error", "HTTP 500: llama runner process has terminated: exit status 2"),
    ("an nginx 502 HTML page gives a message without HTML", 502, NGINX_502.encode(), "text/html",
     UpstreamFault, 502, None, "upstream_error", "HTTP 502"),
    ("a 500 HTML page gives a message without HTML", 500, b"<h1>Internal Server Error</h1>", "text/html",
     UpstreamFault, 502, None, "upstream_error", "HTTP 500"),
    ("a JSON error that is not a string is ignored", 500, b'{"error":{"nested":true}}', "application/json",
     UpstreamFault, 502, None, "upstream_error", "HTTP 500"),
    ("an empty 500 body", 500, b"", "application/json",
     UpstreamFault, 502, None, "upstream_error", "HTTP 500"),
]  # fmt: skip


@pytest.mark.parametrize(
    "status, body, content_type, cls, http_status, param, code, text",
    [r[1:] for r in WIRE], ids=[r[0] for r in WIRE],
)  # fmt: skip
async def test_http_errors_from_the_wire(client: OllamaClient, mocked: aioresponses, status: int, body: bytes,
                                         content_type: str, cls: type[ProxyError], http_status: int,
                                         param: str | None, code: str | None, text: str) -> None:
    mocked.post(CHAT, status=status, body=body, content_type=content_type, response_class=MockedResponse)
    with pytest.raises(ProxyError) as info:
        await client.request_json("POST", "/api/chat", BODY)
    error = info.value
    assert type(error) is cls
    assert (error.status, error.param, error.code, shown(error)) == (http_status, param, code, text)
    assert "<" not in error.message


FAILURES = [
    ("a refused connection is UpstreamUnavailable", aiohttp.ClientConnectionError("Connection refused"),
     UpstreamUnavailable, 502, "upstream_unreachable", "Could not connect to Ollama."),
    ("a connection closed before the answer is UpstreamError", aiohttp.ServerDisconnectedError(),
     UpstreamError, 502, "upstream_error", "Ollama closed the connection before the answer was complete."),
    ("aiohttp's connect time-out is UpstreamTimeout", aiohttp.ConnectionTimeoutError(),
     UpstreamTimeout, 504, "upstream_timeout", "Could not connect to Ollama in time."),
    ("another client error is UpstreamError", aiohttp.ClientPayloadError("bad payload"),
     UpstreamError, 502, "upstream_error", "The request to Ollama failed."),
]  # fmt: skip


@pytest.mark.parametrize(
    "exception, cls, status, code, text", [r[1:] for r in FAILURES], ids=[r[0] for r in FAILURES]
)
async def test_connection_failures(client: OllamaClient, mocked: aioresponses, exception: Exception,
                                   cls: type[ProxyError], status: int, code: str, text: str) -> None:
    mocked.post(CHAT, exception=exception)
    with pytest.raises(ProxyError) as info:
        await client.request_json("POST", "/api/chat", BODY)
    error = info.value
    assert type(error) is cls
    assert (error.status, error.code, error.message, error.param) == (status, code, text, None)
    assert error.__suppress_context__  # the aiohttp exception stays in the log, not in the error


async def test_first_byte_deadline_is_an_upstream_timeout(client: OllamaClient, mocked: aioresponses) -> None:
    async def slow(url: URL, **kwargs: Any) -> CallbackResult:
        await asyncio.sleep(5)
        return CallbackResult(payload={}, response_class=MockedResponse)

    mocked.post(CHAT, callback=slow)
    with pytest.raises(UpstreamTimeout, match=r"within 0\.05 s"):
        await client.request_json("POST", "/api/chat", BODY, first_byte=0.05)


async def test_request_json_happy_path(client: OllamaClient, mocked: aioresponses) -> None:
    answer = {"model": "llama3.2", "created_at": "2025-06-01T12:00:00Z",
              "message": {"role": "assistant", "content": "Grüße 👋"}, "done_reason": "stop", "done": True,
              "prompt_eval_count": 26, "eval_count": 4}  # fmt: skip
    mocked.post(CHAT, status=200, body=orjson.dumps(answer), content_type="application/json",
                response_class=MockedResponse)
    assert await client.request_json("POST", "/api/chat", BODY) == answer
    [call] = mocked.requests[("POST", URL(CHAT))]
    assert call.kwargs["data"] == orjson.dumps(BODY)
    assert call.kwargs["headers"] == {"Content-Type": "application/json"}


async def test_request_json_without_body(client: OllamaClient, mocked: aioresponses) -> None:
    mocked.get(BASE + "/api/version", status=200, payload={"version": "0.12.6"}, response_class=MockedResponse)
    assert await client.request_json("GET", "/api/version") == {"version": "0.12.6"}
    [call] = mocked.requests[("GET", URL(BASE + "/api/version"))]
    assert call.kwargs["data"] is None and call.kwargs["headers"] is None


async def test_request_json_refuses_a_body_that_is_not_json(client: OllamaClient, mocked: aioresponses) -> None:
    mocked.post(CHAT, status=200, body=b"<html>hello</html>", content_type="text/html", response_class=MockedResponse)
    with pytest.raises(UpstreamError, match="not JSON") as info:
        await client.request_json("POST", "/api/chat", BODY)
    assert type(info.value) is UpstreamMalformed and info.value.status == 502  # same envelope, its own kind


async def test_open_yields_the_response_to_read_as_it_arrives(client: OllamaClient, mocked: aioresponses) -> None:
    ndjson = (b'{"model":"llama3.2","message":{"role":"assistant","content":"Hi"},"done":false}\n'
              b'{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true}\n')  # fmt: skip
    mocked.post(CHAT, status=200, body=ndjson, content_type="application/x-ndjson", response_class=MockedResponse)
    async with client.open("POST", "/api/chat", {**BODY, "stream": True}) as response:
        assert response.status == 200
        with client.idle_timer() as timer:
            reads = [data async for data in _reads(timer, response)]
        assert b"".join(reads) == ndjson


async def _reads(timer: IdleTimer, response: Any) -> Any:
    while data := await timer.read(response.content):
        yield data


async def test_a_body_orjson_cannot_write_is_a_400_before_any_request(client: OllamaClient,
                                                                     mocked: aioresponses) -> None:
    # orjson reads 1e21 as a float; the integer reader turns it into an int beyond 64 bits.
    with pytest.raises(InvalidRequest) as info:
        await client.request_json("POST", "/api/chat", {**BODY, "options": {"seed": 2**70}})
    assert (type(info.value), info.value.status, info.value.code) == (InvalidRequest, 400, "invalid_value")
    assert not mocked.requests


class StalledReader:
    """A body that sends ``chunks`` then nothing until ``release`` is set."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.release = asyncio.Event()

    async def readany(self) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        await self.release.wait()
        return b""


async def test_idle_timer_ends_a_stalled_read_with_upstream_timeout() -> None:
    reader = StalledReader(b"a")
    with IdleTimer(0.05) as timer:
        assert await timer.read(reader) == b"a"  # type: ignore[arg-type]
        with pytest.raises(UpstreamTimeout, match="0.05 s"):
            await timer.read(reader)  # type: ignore[arg-type]
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_idle_timer_does_not_count_time_spent_between_reads() -> None:
    reader = StalledReader(b"a", b"b")
    with IdleTimer(0.05) as timer:
        assert await timer.read(reader) == b"a"  # type: ignore[arg-type]
        await asyncio.sleep(0.15)  # the caller busy writing to a slow client, not waiting on Ollama
        assert await timer.read(reader) == b"b"  # type: ignore[arg-type]


async def test_idle_timer_lets_another_cancellation_through() -> None:
    reader = StalledReader()
    started = asyncio.Event()

    async def consume() -> None:
        with IdleTimer(30) as timer:
            started.set()
            await timer.read(reader)  # type: ignore[arg-type]

    task = asyncio.create_task(consume())
    await started.wait()
    await asyncio.sleep(0)
    task.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_deadline_turns_its_own_cancellation_into_expired() -> None:
    deadline = Deadline(0.01)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.Event().wait()  # nothing else would ever wake this
    assert deadline.expired()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_deadline_leaves_another_cancellation_alone() -> None:
    started = asyncio.Event()
    verdicts: list[bool] = []

    async def wait() -> None:
        deadline = Deadline(30)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            verdicts.append(deadline.expired())
            raise

    task = asyncio.create_task(wait())
    await started.wait()
    task.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await task
    assert verdicts == [False]


async def test_a_cookie_ollama_sets_never_rides_on_the_next_request(aiohttp_server: Any) -> None:
    """One session serves every client: a ``Set-Cookie`` in one answer (an auth front of Ollama,
    say) must not come back on anyone's later request."""
    seen: list[str | None] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"message": {"role": "assistant", "content": "hi"}, "done": True})
        response.set_cookie("session", "client-a-secret")
        return response

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    server = await aiohttp_server(app)
    # By name: aiohttp's jar keeps no cookie of a bare IP address.
    ollama = OllamaClient(UpstreamConfig(base_url=f"http://localhost:{server.port}/",
                                         timeouts=Timeouts(connect=1, first_byte=5, idle=5)))
    try:
        for _ in range(2):
            assert (await ollama.request_json("POST", "/api/chat", {"model": "m"}))["done"] is True
    finally:
        await ollama.close()
    assert seen == [None, None]
