"""``proxy/observe/labels.py``: label values stay bounded whatever a client sends."""

from __future__ import annotations

import pytest

from proxy.observe.labels import OTHER, UPSTREAM_KINDS, ModelLabels, route_name, upstream_kind
from proxy.observe.web import escape

ROUTES = [
    ("the v1 prefix is dropped, slashes become dots", "/v1/chat/completions", "chat.completions"),
    ("one segment", "/v1/embeddings", "embeddings"),
    ("path parameters are dropped", "/v1/models/{id}", "models"),
    ("a route outside /v1", "/readyz", "readyz"),
    ("the native relay is named as its outcome", "/api/{path}", "passthrough"),
    ("a nested future route", "/v1/responses/{id}/input_items", "responses.input_items"),
]


@pytest.mark.parametrize("pattern, name", [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES])
def test_route_names(pattern: str, name: str) -> None:
    assert route_name(pattern) == name


KINDS = [
    ("refused", "upstream_unreachable", "refused"),
    ("time-out", "upstream_timeout", "timeout"),
    ("Ollama busy", "upstream_busy", "5xx"),
    ("Ollama's error", "upstream_error", "5xx"),
    ("not Ollama's API", "upstream_malformed", "malformed"),
    ("a stream cut by a fault", "mid_stream", "mid_stream"),
    ("the client's fault is not Ollama's", "model_not_found", None),
    ("a bug in the proxy is not Ollama's", "internal", None),
    ("no error", None, None),
]


@pytest.mark.parametrize("code, kind", [r[1:] for r in KINDS], ids=[r[0] for r in KINDS])
def test_upstream_kinds(code: str | None, kind: str | None) -> None:
    assert upstream_kind(code) == kind
    assert kind is None or kind in UPSTREAM_KINDS


def test_a_model_is_labelled_only_when_ollama_has_it() -> None:
    labels = ModelLabels()
    assert labels.label("llama3.2") == OTHER  # nothing known yet
    labels.update(["llama3.2:latest", "hf.co/org/repo:Q4_K_M"])
    assert [labels.label(m) for m in ("llama3.2", "LLaMA3.2:latest", "registry.ollama.ai/library/llama3.2")] == [
        "llama3.2:latest"] * 3
    assert labels.label("hf.co/org/repo:Q4_K_M") == "hf.co/org/repo:q4_k_m"
    assert labels.label("made-up\nname") == OTHER
    assert labels.learn("qwen3:8b") == "qwen3:8b"  # Ollama just served it
    labels.update(["llama3.2:latest"])  # and then it was removed
    assert labels.label("qwen3:8b") == OTHER


def test_learning_is_bounded() -> None:
    labels = ModelLabels()
    for i in range(10_000):
        labels.learn(f"model-{i}")
    assert len(labels.known) <= 4096


ESCAPES = [
    ("plain text is unchanged", "/v1/chat/completions", "/v1/chat/completions"),
    ("line breaks cannot start a new log line", "a\r\nb", "a\\r\\nb"),
    ("quotes and backslashes", 'a"b\\c', 'a\\"b\\\\c'),
    ("unicode line separators", "a\u2028b", "a\\u2028b"),
    ("terminal escapes", "\x1b[31m", "\\x1b[31m"),
    ("long text is cut", "x" * 300, "x" * 256 + "..."),
]


@pytest.mark.parametrize("text, escaped", [r[1:] for r in ESCAPES], ids=[r[0] for r in ESCAPES])
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped
