"""``python -m proxy usage``: the store's usage totals on a terminal, for an operator without a
dashboard.

``--since 7d`` (or ``12h``, ``30m``) picks the window; ``--by key,model,day`` the columns to group
by (also ``hour``, ``endpoint`` and ``requested``, the model name asked for); ``--format`` table, csv or json. It reads the store the
config file names (``[store] url``, even with ``enabled = false``), opens it read-mostly (the
schema is migrated if needed, as the proxy would) and never creates a SQLite file that is not
there. Usage still in a running proxy's memory (at most one ``flush_interval``) is not shown.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from ..config import ConfigError, load_config, store_relative_to
from .backends import open_store
from .base import StoreError, UsageRow
from .sqlite import sqlite_path

__all__ = ["main", "summarize"]

DIMENSIONS = {"key": "key_id", "model": "model", "day": "day", "hour": "hour", "endpoint": "endpoint",
              "requested": "requested"}  # requested: the name asked for ([models.aliases]), else the model
MEASURES = ("requests", "errors", "input_tokens", "output_tokens", "seconds")
_SPAN = re.compile(r"(\d+)([mhdw])")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ollama-openai-proxy usage",
                                     description="Print token usage from the proxy's store.")
    parser.add_argument("--config", metavar="PATH", help="TOML config file naming [store] url")
    parser.add_argument("--since", default="7d", help="window ending now: 30m, 12h, 7d, 2w (default 7d)")
    parser.add_argument("--by", default="key,model,day",
                        help=f"columns to group by, comma-separated: {', '.join(DIMENSIONS)} (default key,model,day)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    return parser.parse_args(argv)


def span_seconds(since: str) -> int:
    match = _SPAN.fullmatch(since.strip())
    if not match or int(match[1]) == 0:
        raise ValueError(f"--since: must be a number and a unit (m, h, d, w), like 7d; got {since!r}")
    return int(match[1]) * _UNIT[match[2]]


def dimensions(by: str) -> list[str]:
    names = [b.strip() for b in by.split(",") if b.strip()]
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown:
        raise ValueError(f"--by: unknown column {unknown[0]!r} (known: {', '.join(DIMENSIONS)})")
    return names


def summarize(rows: Sequence[UsageRow], by: Sequence[str]) -> list[dict[str, Any]]:
    """Hourly rows summed per the ``by`` columns, sorted by them."""
    totals: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        values = {"key": r.key_id, "model": r.model, "endpoint": r.endpoint, "requested": r.requested or r.model,
                  "day": time.strftime("%Y-%m-%d", time.gmtime(r.hour)),
                  "hour": time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(r.hour))}
        sums = totals.setdefault(tuple(values[b] for b in by), [0, 0, 0, 0, 0.0])
        for i, v in enumerate((r.requests, r.errors, r.input_tokens, r.output_tokens, r.seconds)):
            sums[i] += v
    return [{**dict(zip(by, group, strict=True)),
             **{m: (round(v, 3) if m == "seconds" else int(v)) for m, v in zip(MEASURES, sums, strict=True)}}
            for group, sums in sorted(totals.items())]


def render(records: list[dict[str, Any]], columns: list[str], fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps(records, option=orjson.OPT_INDENT_2).decode()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue().rstrip("\n")
    cells = [columns, *[[str(r[c]) for c in columns] for r in records]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    numeric = [c in MEASURES for c in columns]
    lines = ["  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(row, widths, numeric, strict=True))
             for row in cells]
    return "\n".join(line.rstrip() for line in lines) if records else "no usage recorded in this window"


async def read(url: str, start: int, end: int) -> list[UsageRow]:
    store = await open_store(url)
    try:
        return await store.usage(start, end)
    finally:
        await store.close()


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        if args.config is not None:  # beside the config file, also when [store] enabled = false
            config = store_relative_to(config, Path(args.config).resolve().parent)
        by = dimensions(args.by)
        span = span_seconds(args.since)
    except (ConfigError, ValueError) as exc:
        print(f"ollama-openai-proxy usage: {exc}", file=sys.stderr)
        return 2
    url = config.store.url
    if url.startswith("sqlite://"):
        path = sqlite_path(url)
        if path == ":memory:" or not Path(path).exists():
            print(f"ollama-openai-proxy usage: no store at {url} (is [store] enabled and has the proxy run?)",
                  file=sys.stderr)
            return 1
    now = int(time.time())
    try:
        rows = asyncio.run(read(url, (now - span) // 3600 * 3600, now + 3600))
    except (StoreError, OSError) as exc:
        print(f"ollama-openai-proxy usage: cannot read the store: {exc}", file=sys.stderr)
        return 1
    print(render(summarize(rows, by), [*by, *MEASURES], args.format))
    return 0
