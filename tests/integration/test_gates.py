"""Every route of the app passes every access gate: a test that lists ``app.router`` itself,
so a route added later is checked without anyone remembering to add it here."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.access.keys import hash_key, new_key
from proxy.app import create_app
from proxy.appkeys import ADMISSION
from proxy.gates.pipeline import PIPELINE, kind_of, undeclared
from proxy.gates.policy import policy_for
from tests.conftest import AppFactory, make_config
from tests.fake_ollama import FakeOllama

KEY = new_key()
ALLOWED = "https://app.example"
CONFIG = {
    "auth": {"keys": [{"id": "k", "sha256": hash_key(KEY)}]},
    "cors": {"origins": [ALLOWED]},
    "passthrough": {"enabled": True},
    "store": {"enabled": True, "url": "sqlite://"},  # its routes too (usage, stored completions)
}
# A concrete path for each kind of placeholder a route may have.
_FILL = {"id": "llama3.2:latest", "path": "chat"}
PROBES = {"/livez", "/readyz", "/v1/health"}
CONSOLE = "/console"  # static files, no data: the page asks for a key when the API says 401


def concrete(route: web.AbstractRoute) -> str:
    canonical = route.resource.canonical if route.resource is not None else ""
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: _FILL.get(m.group(1), "x"), canonical)


def every_route(app: web.Application) -> list[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        methods = ("GET", "POST") if route.method == "*" else (route.method,)
        found.update((method, concrete(route)) for method in methods)
    return sorted(found)


async def call(url: str, method: str, path: str, headers: dict[str, str] | None = None,
               data: bytes | None = None) -> tuple[int, dict[str, Any] | None]:
    async with aiohttp.ClientSession() as session, \
            session.request(method, url + path, headers=headers or {}, data=data) as r:
        body = await r.read()
        try:
            return r.status, (await r.json(content_type=None)) if body else None
        except ValueError:
            return r.status, None


@pytest.fixture
async def served(app_factory: AppFactory) -> tuple[str, list[tuple[str, str]], web.Application]:
    url, app = await app_factory(CONFIG)
    routes = every_route(app)
    assert {("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("POST", "/api/chat"), ("GET", "/metrics"),
            ("POST", "/v1/responses"), ("GET", "/v1/organization/usage/completions"),
            ("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens"),
            ("POST", "/v1/chat/completions/{id}".replace("{id}", _FILL["id"]))} <= set(routes)
    return url, routes, app


def _code(body: dict[str, Any] | None) -> Any:
    """The OpenAI error code; for Anthropic's envelope (the Messages routes), which has only a
    type, the code whose refusal has that type there."""
    if not body:
        return None
    error = body["error"]
    if body.get("type") == "error":
        return ANTHROPIC_TYPES[error["type"]]
    return error["code"]


ANTHROPIC_TYPES = {"authentication_error": "invalid_api_key", "invalid_request_error": "unsupported_media_type",
                   "permission_error": "origin_or_host_not_allowed"}


def _is(body: dict[str, Any] | None, code: str) -> bool:
    found = _code(body)
    return found == code or found == "origin_or_host_not_allowed" and code in ("origin_not_allowed",
                                                                               "host_not_allowed")


async def test_every_route_needs_a_key_but_the_probes(served: tuple[str, list[tuple[str, str]], Any],
                                                      fake_ollama: FakeOllama) -> None:
    url, routes, _ = served
    for method, path in routes:
        status, body = await call(url, method, path)
        if path in PROBES:
            assert status == 200, (method, path)
        elif path.startswith(CONSOLE):
            assert status != 401 and fake_ollama.counts["/api/chat"] == 0, (method, path, status)
        else:
            assert (status, _code(body)) == (401, "invalid_api_key") or method == "HEAD" and status == 401, \
                (method, path, status, body)
    assert fake_ollama.counts["/api/chat"] == 0


async def test_every_route_refuses_a_foreign_origin_before_anything_else(
        served: tuple[str, list[tuple[str, str]], Any]) -> None:
    url, routes, _ = served
    for method, path in routes:
        # no key and a body of the wrong type: the Origin is still what answers
        status, body = await call(url, method, path, {"Origin": "https://evil.example", "Content-Type": "text/plain"},
                                  b"{}" if method == "POST" else None)
        assert status == 403 and (method == "HEAD" or _is(body, "origin_not_allowed")), (method, path, status)


async def test_every_route_refuses_a_foreign_host(served: tuple[str, list[tuple[str, str]], Any]) -> None:
    url, routes, _ = served
    for method, path in routes:
        status, body = await call(url, method, path, {"Host": "rebound.evil.example", "Authorization": f"Bearer {KEY}"})
        assert status == 403 and (method == "HEAD" or _is(body, "host_not_allowed")), (method, path, status)


async def test_every_json_route_refuses_a_body_not_declared_json(served: tuple[str, list[tuple[str, str]], Any],
                                                                 fake_ollama: FakeOllama) -> None:
    url, routes, _ = served
    posts = [(m, p) for m, p in routes if m == "POST"]
    assert posts
    for method, path in posts:
        upload = path == "/v1/files"  # the one multipart route: its handler refuses any other type
        assert policy_for(method, path).json != upload, path
        for content_type in ("text/plain", "application/x-www-form-urlencoded",
                             *(() if upload else ("multipart/form-data; boundary=x",))):
            status, body = await call(url, method, path, {"Authorization": f"Bearer {KEY}",
                                                          "Content-Type": content_type},
                                      b'{"model": "llama3.2", "messages": [], "input": "x"}')
            assert (status, _code(body)) == (415, "unsupported_media_type"), (path, content_type, status, body)
    assert fake_ollama.counts["/api/chat"] == 0


async def test_every_route_answers_a_preflight_without_key_upstream_or_slot(
        served: tuple[str, list[tuple[str, str]], web.Application], fake_ollama: FakeOllama) -> None:
    url, routes, app = served
    before = sum(fake_ollama.counts.values())
    for _, path in routes:
        status, _ = await call(url, "OPTIONS", path, {"Origin": ALLOWED, "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "authorization, content-type"})
        assert status == 204, path
    assert sum(fake_ollama.counts.values()) == before and app[ADMISSION].active == 0


# The declared chain: every route says what it is, and the pipeline composes its gates from that.
LIMITED = {**CONFIG, "auth": {"keys": [{"id": "k", "sha256": hash_key(KEY), "rpm": 1000}]},
           "tracing": {"enabled": False}, "routing": {"sticky": True}}
# What each kind of route must pass, in this order (the key's models/limits where a body names a model).
MUST = {
    "probe": ("errors", "observe", "access", "body"),
    "static": ("errors", "observe", "access", "body"),
    "keyed": ("errors", "observe", "access", "body"),
    "generate": ("errors", "observe", "access", "body", "meter"),
    "embed": ("errors", "observe", "access", "body", "meter"),
    "update": ("errors", "observe", "access", "body", "meter"),
    "passthrough": ("errors", "observe", "access", "body", "meter"),
    "upload": ("errors", "observe", "access", "body"),  # multipart files: a key, no JSON, not metered
}


def test_every_route_declares_its_kind() -> None:
    app = create_app(make_config("http://127.0.0.1:1", LIMITED))
    missing = [f"{r.method} {r.resource.canonical if r.resource else '?'}" for r in undeclared(app)]
    assert not missing, ("routes registered without a kind; register each with one line, "
                         "pipeline.route(app, METHOD, PATH, handler, KIND): " + ", ".join(missing))


async def test_every_route_passes_the_chain_its_kind_declares(app_factory: AppFactory) -> None:
    _, app = await app_factory(LIMITED)
    line = app[PIPELINE]
    assert line.chains.keys() == set(app.router.routes())
    for found in app.router.routes():
        kind = kind_of(app, found)
        where = (found.method, found.resource.canonical if found.resource else None, kind.name)
        assert line.chains[found].names == (*MUST[kind.name], "affinity"), where
        if kind.policy is not None:  # the declared policy is the one the table gives the path
            for method in ("GET", "POST") if found.method == "*" else (found.method,):
                assert kind.policy == policy_for(method, concrete(found), found.name), where


async def _ok(request: web.Request) -> web.Response:
    return web.Response()


async def test_a_route_without_a_kind_is_named_and_still_gated_by_method(fake_ollama: FakeOllama) -> None:
    app = create_app(make_config(fake_ollama.url, LIMITED))
    added = app.router.add_post("/v1/undeclared", _ok)
    assert undeclared(app) == [added]
    async with TestServer(app) as server:
        assert app[PIPELINE].chains[added].names == MUST["passthrough"] + ("affinity",)
        status, body = await call(f"http://127.0.0.1:{server.port}", "POST", "/v1/undeclared")
        assert (status, _code(body)) == (401, "invalid_api_key")
