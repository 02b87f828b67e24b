"""proxy/access/cors.py: origins and their patterns, JSON media types, the Host check."""

from __future__ import annotations

import pytest

from proxy.access.cors import Origins, allowed_host_names, host_allowed, is_json, is_loopback
from proxy.gates.access import same_origin
from proxy.gates.policy import EXCEPTIONS, policy_for

ORIGINS = [
    (["https://app.example"], "https://app.example", True),
    (["https://app.example"], "HTTPS://APP.EXAMPLE", True),
    (["https://app.example"], "https://app.example:8443", False),
    (["https://app.example"], "null", False),
    (["http://localhost:*"], "http://localhost:5173", True),
    (["http://localhost:*"], "http://localhost.evil.example", False),
    (["http://localhost:*"], "http://localhost:5173/../x", False),
    (["local"], "http://127.0.0.1:3000", True),
    (["local"], "https://localhost", True),
    (["local"], "http://0.0.0.0:8080", True),
    (["local"], "tauri://localhost", True),
    (["local"], "vscode-webview://abc123", True),
    (["local"], "app://obsidian.md", True),
    (["local"], "https://evil.example", False),
    (["local"], "http://127.0.0.1.evil.example", False),
    (["*"], "https://anything.example", True),
    ([], "http://localhost:5173", False),
]


@pytest.mark.parametrize("entries, origin, allowed", ORIGINS, ids=[
    "exact", "exact ignores case", "another port is another origin", "null is not an exact origin",
    "port pattern", "port pattern is not a host prefix", "no path sneaks through a pattern",
    "local: 127.0.0.1 any port", "local: https localhost", "local: 0.0.0.0", "local: tauri",
    "local: vscode webview", "local: app scheme", "local: not the web", "local: not a look-alike",
    "any", "none by default",
])
def test_origins(entries: list[str], origin: str, allowed: bool) -> None:
    assert Origins(entries).allows(origin) is allowed


@pytest.mark.parametrize("content_type, ok", [
    ("application/json", True), ("application/json; charset=utf-8", True), ("Application/JSON", True),
    ("application/merge-patch+json", True), ("text/plain", False), ("application/x-www-form-urlencoded", False),
    ("multipart/form-data; boundary=x", False), ("", False), ("text/json", False),
])
def test_is_json(content_type: str, ok: bool) -> None:
    assert is_json(content_type) is ok


@pytest.mark.parametrize("host, configured, listen, ok", [
    ("localhost:8080", (), "127.0.0.1", True),
    ("127.0.0.1:8080", (), "127.0.0.1", True),
    ("[::1]:8080", (), "::1", True),
    ("LOCALHOST", (), "localhost", True),
    ("rebound.attacker.example:8080", (), "127.0.0.1", False),
    ("127.0.0.2", (), "127.0.0.1", False),
    (None, (), "127.0.0.1", True),
    ("anything.example", (), "0.0.0.0", True),
    ("proxy.internal:443", ("proxy.internal",), "0.0.0.0", True),
    ("other.internal", ("proxy.internal",), "0.0.0.0", False),
], ids=[
    "localhost on loopback", "127.0.0.1 on loopback", "[::1] on loopback", "case", "DNS rebinding",
    "another loopback address is not listed", "HTTP/1.0 without Host", "any when public and unlisted",
    "listed", "not listed",
])
def test_host_allowed(host: str | None, configured: tuple[str, ...], listen: str, ok: bool) -> None:
    assert host_allowed(host, allowed_host_names(configured, listen)) is ok


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("0.0.0.0", False),
    ("192.168.1.2", False), ("example.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_only_the_probes_need_no_key_and_embeddings_reserve_no_answer() -> None:
    assert {p for p, policy in EXCEPTIONS.items() if not policy.key} == {"/livez", "/readyz", "/v1/health"}
    assert policy_for("POST", "/v1/chat/completions").metered
    assert policy_for("POST", "/v1/responses").json  # a route added later is gated by default
    assert not policy_for("POST", "/v1/embeddings").completion
    assert not policy_for("GET", "/v1/models").json


SAME_ORIGIN = [
    ("the page's own origin", "http://127.0.0.1:8080", "127.0.0.1:8080", True),
    ("behind TLS termination", "https://proxy.example", "proxy.example", True),
    ("another port", "http://127.0.0.1:3000", "127.0.0.1:8080", False),
    ("another host", "http://evil.example", "127.0.0.1:8080", False),
    ("a host that only starts alike", "http://127.0.0.1:80801", "127.0.0.1:8080", False),
    ("no Host header", "http://127.0.0.1:8080", None, False),
    ("an opaque origin", "null", "127.0.0.1:8080", False),
]  # fmt: skip


@pytest.mark.parametrize("origin, host, same", [r[1:] for r in SAME_ORIGIN], ids=[r[0] for r in SAME_ORIGIN])
def test_a_page_calling_its_own_origin_is_no_cross_site_request(origin: str, host: str | None, same: bool) -> None:
    assert same_origin(origin, host) is same
