"""Ollama-native requests on the pass-through, made safe to relay, as pure functions.

Two parsers disagreeing is the whole attack surface of a relay, so the pass-through never lets
them:

* **One canonical path.** ``canonical_target`` takes the request target exactly as the client
  sent it and accepts it only if no decoder could read it differently: no ``%`` escapes at all
  in the path (so no encoded slash, dot or double encoding), no ``.``, ``..`` or empty
  segment, only RFC 3986 path characters. The allow-list is matched on that string and the
  upstream URL is built from the same string, not normalised again (yarl ``encoded=True``).
  nginx and Envoy normalise and then route on the normal form; refusing is stricter and just as
  correct here, since no Ollama path needs an escape. The query is relayed byte for byte.
* **One reading of the body.** Ollama decodes JSON with Go's ``encoding/json``, which matches
  object keys to struct fields case-insensitively (Unicode simple folding, so ``"Model"`` and
  even ``"\\u212aeep_alive"`` with a Kelvin sign count) and takes the last duplicate.
  ``go_object`` folds the keys of the objects Ollama reads as structs (the body and its
  messages), refuses two keys that fold together, and the caller forwards the re-serialised
  object, so Ollama reads exactly what the gates and limits checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import InvalidRequest

__all__ = [
    "MODEL_FIELDS", "canonical_target", "filter_listing", "go_object", "hide_error_lines", "named_models",
    "parse_object",
]  # fmt: skip

# RFC 3986 ``pchar`` without "%": what a path segment may hold when nothing in it is escaped.
_SEGMENT = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@]+")
# A query is relayed as sent, so it may only hold what a request line can carry unambiguously:
# RFC 3986 query characters and well-formed percent escapes (``#`` would start a fragment).
_QUERY = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
# Body fields that name a model on Ollama's API (``name`` is the older spelling; copy has
# ``source``/``destination``, create ``from``): every one of them passes the model gates.
MODEL_FIELDS = ("model", "name", "from", "source", "destination")


def canonical_target(raw_path: str) -> tuple[str, str]:
    """``(path, query)`` of a raw request target, or 400 when it is not in canonical form."""
    path, _, query = raw_path.partition("?")
    if not path.startswith("/api/"):
        raise _bad_path("must start with /api/")
    if "%" in path:
        raise _bad_path("must not contain percent-escapes (encoded slashes or dots)")
    for segment in path[1:].split("/"):
        if segment in ("", ".", ".."):
            raise _bad_path("must not contain empty, '.' or '..' segments")
        if not _SEGMENT.fullmatch(segment):
            raise _bad_path("holds characters that are not allowed in a path")
    if not _QUERY.fullmatch(query):
        raise InvalidRequest("The query string holds characters that are not allowed unescaped.",
                             code="invalid_path")
    return path, query


def _bad_path(why: str) -> InvalidRequest:
    return InvalidRequest(f"The request path {why}.", code="invalid_path")


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object (400 otherwise), its struct keys folded as Go reads them."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request. The body must be valid JSON.",
                             code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    body = go_object(body, "")
    messages = body.get("messages")
    if isinstance(messages, list):
        body["messages"] = [go_object(m, f"messages[{i}].") if isinstance(m, dict) else m
                            for i, m in enumerate(messages)]
    return body


def go_object(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """``obj`` with its keys as Go's case-insensitive field matching reads them; two keys that
    differ only by case are refused (Go would silently take the last)."""
    if all(key == key.casefold() for key in obj):
        return obj  # the usual body: no two such keys can fold together
    out: dict[str, Any] = {}
    for key, value in obj.items():
        folded = key.casefold()
        if folded in out:
            raise InvalidRequest(f"The body holds keys that differ only by case ('{where}{key}'); "
                                 "Ollama would read them as one field.", param=f"{where}{key}",
                                 code="duplicate_key")
        out[folded] = value
    return out


def named_models(body: dict[str, Any]) -> list[str]:
    """Every model name the body gives Ollama, in any of its fields."""
    return [value for key in MODEL_FIELDS if isinstance(value := body.get(key), str) and value]


def filter_listing(listing: Any, allows: Callable[[str], bool]) -> Any:
    """``/api/tags`` or ``/api/ps`` without the models a client may not use (as ``/v1/models``)."""
    if not isinstance(listing, dict) or not isinstance(listing.get("models"), list):
        return listing
    kept = [m for m in listing["models"]
            if isinstance(m, dict) and allows(str(m.get("model") or m.get("name") or ""))]
    return {**listing, "models": kept}


def hide_error_lines(data: bytes, message: str) -> tuple[bytes, list[str]]:
    """One read of a native NDJSON stream with Ollama's own error lines (``{"error": "..."}``,
    its runner failing mid-answer) worded as ``message``; returns the bytes and the hidden texts.

    Called only for a read holding ``"error"`` with both quotes bare, which in Ollama's output is
    only ever that key (generated text is JSON-escaped), so a normal stream pays one byte scan.
    A partial last line is left as it is.
    """
    lines = data.split(b"\n")
    hidden: list[str] = []
    for i, line in enumerate(lines):
        if b'"error"' not in line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line cut by the read: not ours to judge
        if isinstance(obj, dict) and isinstance(obj.get("error"), str):
            hidden.append(obj["error"])
            lines[i] = orjson.dumps({**obj, "error": message})
    return (b"\n".join(lines), hidden) if hidden else (data, hidden)
