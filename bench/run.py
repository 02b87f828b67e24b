"""``python -m bench``: measure the proxy and both references in one run and print the table.

Every server is its own subprocess; servers under test are pinned to one core and the load
generator plus the fake upstream to another (on 2 cores that is the best there is), so the
numbers are comparable within a run.  Rows are measured target after target close together
in time, and the result is written to ``bench/results/`` so each change can be compared
with the last.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat
from bench._common import LOOPBACK, free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
PY = sys.executable

TARGETS = ("passthrough", "naive", "proxy", "metrics", "keys")
LABEL = {"direct": "direct", "passthrough": "bytes-only", "naive": "naive", "proxy": "proxy",
         "metrics": "proxy+metrics", "keys": "keys+limits", "proxy_store": "proxy+store"}
# The proxy again with [metrics] on (the "proxy" column runs with them off): what metrics cost;
# and with one API key (rpm and tpm set, never reached) on the memory limiter, called with that
# key: the cost of auth + rate limiting (docs/access.md).
PROXIES = ("proxy", "metrics", "keys")
API = {"keys": "openai-key"}
ROWS = ("nonstream", "pool2", "one_stream", "resp_stream", "msg_stream", "streams200", "paced_cpu", "ttft", "ttfb", "rss",
        "store_req", "store_chunk")
# The store's cost (issue 10): the proxy with [store] on (SQLite, usage accounting) against the
# proxy itself, measured back to back; only these rows run the extra target.
STORE_TARGET = "proxy_store"
STORE_ROWS = {"store_req": "nonstream", "store_chunk": "paced_cpu"}  # row -> the load it reuses

# Upstream pacing per phase: flat out, a token every 20 ms, a token a second (held streams).
PHASES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("flat", 0.0, ("nonstream", "pool2", "one_stream", "resp_stream", "msg_stream", "streams200", "ttft", "ttfb",
                   "store_req")),
    ("paced", 20.0, ("paced_cpu", "store_chunk")),
    ("hold", 1000.0, ("rss",)),
)
WITH_DIRECT = {"nonstream", "one_stream", "streams200", "ttft", "ttfb"}
INTERLEAVED = {"ttft", "ttfb"}  # all endpoints in one load-generator run, taking turns
# Rows only the proxy can serve (the references speak chat completions only), each measured
# against another row of the proxy's: the Responses stream against the chat stream.
PROXY_ONLY = {"resp_stream": "one_stream", "msg_stream": "one_stream"}


# ---------------------------------------------------------------------------------------------
# processes


_libc: Any = None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    pass
PR_SET_PDEATHSIG = 1


def _preexec(cpus: set[int] | None) -> Callable[[], None]:
    """Pin, raise the fd limit, and die with the runner (children of a SIGKILLed runner)."""

    def fn() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            except (ValueError, OSError):
                pass
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return fn


@dataclass
class Proc:
    """A child process in its own session, so its workers can be stopped as a group."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL what is left after a grace period."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:  # leader gone; make sure no worker outlives it
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            return


class TargetFailed(Exception):
    pass


FOREIGN_MAX = 0.10  # CPU share of a core used by processes that are not ours: above = noisy


def foreign_load(cfg: Config, raw: dict[str, Any], target: str) -> float | None:
    """Busy time on our cores not accounted for by our own processes (someone else's load)."""
    busy = raw.get("cpu_busy")
    if not busy or not cfg.server_cpus or not cfg.client_cpus:
        return None
    server = float(raw.get("server_cpu_util") or 0.0)
    client = float(raw.get("loadgen_cpu_util") or 0.0) + float(raw.get("aux_cpu_util") or 0.0)
    on_client = float(sum(busy.get(str(c), 0.0) for c in cfg.client_cpus)) - client
    if target == "direct":  # the "server" is the fake upstream, on the client core
        return max(0.0, on_client - server)
    on_server = float(sum(busy.get(str(c), 0.0) for c in cfg.server_cpus)) - server
    return max(0.0, on_server, on_client)


@dataclass
class Config:
    quick: bool
    server_cpus: set[int] | None
    client_cpus: set[int] | None
    workers: int | None
    uvloop: bool
    proxy_cmd: str | None
    logdir: Path
    retries: int = 1
    proxy_config: Path | None = None
    store_config: Path | None = None  # the proxy_store target's config (store rows only)
    metrics_config: Path | None = None
    procs: list[Proc] = field(default_factory=list)
    proxy_help: str = ""

    # -- process management ---------------------------------------------------------------
    def spawn(
        self,
        name: str,
        cmd: list[str],
        cpus: set[int] | None,
        port: int,
        env: dict[str, str] | None = None,
    ) -> Proc:
        log = self.logdir / f"{name}-{port}.log"
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        with open(log, "wb") as fh:
            # preexec_fn is safe here: the runner has no threads.
            p = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
                preexec_fn=_preexec(cpus),  # noqa: PLW1509 (runner has no threads)
            )
        proc = Proc(name, p, log, port)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for p in list(self.procs):
            self.stop(p)

    def wait_ready(self, proc: Proc, timeout: float = 30.0) -> None:
        """Poll the port (no fixed sleeps); fail fast if the process died."""
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise TargetFailed(
                    f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
                )
            try:
                with socket.create_connection((LOOPBACK, proc.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise TargetFailed(
            f"{proc.name} not listening on {proc.port} after {timeout}s:\n{proc.log_tail()}"
        )

    def keys_config(self) -> Path:
        """The proxy's bench config plus one key with limits it never reaches."""
        from bench.loadgen import BENCH_KEY

        path = self.logdir / "bench-proxy-keys.toml"
        base = self.proxy_config.read_text() if self.proxy_config else ""
        digest = hashlib.sha256(BENCH_KEY.encode()).hexdigest()
        path.write_text(f'{base}\n[[auth.keys]]\nid = "bench"\nsha256 = "{digest}"\n'
                        "rpm = 1000000000\ntpm = 1000000000000\n")
        return path

    @staticmethod
    def auth_headers(name: str) -> dict[str, str]:
        from bench.loadgen import BENCH_KEY

        return {"Authorization": f"Bearer {BENCH_KEY}"} if name == "keys" else {}

    def uv_flag(self) -> list[str]:
        return [] if self.uvloop else ["--no-uvloop"]

    def start_upstream(self, delay_ms: float) -> Proc:
        port = free_port()
        cmd = [PY, "-m", "bench.fake_upstream", "--port", str(port), "--delay-ms", str(delay_ms)]
        proc = self.spawn(
            f"upstream{int(delay_ms)}ms", cmd + self.uv_flag(), self.client_cpus, port
        )
        self.wait_ready(proc, 15.0)
        return proc

    def start_target(self, name: str, upstream_port: int, url: str | None = None) -> Proc:
        """``url`` (default: the upstream's) may list several, comma-separated: a pool."""
        port = free_port()
        url = url or f"http://{LOOPBACK}:{upstream_port}"
        env = {"OLLAMA_BASE_URL": url}
        if name == STORE_TARGET:
            cmd = [PY, "-m", "proxy", "--host", LOOPBACK, "--port", str(port), "--config", str(self.store_config)]
            if not self.uvloop and "--no-uvloop" in self.proxy_help:
                cmd += ["--no-uvloop"]
        elif name in PROXIES:
            if self.proxy_cmd:
                cmd = shlex.split(self.proxy_cmd.format(port=port, upstream=url, host=LOOPBACK))
            else:
                cmd = [PY, "-m", "proxy", "--host", LOOPBACK, "--port", str(port)]
                config = {"metrics": self.metrics_config, "keys": self.keys_config() if name == "keys" else None}.get(
                    name, self.proxy_config)
                if config:
                    cmd += ["--config", str(config)]
                if self.workers:
                    cmd += ["--workers", str(self.workers)]
                if not self.uvloop and "--no-uvloop" in self.proxy_help:
                    cmd += ["--no-uvloop"]
        else:
            cmd = [
                PY,
                "-m",
                f"bench.{name}",
                "--port",
                str(port),
                "--upstream",
                url,
            ] + self.uv_flag()
        proc = self.spawn(name, cmd, self.server_cpus, port, env)
        try:
            self.wait_ready(proc)
            warm_up(port, self.auth_headers(name))
        except (TargetFailed, OSError, http.client.HTTPException) as e:
            tail = proc.log_tail()
            self.stop(proc)
            raise TargetFailed(f"{name}: {e}\n{tail}".strip()) from e
        return proc

    # -- load generator -------------------------------------------------------------------
    def loadgen(
        self,
        mode: str,
        port: int,
        args: list[str],
        pids: list[int] | None = None,
        aux: list[int] | None = None,
        api: str = "openai",
        bound: float = 120.0,
    ) -> dict[str, Any]:
        cmd = [PY, "-m", "bench.loadgen", mode, "--port", str(port), "--api", api] + args
        if pids:
            cmd += ["--pids", ",".join(map(str, pids))]
        if aux:
            cmd += ["--aux-pids", ",".join(map(str, aux))]
        cmd += self.uv_flag()
        try:
            cp = subprocess.run(
                cmd,
                check=False,
                cwd=REPO,
                capture_output=True,
                timeout=bound,
                preexec_fn=_preexec(self.client_cpus),
            )
        except subprocess.TimeoutExpired:
            return {"fatal": f"loadgen {mode} timed out after {bound}s"}
        lines = cp.stdout.decode(errors="replace").strip().splitlines()
        try:
            out: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            return {
                "fatal": f"loadgen {mode} rc={cp.returncode}: "
                + cp.stderr.decode(errors="replace")[-800:]
            }
        return out


def warm_up(port: int, headers: dict[str, str] | None = None) -> None:
    """One streaming and one plain request: proves the target works and warms lazy paths."""
    body = {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    for stream in (True, False):
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        try:
            conn.request(
                "POST",
                "/v1/chat/completions",
                json.dumps({**body, "stream": stream}),
                {"Content-Type": "application/json", **(headers or {})},
            )
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status != 200 or data.count(b"tok ") != 3:
            raise TargetFailed(f"warm-up (stream={stream}) got HTTP {resp.status}: {data[:300]!r}")


# The proxy's admission control (64 in flight per worker by default) would turn the
# 200-stream and 5,000-stream rows into a test of its queue; the bench lifts it and keeps
# every other default.  --proxy-config replaces this file.
BENCH_PROXY_TOML = """\
# written by bench/run.py: proxy defaults, except no admission bound (see bench/README.md)
[admission]
max_concurrent = 0
[metrics]
enabled = false
"""
# The same with the store on: usage accounting into a SQLite file beside this config.
BENCH_STORE_TOML = BENCH_PROXY_TOML + """
[store]
enabled = true
url = "sqlite:///bench-store.db"
"""
# The "proxy+metrics" column: the same, with /metrics on (its default), scraped by nobody.
BENCH_METRICS_TOML = BENCH_PROXY_TOML.replace("enabled = false", "enabled = true")
# What metrics may cost (proxy+metrics / proxy): the issue's bounds.
METRICS_TARGET = {"nonstream": 0.95, "one_stream": 0.97, "streams200": 0.97, "paced_cpu": 1.03}


# ---------------------------------------------------------------------------------------------
# rows: how each is measured


def params(quick: bool) -> dict[str, dict[str, Any]]:
    """Per-row load parameters; --quick shortens windows, not the shape of the load."""
    q = quick
    rows: dict[str, dict[str, Any]] = {
        "nonstream": {
            "conns": 50,
            "max_tokens": 10,
            "warmup": 0.3 if q else 1.0,
            "duration": 0.8 if q else 4.0,
        },
        "one_stream": {
            "conns": 1,
            "max_tokens": 2000,
            "warmup": 0.3 if q else 0.5,
            "duration": 0.8 if q else 4.0,
        },
        "resp_stream": {  # one_stream's load over POST /v1/responses
            "conns": 1,
            "max_tokens": 2000,
            "warmup": 0.3 if q else 0.5,
            "duration": 0.8 if q else 4.0,
        },
        "msg_stream": {  # one_stream's load over POST /v1/messages (Anthropic's Messages API)
            "conns": 1,
            "max_tokens": 2000,
            "warmup": 0.3 if q else 0.5,
            "duration": 0.8 if q else 4.0,
        },
        "streams200": {
            "conns": 200,
            "max_tokens": 200,
            "ramp": 0.2 if q else 0.5,
            "warmup": 0.3 if q else 1.0,
            "duration": 1.0 if q else 5.0,
        },
        "pool2": {
            "conns": 50,
            "max_tokens": 10,
            "warmup": 0.3 if q else 1.0,
            "duration": 0.8 if q else 4.0,
        },
        "ttft": {"count": 100 if q else 500, "warmup_count": 20 if q else 50, "max_tokens": 4},
        "ttfb": {"conns": 200, "rounds": 2 if q else 5, "max_tokens": 100},
        "paced_cpu": {
            "conns": 200,
            "max_tokens": 50 if q else 100,
            "ramp": 0.02,
            "warmup": 0.3 if q else 1.0,
            "duration": 1.0 if q else 6.0,
        },
        "rss": {
            "levels": [200, 1000] if q else [200, 5000],
            "max_tokens": 120,
            "settle": 0.5 if q else 1.0,
            "establish_s": 60.0,
        },
    }
    for row, load in STORE_ROWS.items():
        rows[row] = dict(rows[load])
    return rows


def measure(
    cfg: Config,
    row: str,
    p: dict[str, Any],
    eps: list[tuple[str, str, int]],
    pids: list[int],
    aux: list[int],
) -> dict[str, Any]:
    row = STORE_ROWS.get(row, row)  # the store rows repeat a load against proxy and proxy+store
    """Run the load generator for one row against one target (or the upstream directly).

    ``ttft`` and ``ttfb`` take every endpoint at once and interleave them (request by
    request, round by round), so slow spells of this VM hit all targets alike.
    """
    _, api, port = eps[0]
    multi = [x for name, a, pt in eps for x in ("--endpoint", f"{name}={a}:{pt}")]
    if row == "resp_stream":
        api = "responses"
    if row == "msg_stream":
        api = "messages"
    if row in ("nonstream", "one_stream", "resp_stream", "msg_stream", "streams200", "paced_cpu"):
        args = [
            "--conns",
            str(p["conns"]),
            "--max-tokens",
            str(p["max_tokens"]),
            "--warmup",
            str(p["warmup"]),
            "--duration",
            str(p["duration"]),
            "--ramp",
            str(p.get("ramp", 0.0)),
        ]
        args.append("--no-stream" if row == "nonstream" else "--stream")
        bound = p["duration"] + p["warmup"] + p.get("ramp", 0) + 60
        return cfg.loadgen("rate", port, args, pids, aux, api, bound)
    if row == "ttft":
        args = [
            "--count",
            str(p["count"]),
            "--warmup-count",
            str(p["warmup_count"]),
            "--max-tokens",
            str(p["max_tokens"]),
            "--gap-ms",
            "0",
            "--duration",
            "90",
        ]
        return cfg.loadgen("latency", 0, args + multi, pids, aux, api, 120)
    if row == "ttfb":
        args = [
            "--conns",
            str(p["conns"]),
            "--rounds",
            str(p["rounds"]),
            "--max-tokens",
            str(p["max_tokens"]),
            "--pause",
            "0.3",
            "--duration",
            "90",
        ]
        return cfg.loadgen("burst", 0, args + multi, pids, aux, api, 120)
    if row == "rss":
        args = [
            "--levels",
            ",".join(map(str, p["levels"])),
            "--max-tokens",
            str(p["max_tokens"]),
            "--settle",
            str(p["settle"]),
            "--establish",
            "200",
            "--duration",
            str(p["establish_s"]),
        ]
        return cfg.loadgen("hold", port, args, pids, aux, api, 130)
    if row == "pool2":
        return measure(cfg, "nonstream", p, eps, pids, aux)
    raise ValueError(row)


def value_of(row: str, raw: dict[str, Any]) -> Any:
    """The headline number of a loadgen result for a row (None if unusable)."""
    if not raw or "fatal" in raw:
        return None
    if row == "nonstream":
        return raw.get("req_per_s")
    if row == "pool2":
        one, two = raw.get("one_req_per_s"), raw.get("req_per_s")
        return {"one": one, "two": two} if one and two else None
    if row in ("one_stream", "resp_stream", "msg_stream", "streams200"):
        return raw.get("tokens_per_s")
    if row in ("paced_cpu", "store_chunk"):
        return raw.get("server_cpu_us_per_token")
    if row == "store_req":
        return raw.get("server_cpu_us_per_req")
    if row == "ttft":
        return raw.get("ttft", {}).get("p50_ms")
    if row == "ttfb":
        return raw.get("ttft", {}).get("p99_ms")
    if row == "rss":
        out = {"idle": raw["rss_idle"] / 1e6}
        for level, d in raw.get("levels_detail", {}).items():
            out[level] = d["rss"] / 1e6
        return out
    raise ValueError(row)


# ---------------------------------------------------------------------------------------------
# targets and verdicts (numbers from the issue)

TARGET_TEXT = {
    "nonstream": "≥ 0.7×bytes-only",
    "pool2": "≥ 0.95×pool of 1",
    "one_stream": "≥ 0.40",
    "resp_stream": "≥ 0.90×chat",
    "msg_stream": "≥ 0.90×chat",
    "streams200": "≥ 0.60",
    "paced_cpu": "≤ 1.25",
    "ttft": "≤ 0.4 ms",
    "ttfb": "≤ 150 ms",
    "rss": "≤ 50/55/200 MB",
    "store_req": "≤ 1.05×proxy",
    "store_chunk": "≤ 1.05×proxy",
}
TITLE = {
    "nonstream": "non-stream req/s (ratio vs direct)",
    "pool2": "non-stream req/s, pool of 2 / pool of 1",
    "one_stream": "1 stream, chunks/s (vs bytes-only)",
    "resp_stream": "1 Responses stream, deltas/s (vs chat)",
    "msg_stream": "1 Messages stream, deltas/s (vs chat)",
    "streams200": "200 streams, chunks/s (vs bytes-only)",
    "paced_cpu": "paced 20ms: CPU µs/chunk (vs bytes-only)",
    "ttft": "added TTFT c=1, p50 (direct: raw)",
    "ttfb": "TTFB p99, 200 streams at once",
    "rss": "RSS idle/200/5000 streams, MB",
    "store_req": "store on: CPU µs/request, non-stream (vs proxy)",
    "store_chunk": "store on: CPU µs/chunk, paced 20ms (vs proxy)",
}
# The issue's bytes-only figures, to scale absolute targets to this machine's speed.
ISSUE_BYTES_ONLY = {"ttft": 0.3, "ttfb": 96.0}
ABS_TARGET = {"ttft": 0.4, "ttfb": 150.0}
ISSUE_BYTES_ONLY_RSS = {"idle": 45.0, "200": 49.0, "5000": 171.0}
ABS_TARGET_RSS = {"idle": 50.0, "200": 55.0, "5000": 200.0}
RATIO_TARGET = {
    "nonstream": (0.7, ">="),
    "one_stream": (0.40, ">="),
    "streams200": (0.60, ">="),
    "paced_cpu": (1.25, "<="),
}


def compute(row: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Ratios for display and the proxy's verdict for one row."""
    ratios: dict[str, Any] = {}
    if row in STORE_ROWS:  # the store's cost: proxy+store against the proxy, CPU per unit
        base, px = values.get("proxy"), values.get(STORE_TARGET)
        if not (isinstance(base, (int, float)) and isinstance(px, (int, float)) and base > 0):
            return dict(values), ratios, "no data"
        ratios[STORE_TARGET] = r = px / base
        return dict(values), ratios, f"{'PASS' if r <= 1.05 else 'MISS'} ({r:.3f}×proxy)"
    vals = dict(values)
    bo = vals.get("passthrough")
    if row == "ttft":  # report the *added* time: target p50 - direct p50
        d = vals.get("direct")
        for t in TARGETS:
            if vals.get(t) is not None and d is not None:
                vals[t] = vals[t] - d
        bo = vals.get("passthrough")
    for t, v in vals.items():
        if v is None or row == "rss" or (row == "ttft" and t == "direct"):
            continue
        if row == "nonstream":
            base = vals.get("direct")
        elif row == "rss":
            base = None
        else:
            base = bo
        if isinstance(v, (int, float)) and isinstance(base, (int, float)) and base > 0:
            ratios[t] = v / base
    px = vals.get("proxy")
    verdict = "-"
    if px is None:
        return vals, ratios, "n/a" if "proxy" not in values else "no data"
    if row == "pool2":  # routing over two servers against the same proxy with one
        r = px["two"] / px["one"]
        ratios["proxy"] = r
        return vals, ratios, f"{'PASS' if r >= 0.95 else 'MISS'} ({r:.2f}×pool of 1)"
    if row in RATIO_TARGET:
        lim, op = RATIO_TARGET[row]
        if bo:
            r = px / bo
            ok = r >= lim if op == ">=" else r <= lim
            verdict = f"{'PASS' if ok else 'MISS'} ({r:.2f}×bo)"
    elif row in ("ttft", "ttfb"):
        lim = ABS_TARGET[row]
        ok = px <= lim
        verdict = "PASS" if ok else "MISS"
        if bo and bo > 0:
            scale = lim / ISSUE_BYTES_ONLY[row]
            lim_s = f"{scale * bo:.2f} ms" if row == "ttft" else f"{scale * bo:.0f} ms"
            verdict += f"; scaled {'PASS' if px <= scale * bo else 'MISS'} (≤ {lim_s})"
    elif row == "rss":
        oks, soks = [], []
        for k, lim in ABS_TARGET_RSS.items():
            if k in px:
                oks.append(px[k] <= lim)
                if isinstance(bo, dict) and k in bo:
                    soks.append(px[k] <= bo[k] * lim / ISSUE_BYTES_ONLY_RSS[k])
        verdict = "PASS" if oks and all(oks) else "MISS"
        if soks:
            verdict += f"; scaled {'PASS' if all(soks) else 'MISS'}"
    return vals, ratios, verdict


def relate_rows(rows: dict[str, Any]) -> None:
    """A proxy-only row's ratio and verdict against the proxy's value in its reference row."""
    for row, reference in PROXY_ONLY.items():
        if row not in rows:
            continue
        px = rows[row]["values"].get("proxy")
        base = rows.get(reference, {}).get("values", {}).get("proxy")
        if px is None or not base:
            rows[row]["verdict"] = f"n/a (needs {reference})" if px is not None else "no data"
            continue
        ratio = px / base
        rows[row]["ratios"] = {"proxy": ratio}
        rows[row]["verdict"] = f"{'PASS' if ratio >= 0.9 else 'MISS'} ({ratio:.2f}×chat)"


# ---------------------------------------------------------------------------------------------
# output


def fmt_num(row: str, v: Any) -> str:
    if v is None:
        return "–"
    if row == "store_req":
        return f"{v:.0f} µs"
    if row == "store_chunk":
        return f"{v:.1f} µs"
    if row == "rss":
        return "/".join(f"{v[k]:.0f}" for k in v)
    if row == "pool2":
        return f"{v['two']:.0f}/{v['one']:.0f}"
    if row in ("nonstream", "one_stream", "resp_stream", "msg_stream", "streams200"):
        return f"{v / 1000:.1f}k" if v >= 10000 else f"{v:.0f}"
    if row == "paced_cpu":
        return f"{v:.1f} µs"
    return f"{v:.2f} ms" if row == "ttft" else f"{v:.0f} ms"


def flags(raw: dict[str, Any] | None) -> str:
    """'!' = errors during the measurement; '*' = client core near saturation."""
    if not raw:
        return ""
    f = ""
    short = any(d.get("open", 0) < int(k) for k, d in raw.get("levels_detail", {}).items())
    if (
        raw.get("fatal")
        or raw.get("errors")
        or raw.get("connect_failures")
        or raw.get("stopped_early")
        or short
    ):
        f += "!"
    if (raw.get("client_core_util") or 0) >= 0.9:
        f += "*"
    if (raw.get("foreign_load") or 0) > FOREIGN_MAX:
        f += "~"
    return f


LEGEND = """
(ratio): vs direct for non-stream, vs bytes-only otherwise.  Added TTFT = p50 - direct p50.
!  errors in that measurement (see notes)     *  client core >= 90% busy: may be client-bound
~  other processes used >= 10% of a core we measure on: noisy, compare with care
scaled: an absolute target rescaled by (this machine's bytes-only / the issue's bytes-only)"""


def render(result: dict[str, Any]) -> str:
    cols = ["direct"] + [t for t in TARGETS if t in result["targets"]]
    if any(r in result["rows"] for r in STORE_ROWS):
        cols.append(STORE_TARGET)
    head = ["what"] + [LABEL[c] for c in cols] + ["target (proxy)", "verdict"]
    table = [head]
    for row in ROWS:
        r = result["rows"].get(row)
        if r is None:
            continue
        title = TITLE[row]
        if row == "rss":
            title = (
                "RSS idle/" + "/".join(map(str, result["params"]["rss"]["levels"])) + " streams, MB"
            )
        line = [title]
        for c in cols:
            v = r["values"].get(c)
            if c == "direct" and row not in WITH_DIRECT:
                line.append("")
                continue
            cell = fmt_num(row, v)
            ratio = r["ratios"].get(c)
            if ratio is not None and not (row != "nonstream" and c == "passthrough"):
                cell += f" ({ratio:.2f})"
            cell += flags(r["raw"].get(c))
            line.append(cell)
        line += [TARGET_TEXT[row], r["verdict"]]
        table.append(line)
    widths = [max(len(x[i]) for x in table) for i in range(len(head))]
    out = []
    for i, line in enumerate(table):
        out.append(" | ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip())
        if i == 0:
            out.append("-+-".join("-" * w for w in widths))
    out += keys_cost(result)
    return "\n".join(out)


def metrics_overhead(result: dict[str, Any]) -> str:
    """The metrics row: proxy+metrics over proxy for the rows the issue bounds."""
    cells = []
    for row, limit in METRICS_TARGET.items():
        values = result["rows"].get(row, {}).get("values", {})
        on, off = values.get("metrics"), values.get("proxy")
        if not isinstance(on, (int, float)) or not isinstance(off, (int, float)) or not off:
            continue
        ratio = on / off
        ok = ratio <= limit if row == "paced_cpu" else ratio >= limit
        cells.append(f"{row} {ratio:.3f} ({'≤' if row == 'paced_cpu' else '≥'} {limit}: {'PASS' if ok else 'MISS'})")
    # CPU per request says the same with less noise from other processes than req/s does.
    raw = result["rows"].get("nonstream", {}).get("raw", {})
    on_cpu = raw.get("metrics", {}).get("server_cpu_us_per_req")
    off_cpu = raw.get("proxy", {}).get("server_cpu_us_per_req")
    if isinstance(on_cpu, (int, float)) and isinstance(off_cpu, (int, float)) and off_cpu:
        cells.append(f"nonstream CPU/request {on_cpu / off_cpu:.3f} ({on_cpu:.0f} vs {off_cpu:.0f} µs)")
    return "metrics on / off: " + "; ".join(cells) if cells else ""


def keys_cost(result: dict[str, Any]) -> list[str]:
    """What auth + the memory limiter cost: the server's CPU per request (non-stream) and per
    chunk, keys column against proxy column. CPU per unit of work, not throughput, so that other
    load on this shared machine does not decide the answer."""
    lines = []
    for row, what in (("nonstream", "CPU per non-stream request"), ("one_stream", "CPU per streamed chunk"),
                      ("paced_cpu", "CPU per paced chunk")):
        r = result["rows"].get(row, {})
        cpu = {t: _cpu_us_per_unit(row, r.get("raw", {}).get(t)) for t in ("proxy", "keys")}
        px, keys = cpu["proxy"], cpu["keys"]
        if px and keys:
            lines.append(f"keys + limits on vs proxy, {what}: {keys:.1f} µs vs {px:.1f} µs ({keys / px - 1:+.1%})")
    return [""] + lines if lines else []


def _cpu_us_per_unit(row: str, raw: dict[str, Any] | None) -> float | None:
    if not raw or "fatal" in raw:
        return None
    if row == "paced_cpu":
        return raw.get("server_cpu_us_per_token")
    rate = raw.get("req_per_s" if row == "nonstream" else "tokens_per_s")
    util = raw.get("server_cpu_util")
    return util / rate * 1e6 if rate and util else None


def flat_values(result: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for row, r in result.get("rows", {}).items():
        for t, v in r.get("values", {}).items():
            if isinstance(v, dict):
                for k, x in v.items():
                    out[f"{row}.{k}/{t}"] = x
            elif isinstance(v, (int, float)):
                out[f"{row}/{t}"] = v
    return out


def previous(quick: bool, exclude: Path) -> tuple[Path, dict[str, Any]] | None:
    """Newest earlier result file of the same kind (quick vs full)."""
    if not RESULTS.is_dir():
        return None
    for path in sorted(RESULTS.glob("2*.json"), reverse=True):
        if path == exclude:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if bool(data.get("quick")) == quick:
            return path, data
    return None


def render_change(new: dict[str, Any], old: dict[str, Any]) -> str:
    """Old → new for every number both runs have; rows measured with other params are skipped."""
    a, b = flat_values(old), flat_values(new)
    old_p, new_p = old.get("params", {}), new.get("params", {})
    lines, skipped = [], set()

    def order(k: str) -> tuple[int, str]:
        return ROWS.index(k.split("/")[0].split(".")[0]), k

    for k in sorted(set(a) & set(b), key=order):
        row = k.split("/")[0].split(".")[0]
        if old_p.get(row) != new_p.get(row):
            skipped.add(row)
            continue
        if a[k]:
            flag = "  ~" if _noisy(new, k) or _noisy(old, k) else ""
            lines.append(
                f"  {k:28s} {a[k]:>12.3f} → {b[k]:>12.3f}"
                f"  ({(b[k] - a[k]) / abs(a[k]) * 100:+.1f}%){flag}"
            )
    if skipped:
        lines.append(
            f"  (not compared, measured with other parameters: {', '.join(sorted(skipped))})"
        )
    return "\n".join(lines)


def _noisy(result: dict[str, Any], key: str) -> bool:
    row, target = key.split("/")[0].split(".")[0], key.split("/")[1]
    raw = result.get("rows", {}).get(row, {}).get("raw", {}).get(target, {})
    return bool((raw.get("foreign_load") or 0) > FOREIGN_MAX)


# ---------------------------------------------------------------------------------------------
# main


def pick_cpus(workers: int | None, pin: bool) -> tuple[set[int] | None, set[int] | None, str]:
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None, "off" if not pin else f"not possible ({len(cpus)} cpu)"
    n_server = max(1, min(workers or 1, len(cpus) - 1))
    server, client = set(cpus[:n_server]), {cpus[n_server]}
    return (
        server,
        client,
        f"servers on cpu {sorted(server)}, loadgen+fake upstream on cpu {sorted(client)}",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--quick", action="store_true", help="short windows, 1,000 instead of 5,000 held streams"
    )
    ap.add_argument(
        "--no-batch-row", action="store_true",
        help="skip the batch_wait row (a live request's latency while a 1,000-line batch runs)"
    )
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        help=f"rows to run (repeat or comma list): {','.join(ROWS)}",
    )
    ap.add_argument(
        "--targets", default=",".join(TARGETS), help="comma list of passthrough,naive,proxy,metrics,keys"
    )
    ap.add_argument(
        "--proxy-cmd",
        default=None,
        help="override the proxy command; {port}, {upstream}, {host} are substituted",
    )
    ap.add_argument("--workers", type=int, default=None, help="passed to the proxy as --workers N")
    ap.add_argument(
        "--proxy-config",
        default=None,
        help="TOML passed to the proxy as --config (default: proxy defaults with the "
        "admission bound lifted; 'none' passes no --config)",
    )
    ap.add_argument(
        "--no-uvloop", action="store_true", help="stdlib asyncio loop for bench processes"
    )
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    ap.add_argument(
        "--retries",
        type=int,
        default=None,
        help="re-measure when other processes load our cores (default 1; 0 with --quick)",
    )
    a = ap.parse_args(argv)
    a.rows = [r for x in a.only for r in x.split(",") if r] or list(ROWS)
    bad = set(a.rows) - set(ROWS)
    if bad:
        ap.error(f"unknown row(s) {sorted(bad)}; choose from {', '.join(ROWS)}")
    a.target_list = [t for t in a.targets.split(",") if t]
    bad = set(a.target_list) - set(TARGETS)
    if bad:
        ap.error(f"unknown target(s) {sorted(bad)}; choose from {', '.join(TARGETS)}")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    server_cpus, client_cpus, pin_note = pick_cpus(a.workers, not a.no_pin)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)  # keep the runner itself off the server core
    logdir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    cfg = Config(
        a.quick,
        server_cpus,
        client_cpus,
        a.workers,
        not a.no_uvloop,
        a.proxy_cmd,
        logdir,
        retries=max(0, min(5, a.retries if a.retries is not None else (0 if a.quick else 1))),
    )
    cfg.store_config = logdir / "bench-proxy-store.toml"
    cfg.store_config.write_text(BENCH_STORE_TOML)
    if a.proxy_config is None:
        cfg.proxy_config = logdir / "bench-proxy.toml"
        cfg.proxy_config.write_text(BENCH_PROXY_TOML)
        cfg.metrics_config = logdir / "bench-proxy-metrics.toml"
        cfg.metrics_config.write_text(BENCH_METRICS_TOML)
    elif a.proxy_config != "none":
        cfg.proxy_config = cfg.metrics_config = Path(a.proxy_config).resolve()
    targets = [t for t in TARGETS if t in a.target_list]
    errors: list[str] = []
    if any(t in targets for t in PROXIES) and not a.proxy_cmd:
        try:
            cp = subprocess.run(
                [PY, "-m", "proxy", "--help"],
                check=False,
                cwd=REPO,
                capture_output=True,
                timeout=20,
            )
            cfg.proxy_help = cp.stdout.decode(errors="replace")
            if cp.returncode != 0:
                errors.append(
                    "proxy: `python -m proxy --help` failed: "
                    + cp.stderr.decode(errors="replace")[-400:]
                )
                targets[:] = [t for t in targets if t not in PROXIES]
        except subprocess.TimeoutExpired:
            errors.append("proxy: `python -m proxy --help` timed out")
            targets[:] = [t for t in targets if t not in PROXIES]
        if a.workers and "proxy" in targets and "--workers" not in cfg.proxy_help:
            errors.append("proxy: --help does not mention --workers; passing it anyway")

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(cfg.stop_all)
    p = params(a.quick)
    started = time.monotonic()
    ts = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "version": 1,
        "timestamp": ts,
        "quick": a.quick,
        "argv": sys.argv[1:] if argv is None else argv,
        "targets": targets,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_time_source": procstat.cpu_source(),
            "uvloop": cfg.uvloop,
        },
        "pinning": pin_note,
        "params": {r: p[r] for r in a.rows},
        "rows": {},
        "errors": errors,
    }
    raws: dict[str, dict[str, Any]] = {r: {} for r in a.rows}
    print(
        f"bench: targets {', '.join(targets) or '(none)'}; pinning: {pin_note}; logs in {logdir}",
        flush=True,
    )
    t0_ticks = procstat.cpu_ticks()
    time.sleep(0.5)
    idle_busy = procstat.busy_between(t0_ticks, procstat.cpu_ticks())
    result["busy_before"] = idle_busy
    if max(idle_busy.values(), default=0.0) > FOREIGN_MAX:
        busy = ", ".join(f"cpu{k} {v:.0%}" for k, v in idle_busy.items())
        print(f"bench: WARNING machine not idle before start ({busy}): numbers will be noisy")
    try:
        for phase, delay, phase_rows in PHASES:
            rows = [r for r in phase_rows if r in a.rows]
            if not rows:
                continue
            up = cfg.start_upstream(delay)
            try:
                run_phase(cfg, phase, rows, targets, up, p, raws, errors)
            finally:
                cfg.stop(up)
    except KeyboardInterrupt:
        errors.append("interrupted")
        print("bench: interrupted", file=sys.stderr)
    finally:
        cfg.stop_all()
    for row in a.rows:
        values = {t: value_of(row, raw) for t, raw in raws[row].items()}
        if "proxy" in a.target_list:
            values.setdefault("proxy", None)
        vals, ratios, verdict = compute(row, values)
        result["rows"][row] = {
            "values": vals,
            "ratios": ratios,
            "verdict": verdict,
            "raw": raws[row],
        }
    relate_rows(result["rows"])
    result["targets"] = targets + (
        ["proxy"] if "proxy" in a.target_list and "proxy" not in targets else []
    )
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    print()
    print(render(result))
    print(LEGEND)
    if not a.no_batch_row:  # its own processes, after the table's: a live request beside a batch
        from bench import batch_wait

        try:
            result["batch_wait"] = batch_wait.measure()
            print(batch_wait.render(result["batch_wait"]))
        except (RuntimeError, OSError) as e:
            errors.append(f"batch_wait: {e}")
    overhead = metrics_overhead(result)
    if overhead:
        print(overhead)
    for e in errors:
        print(f"error: {e}")
    for row in a.rows:
        for t, raw in raws[row].items():
            if raw.get("fatal") or raw.get("error_samples"):
                print(f"note: {row}/{t}: {raw.get('fatal') or raw.get('error_samples')}")
    print(f"elapsed {result['elapsed_s']} s")
    if not a.no_save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{ts}{'-quick' if a.quick else ''}.json"
        prev = previous(a.quick, path)
        text = json.dumps(result, indent=1, sort_keys=False)
        path.write_text(text)
        (RESULTS / ("latest-quick.json" if a.quick else "latest.json")).write_text(text)
        print(f"results: {path.relative_to(REPO)}")
        if prev is not None:
            change = render_change(result, prev[1])
            if change:
                print(f"change vs {prev[0].name}:\n{change}")
    return 1 if errors else 0


def run_phase(
    cfg: Config,
    phase: str,
    rows: list[str],
    targets: list[str],
    up: Proc,
    p: dict[str, dict[str, Any]],
    raws: dict[str, dict[str, Any]],
    errors: list[str],
) -> None:
    """Start the phase's targets, then measure row by row, target after target."""
    procs: dict[str, Proc] = {}
    with_store = "proxy" in targets and any(r in STORE_ROWS for r in rows)
    try:
        if phase != "hold":
            for t in targets + ([STORE_TARGET] if with_store else []):
                try:
                    procs[t] = cfg.start_target(t, up.port)
                except TargetFailed as e:
                    errors.append(f"{phase}: {e}")
        for row in rows:
            if row == "pool2":
                measure_pool2(cfg, up, procs, p[row], raws[row], errors)
                continue
            order = (["direct"] if row in WITH_DIRECT else []) + targets
            if row in PROXY_ONLY:
                order = [t for t in order if t == "proxy"]
            if row in STORE_ROWS:
                order = ["proxy", STORE_TARGET]
            if row in INTERLEAVED:
                eps = [("direct", "ollama", up.port)] + [
                    (t, API.get(t, "openai"), procs[t].port) for t in targets if t in procs
                ]
                pids = [procs[t].pid for t in targets if t in procs]
                label = "all"
                print(f"  {row:<11s} {label:<10s} ...", end="", flush=True)
                t0 = time.monotonic()
                raw = measure_retrying(cfg, row, p[row], eps, pids, [up.pid], "multi")
                print(f"  ({time.monotonic() - t0:.1f}s)", flush=True)
                common = {k: v for k, v in raw.items() if k != "endpoints"}
                for name, _, _ in eps:
                    raws[row][name] = {**common, **raw.get("endpoints", {}).get(name, {})}
                    v = value_of(row, raws[row][name])
                    shown = fmt_num(row, v) if v is not None else raw.get("fatal", "no data")
                    print(f"  {row:<11s} {LABEL[name]:<10s} {shown}{flags(raws[row][name])}")
                check_alive(procs, row, errors, cfg)
                continue
            for t in order:
                if phase == "hold":  # fresh process: idle RSS means idle
                    try:
                        procs[t] = cfg.start_target(t, up.port)
                    except TargetFailed as e:
                        errors.append(f"{phase}: {e}")
                        continue
                if t == "direct":
                    port, api, pids = up.port, "ollama", [up.pid]
                elif t in procs:
                    port, api, pids = procs[t].port, API.get(t, "openai"), [procs[t].pid]
                else:
                    continue
                print(f"  {row:<11s} {LABEL[t]:<10s} ...", end="", flush=True)
                t0 = time.monotonic()
                aux = [] if t == "direct" else [up.pid]
                raw = measure_retrying(cfg, row, p[row], [(t, api, port)], pids, aux, t)
                raws[row][t] = raw
                v = value_of(row, raw)
                shown = fmt_num(row, v) if v is not None else raw.get("fatal", "no data")
                print(f" {shown}{flags(raw)}  ({time.monotonic() - t0:.1f}s)", flush=True)
                check_alive(procs, row, errors, cfg)
                if phase == "hold" and t in procs:
                    cfg.stop(procs.pop(t))
    finally:
        for proc in procs.values():
            cfg.stop(proc)


def measure_pool2(cfg: Config, up: Proc, procs: dict[str, Proc], p: dict[str, Any],
                  raws: dict[str, Any], errors: list[str]) -> None:
    """The proxy over two upstreams (``OLLAMA_BASE_URL`` listing both) against the same proxy
    over one, non-streaming, taking turns (one, two, one, two) so a slow spell hits both alike.
    Both upstreams report the model loaded in full, so every request is ranked, counted in
    flight and spread round-robin: the whole cost of routing."""
    single = procs.get("proxy")
    if single is None:
        return
    up2 = cfg.start_upstream(0.0)
    try:
        pool = cfg.start_target("proxy", up.port, f"http://{LOOPBACK}:{up.port},http://{LOOPBACK}:{up2.port}")
    except TargetFailed as e:
        cfg.stop(up2)
        errors.append(f"pool2: {e}")
        return
    try:
        rates: dict[str, list[float]] = {"one": [], "two": []}
        last: dict[str, Any] = {}
        for turn in ("one", "two", "one", "two"):
            proc = single if turn == "one" else pool
            aux = [up.pid] + ([up2.pid] if turn == "two" else [])
            print(f"  {'pool2':<11s} {turn:<10s} ...", end="", flush=True)
            t0 = time.monotonic()
            raw = measure_retrying(cfg, "pool2", p, [("proxy", "openai", proc.port)], [proc.pid], aux, "proxy")
            v = raw.get("req_per_s")
            if isinstance(v, (int, float)):
                rates[turn].append(float(v))
            if turn == "two":
                last = raw
            print(f" {v if v is None else round(v)}{flags(raw)}  ({time.monotonic() - t0:.1f}s)", flush=True)
        if rates["one"] and rates["two"]:
            last["one_req_per_s"] = sum(rates["one"]) / len(rates["one"])
            last["req_per_s"] = sum(rates["two"]) / len(rates["two"])
        raws["proxy"] = last
    finally:
        cfg.stop(pool)
        cfg.stop(up2)


def measure_retrying(
    cfg: Config,
    row: str,
    p: dict[str, Any],
    eps: list[tuple[str, str, int]],
    pids: list[int],
    aux: list[int],
    target: str,
) -> dict[str, Any]:
    """Measure; while other processes load our cores, re-measure and keep the cleanest."""
    raw: dict[str, Any] = {}
    for attempt in range(1 + cfg.retries):
        new = measure(cfg, row, p, eps, pids, aux)
        new["foreign_load"] = foreign_load(cfg, new, target)
        client = float(new.get("loadgen_cpu_util") or 0) + float(new.get("aux_cpu_util") or 0)
        if target == "direct":  # the fake upstream is the "server" and shares the client core
            client += float(new.get("server_cpu_util") or 0)
        new["client_core_util"] = client
        new["attempt"] = attempt + 1
        if not raw or (new["foreign_load"] or 0) < (raw["foreign_load"] or 0):
            raw = new
        if (raw["foreign_load"] or 0) <= FOREIGN_MAX or "fatal" in raw or attempt >= cfg.retries:
            break
        print(f" [other load {new['foreign_load']:.0%}, retry]", end="", flush=True)
        time.sleep(1.0)
    return raw


def check_alive(procs: dict[str, Proc], row: str, errors: list[str], cfg: Config) -> None:
    for t in list(procs):
        if not procs[t].alive():
            errors.append(f"{t} died during {row}:\n{procs[t].log_tail()}")
            cfg.stop(procs.pop(t))
