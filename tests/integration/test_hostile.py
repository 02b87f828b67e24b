"""A table of hostile inputs against the real proxy: each gets a clear 4xx in OpenAI's envelope
(with ``param`` when a field is at fault), never a 5xx or a traceback, never reaches Ollama,
and the proxy serves the next request normally. Framing attacks go over a raw socket."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fake_ollama import FakeOllama

JSON = {"Content-Type": "application/json"}

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


def request(**fields: Any) -> bytes:
    return orjson.dumps({"model": "llama3.2", "messages": USER, **fields})


def message(**fields: Any) -> bytes:
    return orjson.dumps({"model": "llama3.2", "messages": [fields]})


def tools(*entries: Any) -> bytes:
    return request(tools=list(entries))


def nested(depth: int) -> bytes:
    return b'{"model": "llama3.2", "messages": [], "x": ' + b"[" * depth + b"]" * depth + b"}"


VALID = request().decode()

# name, raw body, status, code (None: any), param (None: none expected)
BODIES = [
    ("not JSON", b"{model: llama3.2}", 400, "invalid_json", None),
    ("truncated JSON", VALID[:-5].encode(), 400, "invalid_json", None),
    ("invalid UTF-8", VALID.replace("hi", "\udcff", 1).encode("utf-8", "surrogateescape"), 400, "invalid_json", None),
    ("a lone surrogate escape", VALID.replace("hi", "\\ud800").encode(), 400, "invalid_json", None),
    ("a byte-order mark", b"\xef\xbb\xbf" + VALID.encode(), 400, "invalid_json", None),
    ("an empty body", b"", 400, "invalid_json", None),
    ("a JSON array", b"[]", 400, "invalid_json", None),
    ("a JSON string", b'"hello"', 400, "invalid_json", None),
    ("a JSON number", b"42", 400, "invalid_json", None),
    ("JSON null", b"null", 400, "invalid_json", None),
    ("NaN", VALID[:-1].encode() + b', "temperature": NaN}', 400, "invalid_json", None),
    ("Infinity", VALID[:-1].encode() + b', "temperature": Infinity}', 400, "invalid_json", None),
    ("a number beyond double", VALID[:-1].encode() + b', "temperature": 1e400}', 400, "invalid_json", None),
    ("an integer beyond 64 bits", VALID[:-1].encode() + b', "seed": 99999999999999999999}', 400,
     "invalid_value", None),
    ("a float budget beyond 64 bits", request(max_tokens=1e30), 400, "invalid_value", None),
    ("nesting beyond max_json_depth", nested(100), 400, "json_too_deep", "x[0][0]"),
    ("nesting that would crash the parser", nested(1_000_000), 400, "json_too_large", None),
    ("a huge string", request(messages=[{"role": "user", "content": "x" * 2_000_000}]), 400,
     "string_above_max_length", "messages[0].content"),
    ("a huge array of messages", request(messages=USER * 5000), 400, "array_above_max_length", "messages"),
    ("a huge unknown field", VALID[:-1].encode() + b', "junk": [' + b"1," * 200_000 + b"1]}", 200, None, None),
    # wrong types, one per field
    *[(f"{field} of the wrong type", request(**{field: bad}), 400, None, field) for field, bad in [
        ("model", 5), ("messages", {}), ("temperature", "hot"), ("top_p", []), ("max_tokens", "10"),
        ("max_completion_tokens", 1.5), ("stream", "yes"), ("stop", 5), ("tools", {}), ("tool_choice", 5),
        ("response_format", "json"), ("seed", 1.5), ("n", "1"), ("logprobs", "yes"), ("top_logprobs", "x"),
        ("stream_options", 5), ("frequency_penalty", {}), ("presence_penalty", [1]), ("logit_bias", []),
        ("parallel_tool_calls", "no"), ("reasoning_effort", 5), ("modalities", "text"), ("store", "no"),
        ("keep_alive", []), ("think", 5), ("options", []), ("audio", 5), ("functions", 5), ("prediction", 5),
    ]],
    ("a missing model", orjson.dumps({"messages": USER}), 400, None, "model"),
    ("no messages", request(messages=[]), 400, None, "messages"),
    # roles and messages
    ("an unknown role", message(role="wizard", content="x"), 400, None, "messages[0].role"),
    ("a missing role", message(content="x"), 400, None, "messages[0].role"),
    ("a numeric role", message(role=1, content="x"), 400, None, "messages[0].role"),
    ("the legacy function role", message(role="function", content="x", name="f"), 400, None, "messages[0].role"),
    ("a message that is a string", request(messages=["hi"]), 400, None, "messages[0]"),
    ("content of the wrong type", message(role="user", content=5), 400, None, "messages[0].content"),
    ("a content part of no known type", message(role="user", content=[{"type": "video", "video": "x"}]), 400,
     None, "messages[0].content[0].type"),
    ("a tool result answering no call", message(role="tool", content="x", tool_call_id="nope"), 400, None,
     "messages[0].tool_call_id"),
    ("tool-call arguments that are not JSON", orjson.dumps({"model": "llama3.2", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                               "function": {"name": "f", "arguments": "{not json"}}]}]}),
     400, None, "messages[0].tool_calls[0].function.arguments"),
    # tool schemas
    ("a tool that is a number", tools(5), 400, None, "tools[0]"),
    ("a tool without its function", tools({"type": "function"}), 400, None, "tools[0].function"),
    ("a function without a name", tools({"type": "function", "function": {}}), 400, None, "tools[0].function.name"),
    ("parameters that are not a schema object",
     tools({"type": "function", "function": {"name": "f", "parameters": "x"}}), 400, None,
     "tools[0].function.parameters"),
    ("a non-function tool", tools({"type": "code_interpreter"}), 400, "unsupported_parameter", "tools[0].type"),
    ("more tools than max_tools", tools(*[{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]),
     400, "array_above_max_length", "tools"),
    ("a schema nested beyond max_json_depth",
     tools({"type": "function", "function": {"name": "f", "parameters": orjson.loads(b"[" * 70 + b"]" * 70)}}),
     400, "json_too_deep", None),
    # images
    ("a file: image URL", message(role="user", content=[{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]),
     400, None, "messages[0].content[0].image_url.url"),
    ("an image that is not base64", message(role="user", content=[
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@@"}}]),
     400, None, "messages[0].content[0].image_url.url"),
]  # fmt: skip


def assert_envelope(status: int, raw: bytes) -> dict[str, Any]:
    assert b"Traceback" not in raw and b'File "' not in raw
    error = orjson.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if status in (400, 405, 413):
        assert error["type"] == "invalid_request_error"
    return dict(error)


@pytest.mark.parametrize("raw, status, code, param", [r[1:] for r in BODIES], ids=[r[0] for r in BODIES])
async def test_hostile_bodies(proxy_url: str, fake_ollama: FakeOllama, raw: bytes, status: int,
                              code: str | None, param: str | None) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy_url + CHAT, data=io.BytesIO(raw),
                                headers={"Content-Type": "application/json"}) as r:
            got, body = r.status, await r.read()
        assert got == status, body[:300]
        if status == 200:
            assert fake_ollama.counts["/api/chat"] == 1
        else:
            error = assert_envelope(status, body)
            if code is not None:
                assert error["code"] == code
            if param is not None:
                assert error["param"] is not None and error["param"].startswith(param), error
            assert fake_ollama.counts["/api/chat"] == 0  # refused before Ollama
        async with session.post(proxy_url + CHAT, json={"model": "llama3.2", "messages": USER}) as r:
            assert r.status == 200  # and the proxy carries on


async def test_duplicate_keys_resolve_once_last_wins(proxy_url: str, fake_ollama: FakeOllama) -> None:
    # One parse decides for the validator, the translation and Ollama alike: no parser confusion.
    raw = b'{"model": "nope", "model": "llama3.2", "stream": true, "stream": false, "messages": [' \
          b'{"role": "user", "content": "a", "content": "b"}]}'
    async with (
        aiohttp.ClientSession() as session,
        session.post(proxy_url + CHAT, data=raw, headers={"Content-Type": "application/json"}) as r,
    ):
        assert r.status == 200 and r.content_type == "application/json"
    _, sent = fake_ollama.requests[-1]
    assert (sent["model"], sent["stream"], sent["messages"][0]["content"]) == ("llama3.2", False, "b")


async def test_http_image_urls_are_never_fetched(proxy_url: str, fake_ollama: FakeOllama) -> None:
    fetched: list[str] = []

    async def spy(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.Response(body=b"\x89PNG", content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", spy)
    async with TestServer(app) as images:
        for scheme_url in (f"http://127.0.0.1:{images.port}/cat.png", f"https://127.0.0.1:{images.port}/cat.png"):
            raw = message(role="user", content=[{"type": "image_url", "image_url": {"url": scheme_url}}])
            async with aiohttp.ClientSession() as session, session.post(proxy_url + CHAT, data=raw, headers=JSON) as r:
                error = assert_envelope(r.status, await r.read())
            assert r.status == 400 and error["code"] == "unsupported_parameter"
            assert error["param"] == "messages[0].content[0].image_url.url"
    assert fetched == [] and fake_ollama.counts["/api/chat"] == 0


async def raw_request(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)  # every row's connection gets closed
    finally:
        writer.close()


FRAMING = [
    ("Content-Length and Transfer-Encoding together",
     (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
      b"Connection: close\r\n\r\n0\r\n\r\n"), 400, False),
    ("two different Content-Lengths",
     (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
      b"Connection: close\r\n\r\n{}"), 400, False),
    ("a bad chunk size",
     (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
      b"zz\r\n{}\r\n0\r\n\r\n"), 400, None),
    ("an unknown method", b"BREW /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 400, False),
    ("a method the route lacks", b"DELETE /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
     405, True),
    ("GET on a POST route", b"GET /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 405, True),
    ("an unknown path", b"POST /v1/nothing HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
     404, True),
    ("a path escaping to Ollama's API",
     b"POST /v1/../api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 404, True),
    ("a request line of garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, False),
]  # fmt: skip


@pytest.mark.parametrize("data, status, envelope", [r[1:] for r in FRAMING], ids=[r[0] for r in FRAMING])
async def test_hostile_framing(proxy_url: str, fake_ollama: FakeOllama, data: bytes, status: int,
                               envelope: bool | None) -> None:
    raw = await raw_request(proxy_url, data)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), raw[:300]
    if envelope:  # the app answered; the protocol-level 400s are aiohttp's own plain text
        assert_envelope(status, body)
    assert b"Traceback" not in raw
    assert fake_ollama.counts["/api/chat"] == 0
