"""A/B of two checkouts of the proxy with bench/'s pieces, taking turns on the same pinned cores.

    python -m bench.ab --side old=<checkout of f96360f> --side new=.[:full] [--rounds 3] [--ttft]

Proxies on core 0, fake upstream + load generator on core 1 (as python -m bench). Each round runs
every side once, in alternating order: non-stream CPU/request (16 conns, max_tokens 10), paced
CPU/chunk (200 streams, 20 ms/token), and (with --ttft) the 200-stream burst TTFT p50 of b against
the bytes-only pass-through. Run from the repo whose bench/ should be used (cwd).
"""
from __future__ import annotations

import argparse, hashlib, json, os, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path

PY = sys.executable
KEY = "sk-bench-0000000000000000000000000000000000000000"
BASE = "[admission]\nmax_concurrent = 0\n"
CONFIGS = {
    "defaults": BASE,  # shipped defaults (metrics on) but the admission bound
    "nometrics": BASE + "[metrics]\nenabled = false\n",
    "full": BASE + f'[store]\nenabled = true\nurl = "sqlite:///{{tmp}}/ab-store.db"\n'
            f'[[auth.keys]]\nid = "bench"\nsha256 = "{hashlib.sha256(KEY.encode()).hexdigest()}"\n'
            "rpm = 1000000000\ntpm = 1000000000000\n",
}
# One feature taken out of "full" at a time: where the all-features cost goes.
_KEY = f'[[auth.keys]]\nid = "bench"\nsha256 = "{hashlib.sha256(KEY.encode()).hexdigest()}"\n'
_STORE = '[store]\nenabled = true\nurl = "sqlite:///{tmp}/ab-store.db"\n'
CONFIGS |= {
    "key": BASE + "[metrics]\nenabled = false\n" + _KEY,
    "key+limits": BASE + "[metrics]\nenabled = false\n" + _KEY + "rpm = 1000000000\ntpm = 1000000000000\n",
    "full-store": BASE + _KEY + "rpm = 1000000000\ntpm = 1000000000000\n",
    "full-metrics": BASE + "[metrics]\nenabled = false\n" + _STORE + _KEY
                    + "rpm = 1000000000\ntpm = 1000000000000\n",
    "full-limits": BASE + _STORE + _KEY,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(port: int, t: float = 20.0) -> None:
    end = time.time() + t
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {port} never opened")


def spawn(cmd: list[str], cpu: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", str(cpu), *cmd], env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def loadgen(args: list[str]) -> dict:
    out = subprocess.run(["taskset", "-c", "1", PY, "-m", "bench.loadgen", *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", action="append", required=True,
                    help="NAME=TREE[:CONFIG] (repeatable; the first is the reference of the ratios)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--ttft", action="store_true")
    ap.add_argument("--no-paced", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ab-")
    procs = []
    try:
        up, paced = free_port(), free_port()
        procs.append(spawn([PY, "-m", "bench.fake_upstream", "--port", str(up)], 1))
        procs.append(spawn([PY, "-m", "bench.fake_upstream", "--port", str(paced), "--delay-ms", "20"], 1))
        wait(up), wait(paced)
        sides = {}
        specs = []
        for spec in a.side:
            name, _, rest = spec.partition("=")
            tree, _, conf = rest.partition(":")
            specs.append((name, tree, conf or "defaults"))
        for name, tree, conf in specs:
            cfg = Path(tmp) / f"{name}.toml"
            cfg.write_text(CONFIGS[conf].replace("{tmp}", tmp))
            ports = {}
            for kind, upstream in (("fast", up), ("paced", paced)):
                port = free_port()
                p = spawn([PY, "-m", "proxy", "--host", "127.0.0.1", "--port", str(port), "--config", str(cfg)], 0,
                          {"PYTHONPATH": tree, "OLLAMA_BASE_URL": f"http://127.0.0.1:{upstream}"})
                procs.append(p)
                ports[kind] = (port, p.pid)
            sides[name] = (ports, "openai" if conf in ("defaults", "nometrics") else "openai-key")
        for ports, _ in sides.values():
            for port, _pid in ports.values():
                wait(port)
        bo = free_port()
        procs.append(spawn([PY, "-m", "bench.passthrough", "--port", str(bo), "--upstream", f"http://127.0.0.1:{paced}"], 0))
        wait(bo)
        results: dict[str, dict[str, list[float]]] = {n: {"req_us": [], "chunk_us": [], "ttft_p50_ms": []} for n in sides}
        for r in range(a.rounds):
            order = list(sides)[r % len(sides):] + list(sides)[:r % len(sides)]
            for n in order:
                ports, api = sides[n]
                port, pid = ports["fast"]
                out = loadgen(["rate", "--port", str(port), "--api", api, "--no-stream", "--conns", "16",
                               "--max-tokens", "10", "--duration", str(a.duration), "--warmup", "1", "--pids", str(pid)])
                results[n]["req_us"].append(out["server_cpu_us_per_req"])
                if not a.no_paced:
                    port, pid = ports["paced"]
                    out = loadgen(["rate", "--port", str(port), "--api", api, "--conns", "200", "--max-tokens", "100",
                                   "--duration", str(a.duration), "--warmup", "1", "--ramp", "0.5", "--pids", str(pid)])
                    results[n]["chunk_us"].append(out["server_cpu_us_per_token"])
            if a.ttft:
                last = list(sides)[-1]
                ports, api = sides[last]
                out = loadgen(["burst", "--endpoint", f"b={api}:{ports['paced'][0]}", "--endpoint",
                               f"bo=openai:{bo}", "--conns", "200", "--max-tokens", "100", "--rounds", "3"])
                eps = out["endpoints"]
                results[last]["ttft_p50_ms"].append(eps["b"]["ttft"]["p50_ms"])
                results.setdefault("bytes-only", {"ttft_p50_ms": []})["ttft_p50_ms"].append(eps["bo"]["ttft"]["p50_ms"])
            print(json.dumps({"round": r, **results}), flush=True)
        for n, rows in results.items():
            for k, v in rows.items():
                if v:
                    print(f"{n:10s} {k:12s} " + " ".join("-" if x is None else f"{x:.2f}" for x in v))
        ref = list(sides)[0]
        for n in list(sides)[1:]:
            for k in ("req_us", "chunk_us"):
                ratios = sorted(y / x for x, y in zip(results[ref][k], results[n][k]) if x and y)
                if ratios:
                    q = lambda f: ratios[min(len(ratios) - 1, int(f * len(ratios)))]
                    print(f"{n}/{ref} {k}: median {q(0.5):.3f}, quartiles {q(0.25):.3f}-{q(0.75):.3f}, "
                          f"range {ratios[0]:.3f}-{ratios[-1]:.3f} over {len(ratios)} rounds")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            p.wait(5)


if __name__ == "__main__":
    main()
