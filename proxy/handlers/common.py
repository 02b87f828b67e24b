"""What every handler needs: the JSON body, ids, and the JSON response."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from aiohttp import web

from ..errors import InvalidRequest
from ..translate.keys import camelize

__all__ = ["json_response", "new_id", "read_json_object"]


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; aiohttp enforces the size limit while reading."""
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def new_id(prefix: str) -> str:
    """A unique id like OpenAI's (``chatcmpl-…``, ``call_…``)."""
    return prefix + secrets.token_hex(12)


def json_response(payload: Any, *, camel: bool = False, status: int = 200) -> web.Response:
    body = orjson.dumps(camelize(payload) if camel else payload)
    return web.Response(status=status, body=body, content_type="application/json")
