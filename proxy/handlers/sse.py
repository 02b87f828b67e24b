"""Server-Sent Events on an aiohttp response: headers that defeat buffering, and error frames.

Once a stream's headers are out its status can no longer change, so a failure after that is
sent as one ``data: {"error": ...}`` frame (which the OpenAI SDKs raise as ``APIError``) and the
stream is closed without ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from ..gates.errors import SERVER_NAME
from ..translate.ndjson import error_frame

__all__ = ["error_frame", "start_event_stream"]

_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",  # nginx and friends: pass each frame on as it comes
    "Server": SERVER_NAME,
}


class EventStreamResponse(web.StreamResponse):
    """A streamed response whose headers leave with its first frame, in one packet.

    The stream only starts once Ollama has answered, and its first frame follows at once, so
    holding the headers back costs no time and saves a write per stream (``web.Response``
    does the same; ``StreamResponse`` would send them on their own).
    """

    _send_headers_immediately = False


async def start_event_stream(request: web.Request, request_id: str,
                             headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Prepare the SSE response (its headers go out with the first frame) and return it."""
    response = EventStreamResponse(status=200, headers={**_HEADERS, "X-Request-Id": request_id, **(headers or {})})
    await response.prepare(request)
    return response
