"""The Batch API's files, line by line, as pure functions: reading an input file, and the
output and error lines OpenAI writes (``{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}``).

A file that is not JSONL, or a line without a ``custom_id`` (or a repeated one), fails the whole
batch with ``errors`` (nothing could be reported against it); a line whose ``method``, ``url``
or ``body`` is wrong fails alone, in the error file, as a 400 in OpenAI's envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["ENDPOINTS", "InputLine", "error_line", "output_line", "parse_input", "unrun_line"]

ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses")


@dataclass(frozen=True, slots=True)
class InputLine:
    number: int  # 0-based, the order of the file
    custom_id: str
    body: dict[str, Any] | None  # None: the line failed alone, ``problem`` says why
    problem: str | None = None
    param: str | None = None


def parse_input(content: str, endpoint: str, max_lines: int) -> tuple[list[InputLine], list[dict[str, Any]]]:
    """The lines of a batch's input file, or the batch-level errors (OpenAI's ``errors.data``)."""
    lines: list[InputLine] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            errors.append(_error("invalid_json_line", number, "This line is not parseable as valid JSON."))
            continue
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not custom_id:
            errors.append(_error("missing_custom_id", number, "Each line needs a string 'custom_id'.", "custom_id"))
            continue
        if custom_id in seen:
            errors.append(_error("duplicate_custom_id", number, f"The custom_id {custom_id[:64]!r} is used "
                                 "by another line; each must be unique.", "custom_id"))
            continue
        seen.add(custom_id)
        lines.append(_line(len(lines), custom_id, item, endpoint))
    if not errors and not lines:
        errors.append(_error("empty_file", None, "The input file has no requests."))
    if len(lines) > max_lines:
        errors.append(_error("too_many_requests", None, f"A batch may hold at most {max_lines} requests "
                             "(batches.max_lines)."))
    return lines, errors[:100]


def _line(index: int, custom_id: str, item: dict[str, Any], endpoint: str) -> InputLine:
    if item.get("method") != "POST":
        return InputLine(index, custom_id, None, "The line's method must be POST.", "method")
    if item.get("url") != endpoint:
        return InputLine(index, custom_id, None, f"The line's url must be the batch's endpoint, {endpoint}.", "url")
    body = item.get("body")
    if not isinstance(body, dict):
        return InputLine(index, custom_id, None, "The line's body must be a JSON object.", "body")
    if body.get("stream"):
        return InputLine(index, custom_id, None, "Streaming is not supported in a batch.", "body.stream")
    return InputLine(index, custom_id, body)


def _error(code: str, line: int | None, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "line": line, "message": message, "param": param}


def output_line(line_id: str, custom_id: str, status: int, request_id: str, body: Any) -> dict[str, Any]:
    """One answered request, as OpenAI writes it in a batch's output (or, not 2xx, error) file."""
    return {"id": line_id, "custom_id": custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": body}, "error": None}


def error_line(line_id: str, line: InputLine) -> dict[str, Any]:
    """A line that failed alone before it ran: a 400 in OpenAI's error envelope."""
    body = {"error": {"message": line.problem, "type": "invalid_request_error", "param": line.param,
                      "code": "invalid_batch_line"}}
    return output_line(line_id, line.custom_id, 400, "", body)


def unrun_line(line_id: str, custom_id: str, code: str) -> dict[str, Any]:
    """A line the batch never ran: expired (``batch_expired``) or cancelled (``batch_cancelled``)."""
    why = "the batch expired" if code == "batch_expired" else "the batch was cancelled"
    return {"id": line_id, "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": f"This request could not be executed before {why}."}}
