"""``deploy/grafana/ollama-proxy.json``: every query names only metrics the proxy exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from proxy.app import create_app
from proxy.config import Config
from proxy.observe.metrics import METRICS

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ollama-proxy.json"
METRIC = re.compile(r"\bollama_proxy_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# Exported only with server.workers > 1 (its pid label comes from the multiprocess mode).
MULTIPROCESS_ONLY = {"ollama_proxy_worker_start_time_seconds"}


def exported(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry can export, whether or not a series exists yet."""
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES.get(family.type, ("",))}


def queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def test_every_query_names_an_exported_metric() -> None:
    names = exported(create_app(Config())[METRICS].registry) | MULTIPROCESS_ONLY
    dashboard = json.loads(DASHBOARD.read_text())
    found = list(queries(dashboard))
    assert len(found) >= 10
    for query in found:
        used = set(METRIC.findall(query))
        assert used, f"a query that names no proxy metric: {query}"
        assert used <= names, f"not exported: {sorted(used - names)} in {query}"


def test_the_dashboard_plots_what_the_issue_asks_for() -> None:
    text = DASHBOARD.read_text()
    for needle in ("histogram_quantile(0.5, sum by (le, model) (rate(ollama_proxy_time_to_first_token",
                   "histogram_quantile(0.95, sum by (le, model) (rate(ollama_proxy_time_to_first_token",
                   'ollama_proxy_tokens_total{type=\\"completion\\"', "sum by (status_code)",
                   "ollama_proxy_requests_in_flight", "ollama_proxy_admission_waiting"):
        assert needle in text, needle
