"""Naive reference: the obvious per-line translate loop.

``async for line in resp.content`` → ``orjson.loads`` → OpenAI chunk dict → ``orjson.dumps``
→ one ``await write`` per frame.  Correct, simple, and what the proxy has to beat.

    python -m bench.naive --port P --upstream http://127.0.0.1:U
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from bench._refserver import CHAT_URL, JSON_HEADERS, SESSION, to_ollama
from bench._refserver import main as _main


async def chat(request: web.Request) -> web.StreamResponse:
    try:
        body = orjson.loads(await request.read())
        up_body, stream = to_ollama(body)
    except (orjson.JSONDecodeError, AttributeError):
        return web.Response(
            status=400, body=b'{"error":"bad json"}', content_type="application/json"
        )
    model = body.get("model")
    cid = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    session = request.app[SESSION]
    async with session.post(request.app[CHAT_URL], data=up_body, headers=JSON_HEADERS) as up:
        if not stream:
            o: Any = orjson.loads(await up.read())
            out = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": o["message"]["content"]},
                        "finish_reason": o.get("done_reason", "stop"),
                    }
                ],
                "usage": {
                    "prompt_tokens": o.get("prompt_eval_count", 0),
                    "completion_tokens": o.get("eval_count", 0),
                    "total_tokens": o.get("prompt_eval_count", 0) + o.get("eval_count", 0),
                },
            }
            return web.Response(body=orjson.dumps(out), content_type="application/json")
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        first = True
        try:
            async for line in up.content:
                line = line.strip()
                if not line:
                    continue
                o = orjson.loads(line)
                if o.get("done"):
                    delta: dict[str, Any] = {}
                    finish: str | None = o.get("done_reason", "stop")
                else:
                    delta = {"content": o["message"]["content"]}
                    finish = None
                if first:
                    delta["role"] = "assistant"
                    first = False
                chunk = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp


def main(argv: list[str] | None = None) -> None:
    _main(chat, "naive per-line translate loop (reference)", argv)


if __name__ == "__main__":
    main()
