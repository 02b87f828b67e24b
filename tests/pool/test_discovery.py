"""``proxy/upstream/discovery.py``: ``/api/tags`` and ``/api/ps`` answers as inventory and residency."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import UpstreamError
from proxy.upstream.discovery import inventory, residency
from proxy.upstream.routing import Residency


def test_inventory_is_keyed_by_canonical_name() -> None:
    tags = {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"},
                       {"name": "registry.ollama.ai/library/Qwen3:8b"}, {"name": ""}, "junk"]}
    assert inventory(tags) == {"llama3.2:latest": "llama3.2:latest", "qwen3:8b": "registry.ollama.ai/library/Qwen3:8b"}


@pytest.mark.parametrize(("ps", "expected"), [
    ({"models": [{"model": "llama3.2:latest", "size": 10, "size_vram": 10, "expires_at": "2026-01-01T00:00:00Z"}]},
     {"llama3.2:latest": Residency("llama3.2:latest", 10, 10, "2026-01-01T00:00:00Z")}),
    ({"models": [{"name": "qwen3:8b", "size": 10, "size_vram": 4}]},
     {"qwen3:8b": Residency("qwen3:8b", 10, 4, None)}),
    ({"models": [{"model": "a", "size": "10", "size_vram": 1}, {"model": "b", "size": 1, "size_vram": True},
                 {"size": 1, "size_vram": 1}, 7]}, {}),
    ({"models": []}, {}),
], ids=["fully in VRAM", "partly, no expiry", "malformed entries skipped", "nothing loaded"])
def test_residency(ps: Any, expected: dict[str, Residency]) -> None:
    assert residency(ps) == expected


@pytest.mark.parametrize("bad", [None, {}, {"models": "x"}, []], ids=["null", "no models", "not a list", "a list"])
def test_answers_without_models_are_upstream_errors(bad: Any) -> None:
    with pytest.raises(UpstreamError):
        residency(bad)
    with pytest.raises(UpstreamError):
        inventory(bad)
