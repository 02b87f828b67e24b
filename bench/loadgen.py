"""Load generator: raw asyncio HTTP/1.1 keep-alive client (aiohttp's client cannot saturate).

It decodes just enough HTTP to know where a response ends (Content-Length or chunked) and
counts relayed tokens by the fake upstream's token marker ``tok `` in the decoded body.
That makes it format-agnostic: NDJSON straight from the upstream or the bytes-only
reference and SSE from the naive reference or the proxy are counted the same way, and the
"first token" time is when the first real token arrives, not an early role-only frame.

Modes (each bounded in request count and wall time, and stops by itself):

  rate     C closed-loop connections for a duration; req/s, tokens/s, server CPU per token
  latency  sequential requests on one connection; time-to-first-token distribution
  burst    C pre-connected connections fire at once, R rounds; TTFT p50/p99
  hold     open S paced streams and keep them open; server RSS idle / at each level

Prints one JSON object on stdout.  CPU and RSS of the server come from /proc
(``--pids``, each the root of a process tree, so ``--workers`` children count too).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from bench import procstat
from bench._common import LOOPBACK, check_loopback, install_uvloop, raise_nofile

TOK = b"tok "
# The Responses API repeats the whole text in its closing events (output_text.done, the
# completed response): only its delta events count as relayed tokens.
RESPONSES_TOK = b'"delta":"tok '
MAX_REQUESTS = 5_000_000  # hard bound on any closed loop

perf = time.perf_counter


class Stats:
    """Counters shared by all connections; snapshotted at window edges."""

    __slots__ = ("bytes", "errors", "responses", "sent", "tok", "tokens")

    def __init__(self, tok: bytes = TOK) -> None:
        self.tok = tok  # the token marker counted in response bodies
        self.tokens = 0
        self.responses = 0
        self.errors = 0
        self.sent = 0
        self.bytes = 0


class Result:
    __slots__ = ("error", "nbytes", "status", "t_end", "t_first", "t_head", "t_send", "tokens")

    def __init__(self, t_send: float) -> None:
        self.status = 0
        self.t_send = t_send
        self.t_head = 0.0
        self.t_first = 0.0
        self.t_end = 0.0
        self.tokens = 0
        self.nbytes = 0
        self.error = ""


_IDLE, _HEAD, _CL, _CHUNKED, _TRAILER = range(5)


class Client(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.state = _IDLE
        self.fut: asyncio.Future[Result] | None = None
        self.res: Result | None = None
        self.left = 0  # Content-Length bytes left, or bytes left in current chunk
        self.skip = 0  # CRLF bytes to skip after a chunk
        self.carry = b""  # last len(tok)-1 payload bytes: a token marker may straddle reads
        self.tok = stats.tok
        self.close_after = False
        self.dead = False
        self.first: asyncio.Future[None] | None = None  # hold mode: set at the first token

    # -- public --------------------------------------------------------------------------
    def request(self, data: bytes) -> asyncio.Future[Result]:
        assert self.transport is not None and self.state == _IDLE
        loop = asyncio.get_running_loop()
        self.fut = loop.create_future()
        self.res = Result(perf())
        self.state = _HEAD
        self.carry = b""
        self.buf.clear()
        self.left = self.skip = 0
        self.stats.sent += 1
        self.transport.write(data)
        return self.fut

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        if self.fut is not None and not self.fut.done():
            assert self.res is not None
            self.res.error = f"connection lost: {exc!r}" if exc else "connection closed"
            self.res.t_end = perf()
            self.stats.errors += 1
            self.fut.set_result(self.res)
        self.fut = None

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == _CHUNKED or state == _TRAILER:
            self._chunked(data)
        elif state == _CL:
            self._cl(data)
        elif state == _HEAD:
            buf = self.buf
            buf += data
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return
            self._head(bytes(buf[:i]))
            rest = bytes(buf[i + 4 :])
            buf.clear()
            if self.state == _CHUNKED:
                self._chunked(rest)
            elif self.left == 0:
                self._complete()
            else:
                self._cl(rest)
        # _IDLE: stray bytes after a response; ignore

    # -- parsing ---------------------------------------------------------------------------
    def _head(self, head: bytes) -> None:
        res = self.res
        assert res is not None
        res.t_head = perf()
        lines = head.split(b"\r\n")
        try:
            res.status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            res.status = -1
        chunked, clen, close = False, -1, lines[0].startswith(b"HTTP/1.0")
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                clen = int(v)
            elif k == b"transfer-encoding":
                chunked = b"chunked" in v.lower()
            elif k == b"connection":
                close = v.strip().lower() == b"close"
        self.close_after = close
        if chunked:
            self.state, self.left, self.skip = _CHUNKED, 0, 0
        elif clen >= 0:
            self.state, self.left = _CL, clen
        else:  # read-until-close bodies are not expected from any target
            self.state, self.left, self.close_after = _CL, 1 << 62, True

    def _count(self, data: bytes, a: int, b: int) -> int:
        """Token markers in data[a:b], including one straddling the previous segment."""
        tok = self.tok
        k = len(tok) - 1
        c = data.count(tok, a, b)
        carry = self.carry
        if carry:
            c += (carry + data[a : a + k]).count(tok)
        if data[b - 1] == 10:  # frames end in \n: nothing can straddle (the common case)
            self.carry = b""
        elif b - a >= k:
            self.carry = data[b - k : b]
        else:
            self.carry = (carry + data[a:b])[-k:]
        return c

    def _cl(self, data: bytes) -> None:
        n = min(len(data), self.left)
        if n:
            self._got(n, self._count(data, 0, n))
            self.left -= n
        if self.left == 0:
            self._complete()

    def _chunked(self, data: bytes) -> None:
        """Decode chunked framing; whole chunks in one read take the short path."""
        if self.buf:  # only ever a partial chunk-size line: tiny
            data = bytes(self.buf) + data
            self.buf.clear()
        n = len(data)
        pos = nbytes = tokens = 0
        done = False
        while pos < n:
            left = self.left
            if left:
                b = min(n, pos + left)
                tokens += self._count(data, pos, b)
                nbytes += b - pos
                self.left = left - (b - pos)
                pos = b
                if self.left == 0:
                    self.skip = 2
                continue
            if self.skip:
                s = min(self.skip, n - pos)
                pos += s
                self.skip -= s
                continue
            j = data.find(b"\r\n", pos)
            if j < 0:
                self.buf += data[pos:]
                break
            if self.state == _TRAILER:
                if j == pos:  # blank line: end of message
                    done = True
                    break
                pos = j + 2
                continue
            try:
                size = int(data[pos:j], 16)
            except ValueError:
                size = int(data[pos:j].split(b";", 1)[0], 16)
            a = j + 2
            if size == 0:
                self.state = _TRAILER
                pos = a
                continue
            b = a + size
            if b + 2 <= n:  # whole chunk present
                tokens += self._count(data, a, b)
                nbytes += size
                pos = b + 2
            else:
                self.left = size
                pos = a
        if nbytes:
            self._got(nbytes, tokens)
        if done:
            self._complete()

    def _got(self, nbytes: int, tokens: int) -> None:
        res = self.res
        assert res is not None
        res.nbytes += nbytes
        self.stats.bytes += nbytes
        if tokens:
            if res.tokens == 0:
                res.t_first = perf()
                if self.first is not None and not self.first.done():
                    self.first.set_result(None)
            res.tokens += tokens
            self.stats.tokens += tokens

    def _complete(self) -> None:
        res, fut = self.res, self.fut
        assert res is not None
        res.t_end = perf()
        self.state, self.res, self.fut = _IDLE, None, None
        self.stats.responses += 1
        if res.status != 200:
            self.stats.errors += 1
            res.error = res.error or f"HTTP {res.status}"
        if self.close_after and self.transport is not None:
            self.dead = True
            self.transport.close()
        if fut is not None and not fut.done():
            fut.set_result(res)


# -- helpers ---------------------------------------------------------------------------------


# The API key the "keys + limits on" target accepts (bench/run.py writes its hash in the config).
BENCH_KEY = "sk-bench-0000000000000000000000000000000000000000"


def build_request(host: str, port: int, api: str, stream: bool, max_tokens: int,
                  extra: dict[str, Any] | None = None) -> bytes:
    """Pre-built request bytes: the same request over and over costs nothing to make.

    ``extra`` is merged into the body (``bench.shapes``: tools, tool_choice, another model);
    ``openai-key`` is the OpenAI request with ``Authorization: Bearer`` (the keys target)."""
    if api == "ollama":
        path = b"/api/chat"
        body: dict[str, Any] = {
            "model": "bench",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
            "options": {"num_predict": max_tokens},
        }
    elif api == "responses":
        path = b"/v1/responses"
        body = {"model": "bench", "input": "hi", "stream": stream, "max_output_tokens": max_tokens}
    elif api == "messages":
        path = b"/v1/messages"
        body = {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "stream": stream,
                "max_tokens": max_tokens}
    else:
        path = b"/v1/chat/completions"
        body = {
            "model": "bench",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
            "max_tokens": max_tokens,
        }
    raw = orjson.dumps({**body, **(extra or {})})
    auth = b"Authorization: Bearer %s\r\n" % BENCH_KEY.encode() if api == "openai-key" else b""
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"%sAccept: */*\r\nContent-Length: %d\r\n\r\n" % (host.encode(), port, auth, len(raw))
    ) + raw


async def connect(host: str, port: int, stats: Stats, timeout: float = 10.0) -> Client:
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(
        loop.create_connection(lambda: Client(stats), host, port), timeout
    )
    return proto


def pct(xs: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1)."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))]


def summary_ms(xs: list[float]) -> dict[str, Any]:
    ms = [x * 1000.0 for x in xs]
    return {
        "n": len(ms),
        "p50_ms": pct(ms, 0.50),
        "p90_ms": pct(ms, 0.90),
        "p99_ms": pct(ms, 0.99),
        "max_ms": max(ms) if ms else None,
        "mean_ms": sum(ms) / len(ms) if ms else None,
    }


def self_cpu_ns() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return int((ru.ru_utime + ru.ru_stime) * 1e9)


class Probe:
    """CPU of the server tree(s), of other watched trees, and of this process, at an instant."""

    def __init__(self, pids: list[int], aux: list[int]) -> None:
        self.pids = [p for root in pids for p in procstat.tree(root)]
        self.aux = [p for root in aux for p in procstat.tree(root)]
        self.s0 = self.sample()

    def sample(self) -> tuple[float, int, int, int, dict[int, tuple[int, int]]]:
        return (
            perf(),
            procstat.cpu_ns(self.pids),
            procstat.cpu_ns(self.aux),
            self_cpu_ns(),
            procstat.cpu_ticks(),
        )

    def start(self) -> None:
        self.s0 = self.sample()

    def report(self) -> dict[str, Any]:
        """CPU use between start() and now: server tree, aux tree, this process, each core."""
        return window_report(self.s0, self.sample(), bool(self.aux))


def window_report(
    s0: tuple[float, int, int, int, dict[int, tuple[int, int]]],
    s1: tuple[float, int, int, int, dict[int, tuple[int, int]]],
    aux: bool,
) -> dict[str, Any]:
    dt = s1[0] - s0[0]
    if dt <= 0:
        return {}
    return {
        "server_cpu_util": (s1[1] - s0[1]) / 1e9 / dt,
        "aux_cpu_util": (s1[2] - s0[2]) / 1e9 / dt if aux else None,
        "loadgen_cpu_util": (s1[3] - s0[3]) / 1e9 / dt,
        "cpu_busy": procstat.busy_between(s0[4], s1[4]),
    }


def check_result(res: Result, expect_tokens: int, out: dict[str, Any]) -> bool:
    ok = not res.error and res.tokens == expect_tokens
    if not ok:
        errs = out.setdefault("error_samples", [])
        if len(errs) < 5:
            errs.append(res.error or f"got {res.tokens} tokens, expected {expect_tokens}")
    return ok


# -- modes -------------------------------------------------------------------------------------


async def mode_rate(a: argparse.Namespace) -> dict[str, Any]:
    """Closed loop: C connections each issuing back-to-back requests; measure a window."""
    stats = Stats(RESPONSES_TOK if a.api == "responses" else TOK)
    req = build_request(a.host, a.port, a.api, a.stream, a.max_tokens, a.body)
    probe = Probe(a.pids, a.aux_pids)
    out: dict[str, Any] = {
        "mode": "rate",
        "conns": a.conns,
        "stream": a.stream,
        "max_tokens": a.max_tokens,
    }
    loop = asyncio.get_running_loop()
    t0 = perf()
    w_start, w_end = t0 + a.ramp + a.warmup, t0 + a.ramp + a.warmup + a.duration
    snaps: dict[str, tuple[Any, int, int, int]] = {}
    bad = 0
    lat: list[float] = []

    def snap(name: str) -> None:
        snaps[name] = (probe.sample(), stats.tokens, stats.responses, stats.errors)

    async def worker(i: int) -> None:
        nonlocal bad
        await asyncio.sleep(a.ramp * i / max(1, a.conns))
        conn: Client | None = None
        while perf() < w_end and stats.sent < a.max_requests:
            if conn is None or conn.dead:
                conn = await connect(a.host, a.port, stats)
            res = await conn.request(req)
            if not check_result(res, a.max_tokens * a.expect_factor, out):
                bad += 1
            elif w_start <= res.t_send and res.t_end <= w_end:
                lat.append(res.t_end - res.t_send)
        if conn is not None:
            conn.abort()

    loop.call_at(loop.time() + (w_start - perf()), snap, "start")
    loop.call_at(loop.time() + (w_end - perf()), snap, "end")
    tasks = [asyncio.ensure_future(worker(i)) for i in range(a.conns)]
    done, pending = await asyncio.wait(tasks, timeout=(w_end - perf()) + a.drain_timeout)
    for t in pending:
        t.cancel()
    for t in done:
        if t.exception() is not None:
            bad += 1
            if len(out.setdefault("error_samples", [])) < 5:
                out["error_samples"].append(repr(t.exception()))
    if "end" not in snaps:
        snap("end")
    if "start" not in snaps:
        snap("start")
    (p0, tok0, r0, _), (p1, tok1, r1, _) = snaps["start"], snaps["end"]
    dt = p1[0] - p0[0]
    tokens, resps = tok1 - tok0, r1 - r0
    cpu_ns = p1[1] - p0[1]
    out.update(window_report(p0, p1, bool(a.aux_pids)))
    out.update(
        {
            "window_s": dt,
            "tokens": tokens,
            "responses": resps,
            "tokens_per_s": tokens / dt if dt > 0 else 0.0,
            "req_per_s": resps / dt if dt > 0 else 0.0,
            "errors": stats.errors + bad,
            "unfinished": len(pending),
            "server_cpu_us_per_token": cpu_ns / 1e3 / tokens if tokens else None,
            "server_cpu_us_per_req": cpu_ns / 1e3 / resps if resps else None,
            "latency": summary_ms(lat),
        }
    )
    return out


@dataclass
class Endpoint:
    """One server to measure; several are interleaved so that they share the conditions."""

    name: str
    api: str
    port: int
    req: bytes = b""
    errors: int = 0
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    conns: list[Client] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"errors": self.errors, "ttft": summary_ms(self.ttft)}
        if self.total:
            out["total"] = summary_ms(self.total)
        if self.rounds:
            out["rounds_detail"] = self.rounds
        out.update(self.notes)
        return out


def endpoints(a: argparse.Namespace) -> list[Endpoint]:
    """--endpoint NAME=API:PORT (repeatable), or the single --port/--api target."""
    eps = []
    for spec in a.endpoint or []:
        name, _, rest = spec.partition("=")
        api, _, port = rest.partition(":")
        eps.append(Endpoint(name, api, int(port)))
    if not eps:
        eps = [Endpoint("target", a.api, a.port)]
    for ep in eps:
        if ep.api not in ("openai", "openai-key", "ollama"):
            raise SystemExit(f"bad --endpoint api {ep.api!r}")
        ep.req = build_request(a.host, ep.port, ep.api, True, a.max_tokens)
    return eps


def multi_result(
    mode: str, a: argparse.Namespace, eps: list[Endpoint], probe: Probe, extra: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": mode, "max_tokens": a.max_tokens, **extra}
    out.update(probe.report())
    results = {ep.name: ep.result() for ep in eps}
    if len(eps) == 1 and eps[0].name == "target":
        out.update(results["target"])
    else:
        out["endpoints"] = results
    return out


async def mode_latency(a: argparse.Namespace) -> dict[str, Any]:
    """Concurrency 1: sequential requests, time to first token; endpoints take turns."""
    stats = Stats()
    eps = endpoints(a)
    conns = {ep.name: await connect(a.host, ep.port, stats) for ep in eps}
    deadline = perf() + a.duration
    probe = Probe(a.pids, a.aux_pids)
    stopped = False
    for i in range(a.warmup_count + a.count):
        if i == a.warmup_count:
            probe.start()
        if perf() > deadline:
            stopped = True
            break
        for ep in eps:
            conn = conns[ep.name]
            if conn.dead:
                conn = conns[ep.name] = await connect(a.host, ep.port, stats)
            res = await conn.request(ep.req)
            if not check_result(res, a.max_tokens, ep.notes):
                ep.errors += 1
            elif i >= a.warmup_count:
                ep.ttft.append(res.t_first - res.t_send)
                ep.total.append(res.t_end - res.t_send)
            if a.gap_ms > 0:
                await asyncio.sleep(a.gap_ms / 1000.0)
    for conn in conns.values():
        conn.abort()
    extra: dict[str, Any] = {"count": a.count}
    if stopped:
        extra["stopped_early"] = True
    return multi_result("latency", a, eps, probe, extra)


async def mode_burst(a: argparse.Namespace) -> dict[str, Any]:
    """C pre-connected clients fire together; rounds rotate over the endpoints."""
    stats = Stats()
    eps = endpoints(a)
    for ep in eps:
        for i in range(0, a.conns, 50):  # connect in waves: stay under any listen backlog
            ep.conns += await asyncio.gather(
                *(connect(a.host, ep.port, stats) for _ in range(min(50, a.conns - i)))
            )
    deadline = perf() + a.duration
    probe = Probe(a.pids, a.aux_pids)
    probe.start()
    stopped = False
    for _ in range(a.rounds):
        for ep in eps:
            if perf() > deadline:
                stopped = True
                break
            for j, c in enumerate(ep.conns):
                if c.dead:
                    ep.conns[j] = await connect(a.host, ep.port, stats)
            await asyncio.sleep(a.pause)
            t_fire = perf()
            futs = [c.request(ep.req) for c in ep.conns]
            results = await asyncio.wait_for(asyncio.gather(*futs), timeout=a.round_timeout)
            rt: list[float] = []
            for res in results:
                if check_result(res, a.max_tokens, ep.notes):
                    rt.append(res.t_first - res.t_send)
                else:
                    ep.errors += 1
            last_end = max((res.t_end for res in results), default=t_fire)
            ep.rounds.append({**summary_ms(rt), "round_s": last_end - t_fire})
            ep.ttft += rt
    for ep in eps:
        for c in ep.conns:
            c.abort()
    extra: dict[str, Any] = {"conns": a.conns, "rounds": a.rounds}
    if stopped:
        extra["stopped_early"] = True
    return multi_result("burst", a, eps, probe, extra)


async def mode_hold(a: argparse.Namespace) -> dict[str, Any]:
    """Open paced streams up to each level, wait for them to settle, sample server RSS."""
    stats = Stats()
    req = build_request(a.host, a.port, a.api, True, a.max_tokens)
    pids = [p for root in a.pids for p in procstat.tree(root)]
    out: dict[str, Any] = {"mode": "hold", "levels": a.levels, "max_tokens": a.max_tokens}
    out["rss_idle"] = procstat.rss_bytes(pids)
    conns: list[Client] = []
    futs: list[asyncio.Future[Result]] = []
    sem = asyncio.Semaphore(a.establish)
    failed = 0
    deadline = perf() + a.duration

    async def open_one() -> None:
        nonlocal failed
        async with sem:
            try:
                c = await connect(a.host, a.port, stats)
            except (TimeoutError, OSError):
                failed += 1
                return
            conns.append(c)
            first: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            c.first = first
            fut = c.request(req)
            futs.append(fut)
            # established = first token relayed (the stream really is open end to end)
            waiters: list[asyncio.Future[Any]] = [first, fut]
            await asyncio.wait(
                waiters,
                timeout=max(0.0, deadline - perf()),
                return_when=asyncio.FIRST_COMPLETED,
            )

    levels: dict[str, Any] = {}
    try:
        for level in a.levels:
            t0 = perf()
            need = level - len(conns)
            if need > 0:
                await asyncio.gather(*(open_one() for _ in range(need)))
            t_open = perf() - t0
            await asyncio.sleep(a.settle)
            pids = [p for root in a.pids for p in procstat.tree(root)]
            open_now = sum(
                1
                for c, f in zip(conns, futs)
                if not f.done() and c.res is not None and c.res.tokens > 0
            )
            levels[str(level)] = {
                "rss": procstat.rss_bytes(pids),
                "open": open_now,
                "open_s": t_open,
                "rejected": sum(1 for f in futs if f.done() and f.result().status != 200),
            }
            if perf() > deadline:
                out["stopped_early"] = True
                break
    finally:
        for c in conns:
            c.abort()
    out.update({"levels_detail": levels, "connect_failures": failed})
    return out


MODES = {"rate": mode_rate, "latency": mode_latency, "burst": mode_burst, "hold": mode_hold}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("mode", choices=sorted(MODES))
    ap.add_argument("--host", default=LOOPBACK)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument(
        "--endpoint",
        action="append",
        help="latency/burst: NAME=API:PORT, repeatable; endpoints take turns (same conditions)",
    )
    ap.add_argument(
        "--api",
        choices=("openai", "openai-key", "ollama", "responses", "messages"),
        default="openai",
        help="openai: POST /v1/chat/completions; ollama: POST /api/chat (direct); "
        "responses: POST /v1/responses (rate mode); messages: POST /v1/messages (rate mode)",
    )
    ap.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--max-tokens", type=int, default=100)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--duration", type=float, default=3.0, help="measured window / time bound (s)")
    ap.add_argument("--warmup", type=float, default=0.5, help="rate: seconds before the window")
    ap.add_argument(
        "--ramp", type=float, default=0.0, help="rate: spread connection starts over S s"
    )
    ap.add_argument("--drain-timeout", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=MAX_REQUESTS)
    ap.add_argument("--count", type=int, default=200, help="latency: measured requests")
    ap.add_argument("--warmup-count", type=int, default=20)
    ap.add_argument("--gap-ms", type=float, default=1.0, help="latency: idle gap between requests")
    ap.add_argument("--rounds", type=int, default=5, help="burst: rounds")
    ap.add_argument(
        "--pause", type=float, default=0.2, help="burst: idle seconds before each round"
    )
    ap.add_argument("--round-timeout", type=float, default=60.0)
    ap.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[200, 5000])
    ap.add_argument("--settle", type=float, default=1.0, help="hold: seconds before sampling RSS")
    ap.add_argument("--establish", type=int, default=200, help="hold: streams being opened at once")
    ap.add_argument(
        "--pids",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[],
        help="server process-tree roots to measure",
    )
    ap.add_argument(
        "--aux-pids",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[],
        help="other process trees whose CPU is reported (the fake upstream)",
    )
    ap.add_argument("--timeout", type=float, default=0.0, help="hard wall-clock bound (0: derived)")
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--body", type=orjson.loads, default=None,
                    help="rate: a JSON object merged into the request body")
    ap.add_argument("--expect-factor", type=int, default=1,
                    help="rate: token markers per token (2 when thinking goes out under two names)")
    a = ap.parse_args(argv)
    a.host = check_loopback(a.host)
    if not a.port and not (a.endpoint and a.mode in ("latency", "burst")):
        ap.error("--port is required (or --endpoint for latency/burst)")
    a.max_requests = min(a.max_requests, MAX_REQUESTS)
    return a


async def _main(a: argparse.Namespace) -> dict[str, Any]:
    timeout = a.timeout or (a.ramp + a.warmup + a.duration + a.drain_timeout + 30.0)
    return await asyncio.wait_for(MODES[a.mode](a), timeout)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    raise_nofile()
    uv = install_uvloop(not a.no_uvloop)
    try:
        out = asyncio.run(_main(a))
    except (TimeoutError, OSError) as e:
        out = {"mode": a.mode, "fatal": repr(e)}
    out["uvloop"] = uv
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    return 0 if "fatal" not in out else 1


if __name__ == "__main__":
    raise SystemExit(main())
