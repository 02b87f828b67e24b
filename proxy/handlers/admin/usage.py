"""OpenAI's Usage API over the store: ``GET /v1/organization/usage/{completions,embeddings}``.

The same ``page`` / ``bucket`` / ``…result`` objects as OpenAI, from the proxy's hourly rows
(``bucket_width`` ``1h`` or ``1d``; ``1m`` is refused since the proxy aggregates per hour).
An admin caller sees every key's usage; any other key only its own, whatever it asks for.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable

from aiohttp import web
from multidict import MultiMapping

from ...appkeys import CONFIG, STORE_SERVICE
from ...caller import caller
from ...errors import InvalidRequest, StoreUnavailable
from ...store.base import StoreError
from ...store.usage import (
    COMPLETION_ENDPOINTS,
    EMBEDDING_ENDPOINTS,
    GROUPS,
    WIDTHS,
    UsageQuery,
    buckets,
)
from ..common import json_response

__all__ = ["completions_usage", "embeddings_usage", "parse_usage_query"]

# OpenAI's default and maximum number of buckets per page, per width.
LIMITS = {"1h": (24, 168), "1d": (7, 31)}
# Filters and groupings OpenAI defines that have no meaning here (no projects, users, batches).
NO_SUCH = ("project_ids", "user_ids", "service_tiers")


async def completions_usage(request: web.Request) -> web.Response:
    return await _usage(request, COMPLETION_ENDPOINTS, embeddings=False)


async def embeddings_usage(request: web.Request) -> web.Response:
    return await _usage(request, EMBEDDING_ENDPOINTS, embeddings=True)


async def _usage(request: web.Request, endpoints: frozenset[str], *, embeddings: bool) -> web.Response:
    query = parse_usage_query(request.query, time.time)
    who = caller(request)
    service = request.app[STORE_SERVICE]
    await service.flush()  # what this process counted so far is in the answer
    try:
        rows = await service.store.usage(query.start, query.end, None if who.is_admin else who.key_id)
    except StoreError:
        raise StoreUnavailable("The proxy's store is unavailable; try again later.") from None
    data, next_start = buckets(rows, query, endpoints, embeddings)
    return json_response(camel=request.app[CONFIG].response.keys == "camel", payload={
        "object": "page",
        "data": data,
        "has_more": next_start is not None,
        "next_page": None if next_start is None else _cursor(next_start),
    })


def parse_usage_query(query: MultiMapping[str], now: Callable[[], float]) -> UsageQuery:
    """The query string checked like a body: a bad value is a 400 naming its parameter."""
    for name in NO_SUCH:
        if _many(query, name):
            raise InvalidRequest(f"'{name}' is not supported: the proxy has no {name.split('_')[0]}s.", param=name)
    width_name = query.get("bucket_width", "1d")
    if width_name not in WIDTHS:
        raise InvalidRequest("'bucket_width' must be '1h' or '1d' (the proxy counts usage per hour).",
                             param="bucket_width")
    width = WIDTHS[width_name]
    start = _time(query, "start_time")
    if start is None:
        raise InvalidRequest("'start_time' is required (unix seconds).", param="start_time")
    end = _time(query, "end_time") or int(now())
    if end <= start:
        raise InvalidRequest("'end_time' must be after 'start_time'.", param="end_time")
    first = start // width * width
    page = query.get("page")
    if page is not None:
        first = _from_cursor(page)
        if not start // width * width <= first < end:
            raise InvalidRequest("'page' does not belong to this query.", param="page")
    default, most = LIMITS[width_name]
    raw_limit = query.get("limit")
    if raw_limit is not None and (not raw_limit.isdigit() or not 1 <= int(raw_limit) <= most):
        raise InvalidRequest(f"'limit' must be an integer between 1 and {most} for bucket_width {width_name}.",
                             param="limit")
    group_by = _many(query, "group_by")
    for group in group_by:
        if group not in GROUPS:
            raise InvalidRequest(f"'group_by' may hold 'model', 'api_key_id' and 'batch', got '{group[:64]}'.",
                                 param="group_by")
    return UsageQuery(first, end, width, int(raw_limit) if raw_limit else default, tuple(group_by),
                      tuple(_many(query, "models")), tuple(_many(query, "api_key_ids")), _batch(query))


def _batch(query: MultiMapping[str]) -> bool | None:
    """``batch=true|false``: only batch lines, or only live requests."""
    value = query.get("batch")
    if value is None:
        return None
    if value not in ("true", "false"):
        raise InvalidRequest("'batch' must be true or false.", param="batch")
    return value == "true"


def _many(query: MultiMapping[str], name: str) -> list[str]:
    """An array parameter in any of the spellings clients use: ``a=x&a=y``, ``a[]=x``, ``a=x,y``."""
    values = [*query.getall(name, ()), *query.getall(f"{name}[]", ())]
    return [v for value in values for v in value.split(",") if v]


def _time(query: MultiMapping[str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidRequest(f"'{name}' must be unix seconds.", param=name)
    return int(raw)


def _cursor(start: int) -> str:
    return "page_" + base64.urlsafe_b64encode(str(start).encode()).decode()


def _from_cursor(page: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(page.removeprefix("page_").encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.isdigit():
        raise InvalidRequest("'page' is not a cursor this proxy gave.", param="page")
    return int(raw)
