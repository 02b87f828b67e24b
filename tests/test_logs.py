"""``proxy/logs.py``: text logs that untrusted values cannot forge, the JSON log, and aiohttp's
own 400s for malformed requests as one line instead of a traceback each."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys

import orjson
import pytest

from proxy.logs import REQUEST_ID, JsonFormatter, TextFormatter, escape
from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama

ESCAPED = [
    ("plain text is unchanged", "GET /v1/models", "GET /v1/models"),
    ("a newline", "a\nb", "a\\nb"),
    ("CR LF forging a line", "x\r\n2026-01-01 INFO proxy: forged", "x\\r\\n2026-01-01 INFO proxy: forged"),
    ("a NUL and an escape sequence", "a\x00b\x1b[31m", "a\\x00b\\x1b[31m"),
    ("DEL and a C1 control", "a\x7fb\x85c", "a\\x7fb\\x85c"),
    ("Unicode line separators", "a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    ("other Unicode stays", "héllo ✓", "héllo ✓"),
]  # fmt: skip


@pytest.mark.parametrize("raw, escaped", [r[1:] for r in ESCAPED], ids=[r[0] for r in ESCAPED])
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("proxy.test", logging.WARNING, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_text_lines_cannot_be_forged() -> None:
    line = TextFormatter().format(record("ignoring unknown request fields: %s", "a\nWARNING proxy: forged"))
    assert "\n" not in line and line.endswith("ignoring unknown request fields: a\\nWARNING proxy: forged")


def test_a_traceback_still_follows_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("proxy", logging.ERROR, __file__, 1, "failed: %s", ("x\ny",), sys.exc_info())
    first, *rest = TextFormatter().format(rec).split("\n")
    assert first.endswith("failed: x\\ny") and "ValueError: boom" in rest[-1]


def test_json_lines_carry_the_fields() -> None:
    token = REQUEST_ID.set("req_1")
    try:
        line = JsonFormatter().format(record("upstream said %s", "a\nb", model="llama3.2", status=502))
    finally:
        REQUEST_ID.reset(token)
    assert "\n" not in line
    obj = orjson.loads(line)
    assert obj.pop("time").endswith("Z")
    assert obj == {"level": "warning", "logger": "proxy.test", "message": "upstream said a\nb",
                   "request_id": "req_1", "model": "llama3.2", "status": 502}


def test_json_without_a_request_leaves_the_id_out() -> None:
    obj = orjson.loads(contextvars.Context().run(JsonFormatter().format, record("started")))
    assert "request_id" not in obj and "exception" not in obj


async def test_malformed_requests_are_one_line_at_info_not_a_traceback(
    proxy_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host, port = proxy_url.removeprefix("http://").split(":")
    for _ in range(20):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /livez HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.split(b" ")[1] == b"400"
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(server) == 20
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in server)
    assert "malformed request" in server[0].getMessage() and "\n" not in server[0].getMessage()


async def test_an_untrusted_path_cannot_forge_a_line(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    url = await proxy_factory()
    await fake_ollama.stop()  # the 502 is logged, with the path the client chose
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    # CR, an ANSI "erase line" and U+2028: each could fake or hide a line in a terminal or a viewer
    writer.write(b"GET /v1/models/x%0D%1B%5B2K%E2%80%A8forged HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 502 ")
    writer.close()
    lines = [TextFormatter().format(r) for r in caplog.records if "502" in r.getMessage()]
    assert lines and all(escape(line) == line for line in lines)
