"""Ollama-native pass-through: off by default; when on, listed ``/api/*`` paths are relayed byte for
byte and as they arrive, model management is refused unless listed, all else is 404."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama, Reply

ON = {"passthrough": {"enabled": True}}


async def call(url: str, method: str = "GET", json: Any = None) -> tuple[int, str, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=json) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.read()


async def test_off_by_default(proxy_url: str, fake_ollama: FakeOllama) -> None:
    status, _, body = await call(proxy_url + "/api/tags")
    assert status == 404
    assert orjson.loads(body)["error"]["code"] == "unknown_url"
    assert fake_ollama.counts["/api/tags"] == 0


async def test_listed_paths_are_relayed_byte_for_byte(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory(ON)
    direct = await call(fake_ollama.url + "/api/tags")
    relayed = await call(url + "/api/tags")
    assert relayed == direct  # same status, content type and bytes
    assert await call(url + "/api/version") == await call(fake_ollama.url + "/api/version")
    show = {"model": "hf.co/org/repo:Q4_K_M"}
    assert await call(url + "/api/show", "POST", show) == await call(
        fake_ollama.url + "/api/show", "POST", show
    )


async def test_ollamas_own_errors_stay_ollamas(proxy_factory: ProxyFactory) -> None:
    url = await proxy_factory(ON)
    status, content_type, body = await call(url + "/api/show", "POST", {"model": "nope"})
    assert status == 404
    assert content_type.startswith("application/json")
    assert orjson.loads(body) == {"error": "model 'nope:latest' not found"}


async def test_streams_are_relayed_as_they_arrive(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory(ON)
    fake_ollama.push(Reply(chunks=["first", "never"], hang=True))  # one line, then nothing
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            url + "/api/generate", json={"model": "llama3.2", "prompt": "hi"}
        )
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-ndjson"
        first = await asyncio.wait_for(response.content.readline(), 5)  # not held back for more
        assert orjson.loads(first)["response"] == "first"
        response.close()  # the client goes away: the relay closes its upstream request
    await asyncio.wait_for(fake_ollama.stream_closed.wait(), 5)


async def test_a_whole_stream_arrives_intact(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory(ON)
    fake_ollama.push(Reply(chunks=["a", "b", "c"]))
    status, _, body = await call(
        url + "/api/chat",
        "POST",
        {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]},
    )
    lines = [orjson.loads(line) for line in body.splitlines()]
    assert status == 200
    assert [line["message"]["content"] for line in lines] == ["a", "b", "c", ""]
    assert lines[-1]["done"] is True


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/pull"),
        ("POST", "/api/push"),
        ("POST", "/api/create"),
        ("POST", "/api/copy"),
        ("DELETE", "/api/delete"),
        ("HEAD", "/api/blobs/sha256:abc"),
    ],
    ids=["pull", "push", "create", "copy", "delete", "blobs"],
)
async def test_model_management_is_refused_unless_listed(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, method: str, path: str
) -> None:
    url = await proxy_factory(ON)
    status, _, body = await call(
        url + path, method, {"model": "llama3.2"} if method != "HEAD" else None
    )
    assert status == 403
    if method != "HEAD":
        assert orjson.loads(body)["error"]["type"] == "permission_error"
    assert fake_ollama.counts[path] == 0


async def test_a_listed_management_path_is_relayed(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory({"passthrough": {"enabled": True, "allowed_paths": ["/api/pull"]}})
    status, _, body = await call(url + "/api/pull", "POST", {"model": "llama3.2"})
    assert fake_ollama.counts["/api/pull"] == 1
    assert (status, body) == (
        404,
        b"404 page not found",
    )  # the stand-in has no pull: its answer, verbatim
    assert (await call(url + "/api/tags"))[0] == 404  # and only what is listed


async def test_unlisted_paths_are_404(proxy_factory: ProxyFactory, fake_ollama: FakeOllama) -> None:
    url = await proxy_factory(ON)
    status, _, body = await call(url + "/api/nonsense")
    assert status == 404
    assert orjson.loads(body)["error"]["code"] == "unknown_url"
    assert fake_ollama.counts["/api/nonsense"] == 0


async def test_ollama_down_is_502_in_the_envelope(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory(ON)
    await fake_ollama.stop()
    status, _, body = await call(url + "/api/tags")
    assert status == 502
    assert orjson.loads(body)["error"]["code"] == "upstream_unreachable"


# ---- issue 8, item 1: one canonical path --------------------------------------------------------


async def raw(url: str, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """A request with ``target`` exactly as written (aiohttp's client would normalise it)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    writer.write(head.encode() + body)
    try:
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


ESCAPES = [
    ("encoded dots to pull", "POST", "/api/chat/%2e%2e/pull"),
    ("encoded slashes", "POST", "/api/chat%2F..%2Fpull"),
    ("double-encoded dots", "POST", "/api/chat/%252e%252e/pull"),
    ("out of /api and past a base_url prefix", "POST", "/api/chat/%2e%2e/%2e%2e/internal/admin"),
    ("delete with DELETE", "DELETE", "/api/chat/%2e%2e/delete"),
    ("plain dot-dot", "POST", "/api/chat/../create"),
    ("a dot segment", "POST", "/api/chat/./copy"),
    ("an empty segment", "POST", "/api//chat"),
    ("an encoded backslash", "POST", "/api/chat%5C..%5Cpush"),
    ("an escaped letter", "POST", "/api/ch%61t"),
    ("a query with a raw fragment", "GET", "/api/tags?x=#y"),
]  # fmt: skip


@pytest.mark.parametrize("method, target", [r[1:] for r in ESCAPES], ids=[r[0] for r in ESCAPES])
@pytest.mark.parametrize("prefix", ["", "/ollama"], ids=["base_url", "base_url with a path"])
async def test_paths_that_could_escape_the_allow_list_are_refused(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, method: str, target: str, prefix: str
) -> None:
    url = await proxy_factory(ON, upstream_url=fake_ollama.url + prefix)
    status, body = await raw(url, method, target, b'{"model": "llama3.2"}')
    assert status == 400, body
    assert orjson.loads(body)["error"]["code"] == "invalid_path"
    assert fake_ollama.targets == []  # nothing reached Ollama


async def test_the_upstream_target_is_the_checked_string_and_the_query_is_byte_for_byte(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory(ON, upstream_url=fake_ollama.url + "/")
    assert (await raw(url, "GET", "/api/tags?d=%23x&e=1&f=a%2Fb"))[0] == 200
    assert (await raw(url, "GET", "/api/version"))[0] == 200
    assert fake_ollama.targets == [("GET", "/api/tags?d=%23x&e=1&f=a%2Fb"), ("GET", "/api/version")]


# ---- issue 8, item 2: Ollama reads exactly what was checked -------------------------------------

GATED = {"passthrough": {"enabled": True}, "limits": {"denied_models": ["secret*"]}}
CHAT = b'"messages": [{"role": "user", "content": "hi"}]'

BYPASSES = [
    ("a second key differing by case", "/api/chat", b'{"model": "llama3.2", "Model": "secret", ' + CHAT + b"}",
     400, "duplicate_key"),
    ("one capitalised key", "/api/chat", b'{"Model": "secret", ' + CHAT + b"}", 403, "model_not_allowed"),
    ("an escaped key", "/api/chat", b'{"mod\\u0065l": "secret", ' + CHAT + b"}", 403, "model_not_allowed"),
    ("a Kelvin sign folding to k", "/api/generate", b'{"model": "llama3.2", "\\u212aeep_alive": -1}', 400,
     "integer_above_max_value"),
    ("show by name", "/api/show", b'{"name": "secret"}', 404, "model_not_found"),
    ("show by capitalised name", "/api/show", b'{"NAME": "secret"}', 404, "model_not_found"),
    ("a message key differing by case", "/api/chat",
     b'{"model": "llama3.2", "messages": [{"role": "user", "content": "a", "Content": "b"}]}', 400, "duplicate_key"),
    ("a hardware knob", "/api/chat", b'{"model": "llama3.2", "options": {"num_gpu": 1}, ' + CHAT + b"}", 400,
     "option_not_allowed"),
    ("nesting beyond max_json_depth", "/api/chat", b'{"model": "llama3.2", "x": ' + b"[" * 100 + b"]" * 100 + b"}",
     400, "json_too_deep"),
    ("not JSON", "/api/chat", b"{model: llama3.2}", 400, "invalid_json"),
]  # fmt: skip


@pytest.mark.parametrize("path, body, status, code", [r[1:] for r in BYPASSES], ids=[r[0] for r in BYPASSES])
async def test_bodies_cannot_bypass_the_gates_through_gos_json_rules(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, path: str, body: bytes, status: int, code: str
) -> None:
    url = await proxy_factory(GATED)
    got, answer = await raw(url, "POST", path, body)
    assert got == status, answer
    assert orjson.loads(answer)["error"]["code"] == code
    assert fake_ollama.targets == []


async def test_the_body_ollama_gets_is_the_checked_one(proxy_factory: ProxyFactory, fake_ollama: FakeOllama) -> None:
    url = await proxy_factory(GATED)
    got, _ = await raw(url, "POST", "/api/chat",
                       b'{"Model": "llama3.2", "Stream": false, "messages": [{"Role": "user", "content": "hi"}]}')
    assert got == 200
    assert orjson.loads(fake_ollama.raw_bodies[-1]) == {
        "model": "llama3.2", "stream": False, "messages": [{"role": "user", "content": "hi"}]}


async def test_listings_hide_denied_models_as_v1_models_does(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama
) -> None:
    url = await proxy_factory({"passthrough": {"enabled": True}, "limits": {"denied_models": ["qwen*"]}})
    fake_ollama.loaded = {name: 0.0 for name in fake_ollama.models}
    for path in ("/api/tags", "/api/ps"):
        status, _, body = await call(url + path)
        names = [m["name"] for m in orjson.loads(body)["models"]]
        assert status == 200 and names and not any(n.startswith("qwen") for n in names), path
    async with aiohttp.ClientSession() as session, session.get(url + "/v1/models") as response:
        listed = {m["id"] for m in (await response.json())["data"]}
    assert listed == {m["name"] for m in orjson.loads((await call(url + "/api/tags"))[2])["models"]}
    assert (await call(url + "/api/show", "POST", {"model": "qwen3:8b"}))[0] == 404


async def test_ollamas_5xx_text_stays_in_the_log(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    url = await proxy_factory(ON)
    secret = "CUDA error: out of memory at /usr/lib/ollama/cuda_v12/libggml-cuda.so"
    fake_ollama.push(Reply(status=500, error=secret))
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as response,
    ):
        status, body, rid = response.status, await response.json(), response.headers["X-Request-Id"]
    assert status == 500
    assert body == {"error": f"The model server had an error while processing your request. (request id {rid})"}
    assert secret in caplog.text


async def test_an_error_line_mid_stream_keeps_ollamas_shape_but_not_its_text(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    url = await proxy_factory(ON)
    secret = "CUDA error: an illegal memory access at /usr/lib/ollama/cuda_v12/ggml-cuda.cu:75"
    fake_ollama.push(Reply(chunks=["a", "b", "c"], error_after_lines=2, error=secret))
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}) as response,
    ):
        lines = [orjson.loads(line) for line in (await response.read()).splitlines()]
        rid = response.headers["X-Request-Id"]
    assert [line.get("response") for line in lines[:2]] == ["a", "b"]
    assert lines[-1] == {"error": f"The model server had an error while processing your request. (request id {rid})"}
    assert secret in caplog.text
