"""Instructions per request (and per streamed chunk) of two or more checkouts, counted by callgrind.

    python -m bench.ir --side old=<checkout of f96360f> --side new=.[:full] [--requests 2000] [--paced]

CPU time on a shared virtual machine moves ±10-30 % from round to round (``bench.ab`` reports
that spread); the instructions a process executes for the same work hardly move (±1-2 %: the
collector's timing, the batching of reads). Each side's proxy runs under ``valgrind
--tool=callgrind``; after a warm-up its counters are zeroed, a fixed number of requests is sent
(16 connections, ``stream: false``, ``max_tokens`` 10; with ``--paced``, 20 connections streaming
100 tokens at 20 ms each, every chunk its own read), and the dump's total is divided by the
requests (or chunks). Instructions are not time (cache misses and branches are not counted), so
this is the low-noise half of the A/B; ``bench.ab`` is the timed half. Sides run two at a time.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .ab import CONFIGS, PY, free_port, spawn, wait


def count(name: str, tree: str, conf: str, upstream: int, a: argparse.Namespace, tmp: str) -> float:
    """Instructions per request (per chunk with ``--paced``) of one side."""
    cfg = Path(tmp) / f"{name}.toml"
    cfg.write_text(CONFIGS[conf].replace("{tmp}", f"{tmp}/{name}"))
    Path(tmp, name).mkdir(exist_ok=True)
    out = Path(tmp) / f"{name}.cg"
    port = free_port()
    proxy = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", PY, "-m", "proxy", "--host", "127.0.0.1",
         "--port", str(port), "--config", str(cfg)],
        env={**os.environ, "PYTHONPATH": tree, "OLLAMA_BASE_URL": f"http://127.0.0.1:{upstream}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait(port, 300)
        api = "openai" if conf in ("defaults", "nometrics") else "openai-key"
        if a.paced:
            shape = ["--conns", "20", "--max-tokens", "100"]
            per = 100  # chunks per request
        else:
            shape = ["--no-stream", "--conns", "16", "--max-tokens", "10"]
            per = 1

        def run(n: int) -> None:
            subprocess.run([PY, "-m", "bench.loadgen", "rate", "--port", str(port), "--api", api, *shape,
                            "--duration", "900", "--warmup", "0", "--max-requests", str(n)],
                           check=True, capture_output=True)

        run(300 if not a.paced else 60)
        subprocess.run(["callgrind_control", "-z", str(proxy.pid)], check=True, capture_output=True)
        run(a.requests)
        subprocess.run(["callgrind_control", "-d", str(proxy.pid)], check=True, capture_output=True)
    finally:
        os.killpg(proxy.pid, signal.SIGINT)
        proxy.wait(120)
    dumps = sorted(Path(tmp).glob(f"{name}.cg.*"))
    if not dumps:
        raise SystemExit(f"{name}: callgrind wrote no dump")
    for line in dumps[0].read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1]) / (a.requests * per)
    raise SystemExit(f"{name}: no totals in {dumps[0]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", action="append", required=True,
                    help="NAME=TREE[:CONFIG] (repeatable; the first is the reference of the ratios)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--paced", action="store_true", help="per streamed chunk, paced at 20 ms")
    a = ap.parse_args()
    if a.paced and a.requests == 2000:
        a.requests = 200
    tmp = tempfile.mkdtemp(prefix="ir-")
    upstream = free_port()
    fake = spawn([PY, "-m", "bench.fake_upstream", "--port", str(upstream),
                  *(["--delay-ms", "20"] if a.paced else [])], 1)
    try:
        wait(upstream)
        specs = []
        for spec in a.side:
            name, _, rest = spec.partition("=")
            tree, _, conf = rest.partition(":")
            specs.append((name, tree, conf or "defaults"))
        with ThreadPoolExecutor(2) as pool:
            counts = list(pool.map(lambda s: count(*s, upstream, a, tmp), specs))
    finally:
        os.killpg(fake.pid, signal.SIGTERM)
        fake.wait(5)
    unit = "chunk" if a.paced else "request"
    ref = counts[0]
    for (name, _, conf), n in zip(specs, counts):
        print(f"{name:10s} {conf:12s} {n:12,.0f} instructions per {unit}  ({n / ref:.3f} of {specs[0][0]})")


if __name__ == "__main__":
    main()
