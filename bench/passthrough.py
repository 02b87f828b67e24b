"""Bytes-only reference: "the limit" of an aiohttp proxy.

It rewrites the OpenAI request body to Ollama's (cheap, same as every proxy must), then
relays the upstream body bytes unchanged: ``iter_any()`` hands over whatever the socket
had, and one ``write`` per read sends it on.  No per-line work at all, so any real
translating proxy can only approach it.

    python -m bench.passthrough --port P --upstream http://127.0.0.1:U
"""

from __future__ import annotations

import orjson
from aiohttp import web

from bench._refserver import CHAT_URL, JSON_HEADERS, SESSION, to_ollama
from bench._refserver import main as _main


async def chat(request: web.Request) -> web.StreamResponse:
    try:
        up_body, stream = to_ollama(orjson.loads(await request.read()))
    except (orjson.JSONDecodeError, AttributeError):
        return web.Response(
            status=400, body=b'{"error":"bad json"}', content_type="application/json"
        )
    session = request.app[SESSION]
    async with session.post(request.app[CHAT_URL], data=up_body, headers=JSON_HEADERS) as up:
        if not stream:
            return web.Response(
                body=await up.read(), status=up.status, content_type="application/json"
            )
        resp = web.StreamResponse(status=up.status)
        resp.content_type = up.content_type
        await resp.prepare(request)
        try:
            async for data in up.content.iter_any():
                await resp.write(data)
            await resp.write_eof()
        except ConnectionResetError:  # client went away: dropping the upstream is the point
            pass
        return resp


def main(argv: list[str] | None = None) -> None:
    _main(chat, "bytes-only aiohttp pass-through (reference)", argv)


if __name__ == "__main__":
    main()
