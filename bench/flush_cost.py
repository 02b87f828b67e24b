"""What flushing usage every second costs, against every five seconds (issue 23).

Two proxies with ``[store]`` on (SQLite), alike but for ``flush_interval`` (1 s, the default,
and 5 s, the old default), take the same closed-loop non-streaming load in alternating rounds
against one stand-in Ollama; the server CPU per request of each is read from /proc. The flush
is one small batched transaction per interval whatever the request rate, so its cost per
request falls as the rate grows: this load (16 connections flat out) is the worst case for
the ratio only in that the interval is short against the run, not in the rate.

    python -m bench.flush_cost [--rounds 4] [--duration 3]

Prints one JSON object: CPU µs per request for each interval (median of the rounds), the
ratio 1 s / 5 s, and the machine's busy share during the run (others' load makes it noisy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._common import LOOPBACK, free_port, wait_port

PY = sys.executable
TOML = """[admission]
max_concurrent = 0
[metrics]
enabled = false
[store]
enabled = true
url = "sqlite:///flush-{name}.db"
flush_interval = {interval}
"""


def start(cmd: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    if not wait_port(port, 20.0):
        process.kill()
        raise SystemExit(f"{cmd[2]} did not start listening")
    return process


def measure(port: int, pid: int, duration: float) -> dict[str, float]:
    out = subprocess.run([PY, "-m", "bench.loadgen", "rate", "--port", str(port), "--no-stream", "--conns", "16",
                          "--max-tokens", "20", "--duration", str(duration), "--pids", str(pid)],
                         check=True, capture_output=True, timeout=duration + 120).stdout
    result: dict[str, float] = json.loads(out)
    return result


def flush_cpu_us(rows: int = 20, flushes: int = 200) -> float:
    """CPU (this process, aiosqlite's thread included) of one usage flush of ``rows`` rows into
    SQLite: what one interval costs, whatever the request rate."""
    import asyncio
    import time

    from proxy.config import StoreConfig
    from proxy.store.backends import open_store
    from proxy.store.service import StoreService
    from proxy.upstream.outcome import Outcome

    async def run(path: str) -> float:
        store = await open_store(f"sqlite:///{path}")
        service = StoreService(store, StoreConfig(enabled=True, flush_interval=3600))
        spent = 0.0
        for _ in range(flushes):
            for i in range(rows):
                service.usage.listen(Outcome("chat.completions", f"model-{i}", "key"))
            start = time.process_time()
            await service.flush()
            spent += time.process_time() - start
        await store.close()
        return spent / flushes * 1e6

    with tempfile.TemporaryDirectory(prefix="bench-flush-") as tmp:
        return asyncio.run(run(str(Path(tmp) / "p.db")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.flush_cost")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=3.0)
    a = ap.parse_args(argv)
    import os

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-flush-") as tmp:
        try:
            up = free_port()
            procs.append(start([PY, "-m", "bench.fake_upstream", "--port", str(up)], up))
            targets: dict[str, tuple[int, int]] = {}
            for name, interval in (("1s", 1.0), ("5s", 5.0)):
                config = Path(tmp) / f"{name}.toml"
                config.write_text(TOML.format(name=name, interval=interval))
                port = free_port()
                env = {**os.environ, "OLLAMA_BASE_URL": f"http://{LOOPBACK}:{up}"}
                proc = start([PY, "-m", "proxy", "--host", LOOPBACK, "--port", str(port), "--config", str(config)],
                             port, env)
                procs.append(proc)
                targets[name] = (port, proc.pid)
            cpu: dict[str, list[float]] = {name: [] for name in targets}
            rates: dict[str, list[float]] = {name: [] for name in targets}
            busy: list[float] = []
            for r in range(a.rounds):
                for name in (list(targets) if r % 2 == 0 else list(reversed(targets))):
                    port, pid = targets[name]
                    result = measure(port, pid, a.duration)
                    cpu[name].append(result["server_cpu_us_per_req"])
                    rates[name].append(result["req_per_s"])
                    busy.append(max(result.get("cpu_busy", {}).values(), default=0.0))  # type: ignore[attr-defined]
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    med = {name: statistics.median(v) for name, v in cpu.items()}
    per_flush = flush_cpu_us()
    print(json.dumps({"flush_cpu_us (20 rows)": per_flush,
                      "flushing_cpu_share_at_1s": per_flush / 1e6, "at_5s": per_flush / 5e6,"cpu_us_per_req": med, "rounds": cpu, "req_per_s": rates,
                      "ratio_1s_vs_5s": med["1s"] / med["5s"], "cpu_busy_max": max(busy)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
