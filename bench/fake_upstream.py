"""A stand-in Ollama (``/api/chat``) fast enough never to be the bottleneck.

Raw asyncio Protocol + pre-built bytes, so a request costs a few microseconds here and the
proxy under test is what gets measured.  ``options.num_predict`` is the number of token
chunks; ``--delay-ms`` paces them (a flag of this process, not a request field, so nothing
non-Ollama has to travel through the proxy: the runner starts a separate paced instance).

Streaming replies are NDJSON in ``Transfer-Encoding: chunked`` with one chunk per line, as
Ollama flushes per token.  Shapes (for ``bench.shapes``): a model named ``*-think`` sends each
token as ``thinking`` instead of ``content``; a request with a ``format`` gets its tokens inside
one JSON object (``{"a":"tok tok …"}``, the opening and closing in lines of their own; inside
``{"name": "record", "arguments": …}`` for an ``anyOf`` schema), as constrained decoding would.  Flat out (no delay) several chunks go into one write per loop
iteration, bounded by transport flow control.

    python -m bench.fake_upstream --port P [--delay-ms D]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, cast

import orjson

from bench._common import LOOPBACK, check_loopback, install_uvloop, raise_nofile, wait_for_stop

DEFAULT_NUM_PREDICT = 100
MAX_NUM_PREDICT = 1_000_000  # bound every stream
BATCH = 64  # token chunks per write when flat out
STEP_BATCHES = 4  # writes per connection per loop iteration when flat out
CREATED_AT = b'"2026-01-01T00:00:00.000000Z"'
TOKEN = "tok "  # the loadgen counts relayed tokens by this marker

_date_cache: tuple[int, bytes] = (0, b"")


def _date() -> bytes:
    """Date header value, recomputed once a second (Ollama/Go sends one)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# What a reply to a "format" wraps its tokens in: one string property, or (for an anyOf
# schema, a forced "required" call) the {"name", "arguments"} object around it.
WRAPS = {"": ("", ""), "args": ('{"a":"', '"}'), "call": ('{"name":"record","arguments":{"a":"', '"}}')}


class _ModelBytes:
    """Every byte string a reply for one model name (and shape) needs, built once."""

    __slots__ = ("_done", "_full", "batch", "model_json", "prefix", "suffix", "thinking", "token_chunk",
                 "wrapped")

    def __init__(self, model: str, wrapped: str = "") -> None:
        self.model_json = orjson.dumps(model)
        self.thinking = model.endswith("-think")
        self.wrapped = wrapped
        field = b'"content":"","thinking":"' if self.thinking else b'"content":"'
        self.token_chunk = _chunk(self._line(field + TOKEN.encode() + b'"'))
        opening, closing = WRAPS[wrapped]
        self.prefix = _chunk(self._line(b'"content":' + orjson.dumps(opening))) if wrapped else b""
        self.suffix = _chunk(self._line(b'"content":' + orjson.dumps(closing))) if wrapped else b""
        self.batch = self.token_chunk * BATCH
        self._done: dict[int, bytes] = {}
        self._full: dict[int, bytes] = {}

    def _line(self, message_fields: bytes) -> bytes:
        return (b'{"model":' + self.model_json + b',"created_at":' + CREATED_AT
                + b',"message":{"role":"assistant",' + message_fields + b'},"done":false}\n')

    def _stats(self, n: int) -> bytes:
        return (
            b'"done":true,"done_reason":"stop","total_duration":1,"load_duration":1,'
            b'"prompt_eval_count":5,"prompt_eval_duration":1,"eval_count":%d,"eval_duration":1}' % n
        )

    def done_tail(self, n: int) -> bytes:
        """Final NDJSON line as a chunk, plus the chunked-encoding terminator."""
        b = self._done.get(n)
        if b is None:
            line = (
                b'{"model":'
                + self.model_json
                + b',"created_at":'
                + CREATED_AT
                + b',"message":{"role":"assistant","content":""},'
                + self._stats(n)
                + b"\n"
            )
            b = self.suffix + _chunk(line) + b"0\r\n\r\n"
            if len(self._done) < 256:
                self._done[n] = b
        return b

    def full(self, n: int) -> bytes:
        """The whole non-streaming reply body."""
        b = self._full.get(n)
        if b is None:
            text = TOKEN * n
            opening, closing = WRAPS[self.wrapped]
            text = opening + text + closing
            field = b'"content":"","thinking":' if self.thinking else b'"content":'
            b = (
                b'{"model":'
                + self.model_json
                + b',"created_at":'
                + CREATED_AT
                + b',"message":{"role":"assistant",'
                + field
                + orjson.dumps(text)
                + b"},"
                + self._stats(n)
            )
            if len(self._full) < 256:
                self._full[n] = b
        return b


_models: dict[tuple[str, str], _ModelBytes] = {}


def _model_bytes(model: str, wrapped: str = "") -> _ModelBytes:
    mb = _models.get((model, wrapped))
    if mb is None:
        mb = _ModelBytes(model, wrapped)
        if len(_models) < 64:
            _models[(model, wrapped)] = mb
    return mb


def _head(status: bytes, ctype: bytes, extra: bytes, keep_alive: bool) -> bytes:
    conn = b"" if keep_alive else b"Connection: close\r\n"
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: "
        + ctype
        + b"\r\nDate: "
        + _date()
        + b"\r\n"
        + conn
        + extra
        + b"\r\n"
    )


class Upstream(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are served one at a time, in order."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.paused = False
        self.keep_alive = True
        self.remaining = 0
        self.n = 0
        self.mb: _ModelBytes | None = None
        self.next_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.resume: Callable[[], None] | None = None

    # -- asyncio callbacks -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.resume = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.resume is not None:
            self.resume()

    # -- request parsing ---------------------------------------------------------------
    def _process(self) -> None:
        while not self.busy and not self.closed:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._simple(
                        b"431 Request Header Fields Too Large", b'{"error":"headers"}', False
                    )
                return
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self._simple(b"400 Bad Request", b'{"error":"bad request line"}', False)
                return
            clen, chunked = 0, False
            keep_alive = version == "HTTP/1.1"
            for line in lines[1:]:
                k, _, v = line.partition(":")
                k = k.strip().lower()
                if k == "content-length":
                    clen = int(v)
                elif k == "transfer-encoding":
                    chunked = "chunked" in v.lower()
                elif k == "connection":
                    v = v.strip().lower()
                    keep_alive = v != "close" and (keep_alive or v == "keep-alive")
            if chunked:
                decoded = _dechunk(buf, end + 4)
                if decoded is None:
                    return
                body, consumed = decoded
            else:
                consumed = end + 4 + clen
                if len(buf) < consumed:
                    return
                body = bytes(buf[end + 4 : consumed])
            del buf[:consumed]
            self.keep_alive = keep_alive
            self._dispatch(method, target.split("?", 1)[0], body)

    def _dispatch(self, method: str, path: str, body: bytes) -> None:
        if path == "/api/chat" and method == "POST":
            self._chat(body)
        elif path == "/api/version" and method == "GET":
            self._simple(b"200 OK", b'{"version":"0.0.0-bench"}', self.keep_alive)
        elif path == "/api/tags" and method == "GET":
            self._simple(
                b"200 OK",
                b'{"models":[{"name":"bench","model":"bench","modified_at":"2026-01-01T00:00:00Z",'
                b'"size":1,"digest":"0","details":{}}]}',
                self.keep_alive,
            )
        elif path == "/api/ps" and method == "GET":  # "bench" loaded, all of it in VRAM
            self._simple(
                b"200 OK",
                b'{"models":[{"name":"bench","model":"bench","size":1,"size_vram":1,'
                b'"digest":"0","details":{},"expires_at":"2099-01-01T00:00:00Z"}]}',
                self.keep_alive,
            )
        elif path == "/" and method in ("GET", "HEAD"):
            self._simple(
                b"200 OK", b"Ollama is running", self.keep_alive, b"text/plain; charset=utf-8"
            )
        else:
            self._simple(b"404 Not Found", b'{"error":"not found"}', self.keep_alive)

    # -- replies -------------------------------------------------------------------------
    def _simple(
        self,
        status: bytes,
        body: bytes,
        keep_alive: bool,
        ctype: bytes = b"application/json; charset=utf-8",
    ) -> None:
        assert self.transport is not None
        self.transport.write(
            _head(status, ctype, b"Content-Length: %d\r\n" % len(body), keep_alive) + body
        )
        if not keep_alive:
            self.closed = True
            self.transport.close()

    def _chat(self, body: bytes) -> None:
        try:
            req: Any = orjson.loads(body)
            model = str(req.get("model") or "bench")
            stream = req.get("stream", True) is not False
            opts = req.get("options") or {}
            n = opts.get("num_predict")
            n = DEFAULT_NUM_PREDICT if n is None or int(n) < 0 else min(int(n), MAX_NUM_PREDICT)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            self._simple(b"400 Bad Request", b'{"error":"invalid request body"}', self.keep_alive)
            return
        fmt = req.get("format")
        mb = _model_bytes(model, "" if fmt is None else "call" if "anyOf" in fmt else "args")
        if not stream:
            if self.delay > 0:
                self.busy = True
                self.timer = self.loop.call_later(self.delay * n, self._full_reply, mb, n)
            else:
                self._simple(b"200 OK", mb.full(n), self.keep_alive)
            return
        assert self.transport is not None
        self.busy, self.mb, self.n, self.remaining = True, mb, n, n
        self.transport.write(
            _head(
                b"200 OK",
                b"application/x-ndjson",
                b"Transfer-Encoding: chunked\r\n",
                self.keep_alive,
            )
            + mb.prefix
        )
        if self.delay > 0:
            self.next_at = self.loop.time()
            self._tick()  # first token right away, then one every delay
        else:
            self.resume = self._flat
            self._flat()

    def _full_reply(self, mb: _ModelBytes, n: int) -> None:
        self.timer = None
        if self.closed:
            return
        self.busy = False
        self._simple(b"200 OK", mb.full(n), self.keep_alive)
        self._next()

    def _flat(self) -> None:
        """Write token chunks as fast as the transport takes them, a few writes per iteration."""
        if self.closed or self.mb is None:
            return
        t, mb = self.transport, self.mb
        assert t is not None
        for _ in range(STEP_BATCHES):
            if self.paused or self.remaining <= 0:
                break
            k = min(self.remaining, BATCH)
            t.write(mb.batch if k == BATCH else mb.token_chunk * k)
            self.remaining -= k
        if self.remaining <= 0:
            self._finish()
        elif not self.paused:
            self.loop.call_soon(self._flat)
        # else: resume_writing() calls _flat again

    def _tick(self) -> None:
        self.timer = None
        if self.closed or self.mb is None:
            return
        assert self.transport is not None
        if self.remaining > 0:
            self.transport.write(self.mb.token_chunk)
            self.remaining -= 1
        if self.remaining <= 0:
            self._finish()
            return
        now = self.loop.time()
        self.next_at = max(self.next_at + self.delay, now)
        self.timer = self.loop.call_at(self.next_at, self._tick)

    def _finish(self) -> None:
        assert self.transport is not None and self.mb is not None
        self.transport.write(self.mb.done_tail(self.n))
        self.resume, self.mb, self.busy = None, None, False
        if not self.keep_alive:
            self.closed = True
            self.transport.close()
            return
        self._next()

    def _next(self) -> None:
        if self.buf and not self.closed:
            self.loop.call_soon(self._process)


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked request body starting at pos; None if incomplete."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return None
            return bytes(out), end + 4
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2


async def serve(host: str, port: int, delay_ms: float, lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    delay = delay_ms / 1000.0
    server = await loop.create_server(
        lambda: Upstream(delay), host, port, backlog=4096, reuse_address=True
    )
    try:
        await wait_for_stop(lifetime)
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", default=LOOPBACK)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0, help="pace: one token chunk every D ms")
    ap.add_argument("--lifetime", type=float, default=3600.0, help="exit by itself after S seconds")
    ap.add_argument("--no-uvloop", action="store_true")
    args = ap.parse_args(argv)
    raise_nofile()
    install_uvloop(not args.no_uvloop)
    asyncio.run(serve(check_loopback(args.host), args.port, args.delay_ms, args.lifetime))


if __name__ == "__main__":
    main()
