"""The gate pipeline (``proxy/gates/pipeline.py``): one middleware and one response hook, the chains
composed at start-up from the app's configuration, recomposed when SIGHUP reloads the keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from proxy.access.keys import hash_key
from proxy.app import create_app
from proxy.gates.pipeline import (
    GENERATE,
    KEYED,
    PIPELINE,
    Gate,
    add_gate,
    chain_of,
    pipeline,
    respond,
)
from proxy.gates.reload import reload_access
from tests.conftest import AppFactory, make_config


def test_one_middleware_and_one_response_hook() -> None:
    app = create_app(make_config("http://127.0.0.1:1", {"routing": {"sticky": True, "expose_upstream": True}}))
    assert list(app.middlewares) == [pipeline]
    assert list(app.on_response_prepare) == [respond]
    assert len(app[PIPELINE].hooks) == 3  # Connection: close while draining, CORS / rate-limit headers, X-Upstream


@pytest.mark.parametrize(("toml", "generate", "keyed"), [
    ({}, ("errors", "observe", "access", "body"), ("errors", "observe", "access", "body")),
    ({"metrics": {"enabled": False}}, ("errors", "access", "body"), ("errors", "access", "body")),
    ({"metrics": {"enabled": False}, "tracing": {"enabled": True}},
     ("errors", "tracing", "access", "body"), ("errors", "tracing", "access", "body")),
    ({"auth": {"keys": [{"id": "a", "sha256": hash_key("sk-a")}]}},
     ("errors", "observe", "access", "body"), ("errors", "observe", "access", "body")),
    ({"auth": {"keys": [{"id": "a", "sha256": hash_key("sk-a"), "models": ["llama*"]}]}},
     ("errors", "observe", "access", "body", "meter"), ("errors", "observe", "access", "body")),
    ({"auth": {"keys": [{"id": "a", "sha256": hash_key("sk-a"), "tpm": 10}]}, "routing": {"sticky": True}},
     ("errors", "observe", "access", "body", "meter", "affinity"), ("errors", "observe", "access", "body", "affinity")),
], ids=["shipped defaults: no meter without keys", "metrics off: no observe gate", "tracing outermost but errors",
        "keys without limits: no meter", "a key with a model list: meter on bodies",
        "a key with limits, sticky: meter and affinity"])
async def test_the_chain_follows_the_configuration(app_factory: AppFactory, toml: dict[str, object],
                                                   generate: tuple[str, ...], keyed: tuple[str, ...]) -> None:
    _, app = await app_factory(toml)
    assert chain_of(app, GENERATE) == generate
    assert chain_of(app, KEYED) == keyed


async def test_a_reload_that_adds_limits_brings_the_meter(app_factory: AppFactory, tmp_path: Path) -> None:
    _, app = await app_factory({})
    chat = next(r for r in app.router.routes() if r.method == "POST" and r.resource is not None
                and r.resource.canonical == "/v1/chat/completions")
    assert "meter" not in app[PIPELINE].chains[chat].names
    source = tmp_path / "config.toml"
    source.write_text(f'[[auth.keys]]\nid = "a"\nsha256 = "{hash_key("sk-a")}"\nrpm = 5\n')
    assert reload_access(app, str(source))
    assert "meter" in app[PIPELINE].chains[chat].names


async def _gate(request: web.Request, handler: object) -> web.StreamResponse:
    raise AssertionError


def test_a_gate_must_have_a_place_in_the_order() -> None:
    app = create_app(make_config("http://127.0.0.1:1"))
    with pytest.raises(ValueError, match="ORDER"):
        add_gate(app, Gate("nowhere", _gate))
