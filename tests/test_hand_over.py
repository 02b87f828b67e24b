"""``gates/body.hand_over``: the object the meter parsed reaches the handler as it is, once."""

from __future__ import annotations

from unittest import mock

import orjson
from aiohttp.test_utils import make_mocked_request

from proxy.gates.body import hand_over, handed_over
from proxy.handlers.common import read_json_object


async def test_the_handler_takes_the_meters_object_instead_of_parsing_again() -> None:
    raw = orjson.dumps({"model": "bytes", "messages": []})
    request = make_mocked_request("POST", "/v1/chat/completions", headers={"Content-Type": "application/json"})
    parsed = {"model": "parsed", "messages": []}
    hand_over(request, parsed)
    with mock.patch.object(type(request), "read", mock.AsyncMock(return_value=raw)) as read:
        assert await read_json_object(request) is parsed  # the same object: nothing read or parsed
        read.assert_not_awaited()
        assert handed_over(request) is None  # taken off the request: a stream does not hold it
        assert await read_json_object(request) == {"model": "bytes", "messages": []}  # then the bytes
        read.assert_awaited_once()
