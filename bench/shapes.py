"""``python -m bench.shapes``: what other stream shapes cost the proxy, against plain streaming.

The main benchmark (``python -m bench``) measures plain content streams. Some answers take other
paths through the proxy: a forced tool call (``tool_choice`` named or "required") is decoded
from constrained JSON and streamed as argument fragments (``translate/stream.py``,
``forced_chunks_for``: every line parsed, no template), and thinking goes out under one or two
names (``[response] reasoning_field``). This runs each shape through the same proxy build
against the bench's stand-in Ollama (``bench.fake_upstream``: ``*-think`` models think, a
``format`` wraps the tokens in a JSON object), one stream flat out at a time (as the main
bench's ``one_stream`` row), the shapes taking turns round by round, and reports frames per
second and server CPU per frame as ratios against plain streaming in the same run:

    plain               content frames (the baseline)
    forced tool call    tool_choice named: tool_calls[0].function.arguments fragments
    forced, required    tool_choice "required" over two tools: the {"name", "arguments"} output
                        scanned for the name and the arguments' extent, piece by piece
    thinking, both      a thinking stream with reasoning_field = "both" (the default)
    thinking, reasoning a thinking stream with reasoning_field = "reasoning" (one name)

    python -m bench.shapes [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.run import RESULTS, Config, TargetFailed, pick_cpus

TOOL = {"type": "function", "function": {"name": "record", "parameters": {
    "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}}
OTHER = {"type": "function", "function": {"name": "other", "parameters": {"type": "object", "properties": {}}}}
# name, proxy config (reasoning_field), extra request body, token markers per frame
SHAPES: tuple[tuple[str, str, dict[str, Any], int], ...] = (
    ("plain", "both", {}, 1),
    ("forced tool call", "both", {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "record"}}}, 1),
    ("forced, required", "both", {"tools": [TOOL, OTHER], "tool_choice": "required"}, 1),
    ("thinking, both", "both", {"model": "bench-think"}, 2),
    ("thinking, reasoning", "reasoning", {"model": "bench-think"}, 1),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short windows (a smoke run)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the shapes take turns in each")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    server_cpus, client_cpus, pinning = pick_cpus(None, not a.no_pin)
    with tempfile.TemporaryDirectory(prefix="bench-shapes-") as tmp:
        cfg = Config(quick=a.quick, server_cpus=server_cpus, client_cpus=client_cpus, workers=None, uvloop=True,
                     proxy_cmd=None, logdir=Path(tmp))
        try:
            result = run(cfg, a, Path(tmp))
        except TargetFailed as exc:
            print(f"bench.shapes: {exc}", file=sys.stderr)
            return 1
        finally:
            cfg.stop_all()
    result["pinning"] = pinning
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"shapes-{stamp}{'-quick' if a.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"\nwritten: {path.relative_to(RESULTS.parent.parent)}")
    return 0


def run(cfg: Config, a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    upstream = cfg.start_upstream(0.0)
    proxies = {}
    for field in ("both", "reasoning"):
        toml = tmp / f"proxy-{field}.toml"
        toml.write_text(f'[admission]\nmax_concurrent = 0\n[response]\nreasoning_field = "{field}"\n')
        cfg.proxy_config = toml
        proxies[field] = cfg.start_target("proxy", upstream.port)
    window = 0.8 if a.quick else 3.0
    samples: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in SHAPES}
    errors: dict[str, list[str]] = {}
    for _ in range(a.rounds):
        for name, field, extra, markers in SHAPES:
            proxy = proxies[field]
            args = ["--conns", "1", "--max-tokens", "2000", "--warmup", "0.3", "--duration", str(window),
                    "--body", json.dumps(extra), "--expect-factor", str(markers)]
            raw = cfg.loadgen("rate", proxy.port, args + ["--stream"], [proxy.pid], [upstream.pid])
            if "fatal" in raw or raw.get("errors"):
                errors.setdefault(name, []).append(str(raw.get("fatal") or raw.get("error_samples")))
                continue
            frames = raw["tokens_per_s"] / markers
            cpu = raw.get("server_cpu_us_per_token")
            samples[name].append({"frames_per_s": frames, "cpu_us_per_frame": cpu * markers if cpu else 0.0})
    return {"rounds": a.rounds, "window_s": window, "samples": samples, "errors": errors,
            "medians": {name: _median(rows) for name, rows in samples.items()}}


def _median(rows: list[dict[str, float]]) -> dict[str, float] | None:
    if not rows:
        return None
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def render(result: dict[str, Any]) -> str:
    medians = result["medians"]
    base = medians.get("plain")
    lines = ["| stream shape | frames/s | vs plain | CPU µs/frame | vs plain |", "|---|---|---|---|---|"]
    for name, m in medians.items():
        if m is None or base is None:
            lines.append(f"| {name} | failed: {result['errors'].get(name)} | | | |")
            continue
        lines.append(f"| {name} | {m['frames_per_s']:,.0f} | {m['frames_per_s'] / base['frames_per_s']:.2f} | "
                     f"{m['cpu_us_per_frame']:.1f} | {m['cpu_us_per_frame'] / base['cpu_us_per_frame']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
