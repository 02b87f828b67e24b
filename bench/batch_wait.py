"""``python -m bench.batch_wait``: what a running batch costs a live request (docs/batches.md).

The proxy (store on, SQLite) in front of the paced fake upstream, ``[admission] max_concurrent
= 2`` and ``[batches] concurrency = 2``, so batch lines always hold or wait for the slots. A
live client sends requests one after another, first on the idle proxy, then while a batch of
1,000 lines runs; the row is the ratio of the live request's median latency with the batch to
without. Batch lines queue in the low class, so a live request waits at most for one slot to
free (one line's answer), never behind the batch's queue. Ratios in one run, never wall-clock.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import LOOPBACK, free_port

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent
LINES = 1_000
TOKENS = 20  # per answer, one every DELAY_MS: a line takes ~TOKENS * DELAY_MS
DELAY_MS = 2.0
SAMPLES = 40


def _request(port: int, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _chat_body(content: str) -> dict[str, Any]:
    return {"model": "bench", "messages": [{"role": "user", "content": content}],
            "max_tokens": TOKENS}


def _live_latency(port: int, n: int) -> list[float]:
    body = json.dumps(_chat_body("live")).encode()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        status, _ = _request(port, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"live request answered {status}")
        out.append(time.perf_counter() - started)
    return out


def _upload_batch(port: int) -> str:
    lines = b"".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": _chat_body(f"line {i}")}).encode() + b"\n" for i in range(LINES))
    boundary = "benchboundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
            "Content-Type: application/jsonl\r\n\r\n").encode() + lines + f"\r\n--{boundary}--\r\n".encode()
    status, raw = _request(port, "POST", "/v1/files", form, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    if status != 200:
        raise RuntimeError(f"upload answered {status}: {raw[:200]!r}")
    file_id = json.loads(raw)["id"]
    status, raw = _request(port, "POST", "/v1/batches", json.dumps({
        "input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}).encode(),
        {"Content-Type": "application/json"})
    if status != 200:
        raise RuntimeError(f"batch answered {status}: {raw[:200]!r}")
    return str(json.loads(raw)["id"])


def _done(port: int, batch_id: str) -> int:
    _, raw = _request(port, "GET", f"/v1/batches/{batch_id}")
    counts = json.loads(raw).get("request_counts") or {}
    return int(counts.get("completed", 0)) + int(counts.get("failed", 0))


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            _request(port, "GET", "/livez")
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("not listening")


def measure() -> dict[str, Any]:
    """The live request's median latency idle and during the batch, and their ratio."""
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        up_port, port = free_port(), free_port()
        config = Path(tmp) / "proxy.toml"
        config.write_text(f'[server]\nport = {port}\nhost = "{LOOPBACK}"\n[admission]\nmax_concurrent = 2\n'
                          f'[store]\nenabled = true\nurl = "sqlite:///store.db"\n'
                          '[batches]\nconcurrency = 2\npoll_interval = 0.2\n')
        procs = [subprocess.Popen([PY, "-m", "bench.fake_upstream", "--port", str(up_port), "--delay-ms",
                                   str(DELAY_MS)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            time.sleep(0.5)
            procs.append(subprocess.Popen([PY, "-m", "proxy", "--config", str(config)], cwd=REPO,
                                          env={**os.environ, "OLLAMA_BASE_URL": f"http://{LOOPBACK}:{up_port}"},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait_listening(port, procs[-1])
            _live_latency(port, 5)  # warm up
            idle = _live_latency(port, SAMPLES)
            batch_id = _upload_batch(port)
            deadline = time.monotonic() + 30
            while _done(port, batch_id) < 10 and time.monotonic() < deadline:  # the batch is under way
                time.sleep(0.05)
            busy = _live_latency(port, SAMPLES)
            lines_done = _done(port, batch_id)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(10)
    idle_ms, busy_ms = statistics.median(idle) * 1e3, statistics.median(busy) * 1e3
    return {"idle_ms": round(idle_ms, 2), "with_batch_ms": round(busy_ms, 2), "ratio": round(busy_ms / idle_ms, 2),
            "batch_lines_done_meanwhile": lines_done, "lines": LINES}


def render(result: dict[str, Any]) -> str:
    return (f"batch_wait: live request median {result['with_batch_ms']:.1f} ms while a {result['lines']}-line "
            f"batch runs vs {result['idle_ms']:.1f} ms idle: ratio {result['ratio']:.2f} "
            f"({result['batch_lines_done_meanwhile']} lines done meanwhile)")


if __name__ == "__main__":
    print(render(measure()))
