"""The proxy's log output: ``[log] format = "text" | "json"``, safe for untrusted text.

Log lines carry text a client or Ollama chose (paths, unknown field names, model names,
upstream messages). In ``text`` format ``TextFormatter`` escapes control characters in the
message (``\\n`` becomes the two characters ``\\n``), so no value can end a line and forge the
next; the traceback that may follow is the proxy's own. In ``json`` format ``JsonFormatter``
writes one JSON object per line: ``time``, ``level``, ``logger``, ``message``, ``request_id``
when the record belongs to a request, any structured fields passed with ``extra=``, and
``exception`` for a traceback. Extending the JSON log (more fields) is adding to ``fields``.

``ProtocolLog`` is what aiohttp's connection handler logs through (``handler_args``): a request
aiohttp cannot even parse (two ``Host`` headers, a broken request line) is the client's fault,
so it becomes one line at info instead of an ERROR with a traceback per request.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import orjson
from aiohttp.http_exceptions import HttpProcessingError

from .config import LogConfig

__all__ = ["REQUEST_ID", "JsonFormatter", "ProtocolLog", "TextFormatter", "escape", "setup_logging"]

# The id of the request being handled, for records logged while handling it. aiohttp runs each
# request in its own task, which has its own copy of the context: set once per request by the
# error middleware, it is never seen by another request.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Attributes every LogRecord has: anything else on a record came in through ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def escape(text: str) -> str:
    """``text`` with every control character written as an escape, so it stays on one line."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"
                                               if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"), text)


class TextFormatter(logging.Formatter):
    """The classic one-line format, control characters in the message escaped."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (JSON escapes every control character itself)."""

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(self.fields(record), default=str).decode()

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The object for one record; extend here to add fields."""
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or REQUEST_ID.get()
        if rid is not None:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return out


class ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]  # generic only in typeshed
    """aiohttp's connection-level logging, with malformed requests as one line at info."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            # "Error handling request from %s", remote: the peer, then what aiohttp refused.
            peer = args[0] if args else "?"
            self.logger.log(min(level, logging.INFO), "malformed request from %s refused with %d: %s",
                            peer, exc.code, escape(str(exc.message)))
            return
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs


def setup_logging(config: LogConfig) -> None:
    """The root handler for ``[log]``: level and format (called once per process, at start)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    logging.basicConfig(level=config.level.upper(), handlers=[handler], force=True)
