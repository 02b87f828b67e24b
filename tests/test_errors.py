"""``proxy/errors.py`` and ``proxy/gates/errors.py``: the envelope of every error class, and the
middleware on a tiny app (Retry-After, unknown routes and methods, the 500 guard, request ids)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy import errors
from proxy.errors import (
    UPSTREAM_FAULT_MESSAGE,
    ExpectationFailed,
    InvalidRequest,
    LimiterUnavailable,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ProxyError,
    RateLimited,
    RateLimitExceeded,
    RequestTimeout,
    StoreUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    UnsupportedParameter,
    UpstreamBusy,
    UpstreamError,
    UpstreamFault,
    UpstreamMalformed,
    UpstreamTimeout,
    UpstreamUnavailable,
    to_envelope,
)
from proxy.gates.errors import REQUEST_ID_HEADER, error_middleware, request_id

Client = Callable[..., Awaitable[TestClient[Any, Any]]]
GENERATED = re.compile(r"req_[0-9a-f]{24}")

# (class, status, type, code) — OpenAI's own types and codes, so SDKs raise the matching class.
CLASSES = [
    (ProxyError, 500, "api_error", None),
    (InvalidRequest, 400, "invalid_request_error", None),
    (PayloadTooLarge, 413, "invalid_request_error", "payload_too_large"),
    (RequestTimeout, 408, "invalid_request_error", "request_timeout"),
    (ExpectationFailed, 417, "invalid_request_error", "expectation_failed"),
    (UnsupportedParameter, 400, "invalid_request_error", "unsupported_parameter"),
    (PermissionDenied, 403, "permission_error", None),
    (NotFound, 404, "not_found_error", None),
    (ModelNotFound, 404, "invalid_request_error", "model_not_found"),
    (MethodNotAllowed, 405, "invalid_request_error", "method_not_allowed"),
    (RateLimited, 429, "rate_limit_error", "rate_limit_exceeded"),
    (StoreUnavailable, 503, "api_error", "store_unavailable"),
    (RateLimitExceeded, 429, "requests", "rate_limit_exceeded"),
    (Unauthorized, 401, "invalid_request_error", "invalid_api_key"),
    (UnsupportedMediaType, 415, "invalid_request_error", "unsupported_media_type"),
    (LimiterUnavailable, 503, "api_error", "rate_limiter_unavailable"),
    (UpstreamError, 502, "api_error", "upstream_error"),
    (UpstreamFault, 502, "server_error", "upstream_error"),
    (UpstreamUnavailable, 502, "api_error", "upstream_unreachable"),
    (UpstreamBusy, 503, "api_error", "upstream_busy"),
    (UpstreamMalformed, 502, "api_error", "upstream_malformed"),
    (UpstreamTimeout, 504, "api_error", "upstream_timeout"),
]
CLASS_IDS = [f"{c[0].__name__} is {c[1]} {c[2]} code={c[3]}" for c in CLASSES]


def test_the_table_covers_every_error_class() -> None:
    exported = {getattr(errors, n) for n in errors.__all__}
    assert {c[0] for c in CLASSES} == {e for e in exported if isinstance(e, type) and issubclass(e, ProxyError)}


@pytest.mark.parametrize("cls, status, type_, code", CLASSES, ids=CLASS_IDS)
def test_envelope_per_class(cls: type[ProxyError], status: int, type_: str, code: str | None) -> None:
    error = cls("Something went wrong.", param="messages[0].content")
    assert error.status == status
    # An upstream fault keeps Ollama's text for the log and shows OpenAI's generic wording.
    message = UPSTREAM_FAULT_MESSAGE if cls is UpstreamFault else "Something went wrong."
    assert to_envelope(error) == {
        "error": {"message": message, "type": type_, "param": "messages[0].content", "code": code}
    }


def test_envelope_param_defaults_to_null() -> None:
    assert to_envelope(InvalidRequest("x"))["error"]["param"] is None


def test_a_code_given_to_one_error_does_not_leak_to_its_class() -> None:
    error = InvalidRequest("bad json", code="invalid_json")
    assert error.code == "invalid_json"
    assert InvalidRequest.code is None and InvalidRequest("x").code is None


def test_errors_are_exceptions_with_their_message() -> None:
    error = UpstreamBusy("busy", retry_after=2)
    assert isinstance(error, UpstreamError) and isinstance(error, Exception)
    assert str(error) == error.message == "busy" and error.retry_after == 2


# ---- the middleware on a tiny app --------------------------------------------------------

async def boom(request: web.Request) -> web.StreamResponse:
    raise RuntimeError("secret detail in /srv/proxy/internal.py")


async def ok(request: web.Request) -> web.StreamResponse:
    return web.json_response({"rid": request_id(request)})


async def read(request: web.Request) -> web.StreamResponse:
    return web.json_response({"bytes": len(await request.read())})


HTTP_ERRORS: dict[str, Callable[[], web.HTTPException]] = {
    "400": lambda: web.HTTPBadRequest(),
    "503": lambda: web.HTTPServiceUnavailable(),
    "302": lambda: web.HTTPFound("/v1/ok"),
}


async def raise_http(request: web.Request) -> web.StreamResponse:
    raise HTTP_ERRORS[request.match_info["status"]]()


@pytest.fixture
def raised() -> dict[str, ProxyError]:
    """What ``GET /raise/{name}`` raises, filled in by each test."""
    return {}


@pytest.fixture
async def client(aiohttp_client: Client, raised: dict[str, ProxyError]) -> TestClient[Any, Any]:
    async def raise_named(request: web.Request) -> web.StreamResponse:
        raise raised[request.match_info["name"]]

    app = web.Application(middlewares=[error_middleware], client_max_size=64)
    app.router.add_get("/raise/{name}", raise_named)
    app.router.add_get("/boom", boom)
    app.router.add_get("/v1/ok", ok)
    app.router.add_post("/read", read)
    app.router.add_get("/http/{status}", raise_http)
    return await aiohttp_client(app)


@pytest.mark.parametrize("cls, status, type_, code", CLASSES, ids=CLASS_IDS)
async def test_middleware_renders_each_class(client: TestClient[Any, Any], raised: dict[str, ProxyError],
                                             cls: type[ProxyError], status: int, type_: str, code: str | None) -> None:
    raised[cls.__name__] = cls("Nope.", param="temperature")
    response = await client.get(f"/raise/{cls.__name__}")
    assert response.status == status
    assert response.content_type == "application/json"
    rid = response.headers[REQUEST_ID_HEADER]
    message = f"{UPSTREAM_FAULT_MESSAGE} (request id {rid})" if cls is UpstreamFault else "Nope."
    assert await response.json() == {"error": {"message": message, "type": type_, "param": "temperature", "code": code}}
    assert GENERATED.fullmatch(rid)
    assert "Retry-After" not in response.headers


RETRY_AFTER = [
    ("whole seconds", UpstreamBusy("busy", retry_after=1), "1"),
    ("rounded to the nearest second", RateLimited("slow down", retry_after=2.6), "3"),
    ("never below one second", RateLimited("slow down", retry_after=0.2), "1"),
]


@pytest.mark.parametrize("error, header", [r[1:] for r in RETRY_AFTER], ids=[r[0] for r in RETRY_AFTER])
async def test_retry_after_header(client: TestClient[Any, Any], raised: dict[str, ProxyError], error: ProxyError,
                                  header: str) -> None:
    raised["retry"] = error
    response = await client.get("/raise/retry")
    assert response.status == error.status
    assert response.headers["Retry-After"] == header


async def test_unknown_route_answers_in_the_envelope(client: TestClient[Any, Any]) -> None:
    response = await client.get("/v1/nope", headers={REQUEST_ID_HEADER: "rid-404"})
    assert response.status == 404
    assert response.content_type == "application/json"
    assert await response.json() == {"error": {
        "message": "Unknown request URL: GET /v1/nope.", "type": "not_found_error", "param": None,
        "code": "unknown_url"}}  # fmt: skip
    assert response.headers[REQUEST_ID_HEADER] == "rid-404"


async def test_wrong_method_answers_in_the_envelope(client: TestClient[Any, Any]) -> None:
    response = await client.delete("/v1/ok")
    assert response.status == 405
    assert await response.json() == {"error": {
        "message": "Method DELETE is not allowed for /v1/ok.", "type": "invalid_request_error", "param": None,
        "code": "method_not_allowed"}}  # fmt: skip



async def test_wrong_method_keeps_the_allow_header(client: TestClient[Any, Any]) -> None:
    response = await client.delete("/v1/ok")
    assert response.status == 405
    assert "GET" in response.headers.get("Allow", "")


async def test_a_too_large_body_is_413_in_the_envelope(client: TestClient[Any, Any]) -> None:
    response = await client.post("/read", data=b"x" * 65)
    assert response.status == 413
    body = await response.json()
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "payload_too_large"
    assert (await (await client.post("/read", data=b"x" * 64)).json()) == {"bytes": 64}


HTTP_MAPPED = [
    ("an aiohttp 400 becomes invalid_request_error", "400", 400, "invalid_request_error"),
    ("an aiohttp 503 becomes api_error", "503", 503, "api_error"),
]


@pytest.mark.parametrize("path, status, type_", [r[1:] for r in HTTP_MAPPED], ids=[r[0] for r in HTTP_MAPPED])
async def test_aiohttp_errors_become_envelopes(client: TestClient[Any, Any], path: str, status: int,
                                               type_: str) -> None:
    response = await client.get(f"/http/{path}")
    assert response.status == status
    body = await response.json()
    assert body["error"]["type"] == type_ and body["error"]["message"]


async def test_redirects_pass_through(client: TestClient[Any, Any]) -> None:
    response = await client.get("/http/302", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/v1/ok"


async def test_an_unexpected_exception_is_a_500_envelope_without_traceback(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="proxy")
    response = await client.get("/boom", headers={REQUEST_ID_HEADER: "rid-boom-1"})
    assert response.status == 500
    text = await response.text()
    for leak in ("Traceback", "RuntimeError", "secret", "/srv/proxy", "internal.py", 'File "'):
        assert leak not in text
    assert await response.json() == {"error": {
        "message": "The proxy hit an internal error (request id rid-boom-1).", "type": "api_error", "param": None,
        "code": None}}  # fmt: skip
    assert response.headers[REQUEST_ID_HEADER] == "rid-boom-1"
    [record] = [r for r in caplog.records if r.exc_info]
    assert "rid-boom-1" in record.getMessage()
    assert isinstance(record.exc_info[1], RuntimeError)  # type: ignore[index]


async def test_an_unexpected_exception_names_a_generated_request_id(client: TestClient[Any, Any]) -> None:
    response = await client.get("/boom")
    rid = response.headers[REQUEST_ID_HEADER]
    assert GENERATED.fullmatch(rid)
    assert rid in (await response.json())["error"]["message"]


async def test_5xx_proxy_errors_are_logged_and_4xx_are_not(
    client: TestClient[Any, Any], raised: dict[str, ProxyError], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="proxy")
    raised["u"], raised["i"] = UpstreamUnavailable("Could not connect to Ollama."), InvalidRequest("bad")
    await client.get("/raise/i", headers={REQUEST_ID_HEADER: "rid-4xx"})
    await client.get("/raise/u", headers={REQUEST_ID_HEADER: "rid-5xx"})
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "rid-5xx" in logged and "Could not connect" in logged
    assert "rid-4xx" not in logged


SANE = [("letters and digits", "abc123"), ("every allowed symbol", "req-1_a.b:c"), ("128 characters", "a" * 128),
        ("a uuid", "3f2b8c4e-9a1d-4e7b-8c2f-1a2b3c4d5e6f")]  # fmt: skip
INSANE = [("129 characters", "a" * 129), ("a space", "has space"), ("a semicolon", "a;b"),
          ("a slash", "a/b"), ("a quote", 'a"b'), ("empty", "")]  # fmt: skip


@pytest.mark.parametrize("rid", [r[1] for r in SANE], ids=[f"echoed: {r[0]}" for r in SANE])
async def test_a_sane_request_id_is_echoed(client: TestClient[Any, Any], rid: str) -> None:
    response = await client.get("/v1/ok", headers={REQUEST_ID_HEADER: rid})
    assert response.headers[REQUEST_ID_HEADER] == rid
    assert await response.json() == {"rid": rid}
    error = await client.get("/v1/nope", headers={REQUEST_ID_HEADER: rid})
    assert error.headers[REQUEST_ID_HEADER] == rid


@pytest.mark.parametrize("rid", [r[1] for r in INSANE], ids=[f"replaced: {r[0]}" for r in INSANE])
async def test_an_insane_request_id_is_replaced(client: TestClient[Any, Any], rid: str) -> None:
    response = await client.get("/v1/ok", headers={REQUEST_ID_HEADER: rid})
    generated = response.headers[REQUEST_ID_HEADER]
    assert GENERATED.fullmatch(generated)
    assert await response.json() == {"rid": generated}


async def test_a_missing_request_id_is_generated_fresh_each_time(client: TestClient[Any, Any]) -> None:
    first = await client.get("/v1/ok")
    second = await client.get("/v1/ok")
    ids = [first.headers[REQUEST_ID_HEADER], second.headers[REQUEST_ID_HEADER]]
    assert all(GENERATED.fullmatch(i) for i in ids) and ids[0] != ids[1]
    assert await first.json() == {"rid": ids[0]}
