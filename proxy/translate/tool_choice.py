"""Forced tool calls (``tool_choice`` "required" or a named function) through Ollama's ``format``.

Ollama cannot force a tool call, but it can constrain generation to a JSON schema (``format``).
So a forced call becomes constrained decoding:

* a named function F: ``format`` is F's ``parameters`` schema, and the JSON generated is F's
  ``arguments``;
* "required": ``format`` is ``anyOf`` over the tools, each branch an object
  ``{"name": <that tool's name>, "arguments": <its parameters>}`` with ``name`` first, so a stream
  knows the tool before its arguments begin. Definitions (``$defs``, as pydantic emits them) are
  hoisted to the root, where ``#/$defs/...`` references point, renamed per tool on a clash.
  With one tool, "required" is that tool named.

The tools are not sent to Ollama with a forced call: its tool parser would try to read the
constrained JSON as a call of its own (Ollama's parser for Llama-style templates takes a bare
``{"name": …}`` object for one). The model learns what to call from a system message instead,
placed after the client's own leading system messages. Thinking is untouched (``think`` and
``format`` go together; Ollama applies the format once thinking ends).

The model's output is checked against the contract: JSON that does not parse, a name that is
not one of the tools, or arguments that are not an object give a 502 naming the problem, never a
malformed tool call. An answer cut off by ``max_tokens`` (``done_reason: "length"``) is passed on
as generated, with ``finish_reason: "length"``, as OpenAI does for a cut-off tool call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import InvalidRequest, UnsupportedParameter, UpstreamError
from .fields import name_field, obj, require

__all__ = ["CallScanner", "ForcedCall", "check_streamed", "forced_call", "instruct", "not_a_call", "parse_call"]


@dataclass(frozen=True)
class ForcedCall:
    """A tool call the client forced: which function(s), and the schema Ollama decodes to.

    ``named``: the output is the arguments of ``names[0]``; otherwise it is
    ``{"name", "arguments"}`` naming one of ``names``.
    """

    names: tuple[str, ...]
    named: bool
    format: dict[str, Any] = field(repr=False)
    instruction: str = field(repr=False)


def forced_call(choice: Any, tools: list[dict[str, Any]]) -> ForcedCall | None:
    """``tool_choice`` (already checked to be a string or object) over Ollama's ``tools``.

    None for "auto", "none" and no choice; a 400 naming ``tool_choice`` when it cannot apply.
    """
    if choice is None or choice in ("auto", "none"):
        return None
    functions = [tool["function"] for tool in tools]
    if choice == "required":
        if not functions:
            raise InvalidRequest("'tool_choice' is 'required' but no 'tools' were given.", param="tool_choice")
        if len(functions) == 1:
            return _named(functions[0])
        return _any_of(functions)
    if not isinstance(choice, dict):
        raise InvalidRequest("'tool_choice' must be 'none', 'auto', 'required' or an object.", param="tool_choice")
    if choice.get("type") != "function":
        raise UnsupportedParameter("Only tool_choice of type 'function' can be forced.", param="tool_choice.type")
    spec = require(obj(choice, "function", "tool_choice.function"), "tool_choice.function")
    name = name_field(spec, "name", "tool_choice.function.name")
    function = next((f for f in functions if f["name"] == name), None)
    if function is None:
        raise InvalidRequest(
            f"'tool_choice.function.name' names '{name}', which is not one of the 'tools'.",
            param="tool_choice.function.name",
        )
    return _named(function)


def _named(function: dict[str, Any]) -> ForcedCall:
    name = function["name"]
    text = (f"Call the function `{name}` now. Answer with nothing but its arguments: one JSON "
            f"object matching its parameters.\n{_describe(function)}")
    return ForcedCall((name,), True, function["parameters"], text)


def _any_of(functions: list[dict[str, Any]]) -> ForcedCall:
    defs: dict[str, Any] = {}
    branches = []
    for function in functions:
        parameters = _hoist(function["parameters"], function["name"], defs)
        branches.append({
            "type": "object",
            "properties": {"name": {"type": "string", "enum": [function["name"]]}, "arguments": parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    schema: dict[str, Any] = {"anyOf": branches}
    if defs:
        schema["$defs"] = defs
    listing = "\n".join(_describe(f) for f in functions)
    text = ('Call exactly one of these functions now. Answer with nothing but one JSON object: '
            '{"name": <the function\'s name>, "arguments": <its arguments>}.\n' + listing)
    return ForcedCall(tuple(f["name"] for f in functions), False, schema, text)


def _describe(function: dict[str, Any]) -> str:
    description = function.get("description")
    about = f": {description}" if description else ""
    return f"- {function['name']}{about}\n  parameters: {orjson.dumps(function['parameters']).decode()}"


def _hoist(parameters: dict[str, Any], tool: str, defs: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` without its ``$defs``, which move into ``defs`` (renamed on a clash, with
    the references rewritten), so ``#/$defs/X`` still resolves from the combined schema's root."""
    own = parameters.get("$defs")
    if not isinstance(own, dict) or not own:
        return parameters
    renames = {}
    for name, definition in own.items():
        new = name if defs.get(name, definition) == definition else f"{tool}__{name}"
        renames[name] = new
    body = {k: v for k, v in parameters.items() if k != "$defs"}
    for name, definition in own.items():
        defs[renames[name]] = _rewrite(definition, renames)
    result: dict[str, Any] = _rewrite(body, renames)
    return result


def _rewrite(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                target = value[len("#/$defs/"):]
                out[key] = "#/$defs/" + renames.get(target, target)
            else:
                out[key] = _rewrite(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite(item, renames) for item in node]
    return node


def instruct(messages: list[dict[str, Any]], forced: ForcedCall) -> list[dict[str, Any]]:
    """``messages`` with the call instruction as a system message after the leading ones."""
    at = 0
    while at < len(messages) and messages[at].get("role") == "system":
        at += 1
    return [*messages[:at], {"role": "system", "content": forced.instruction}, *messages[at:]]


# ---- the model's output → one tool call -------------------------------------------------------


def parse_call(forced: ForcedCall, text: str, *, cut: bool = False) -> tuple[str, str]:
    """The (name, arguments JSON string) the model's whole output stands for.

    ``cut``: the output was stopped by the token budget; what there is goes out as generated.
    """
    if cut:
        if forced.named:
            return forced.names[0], text.strip()
        scanner = CallScanner()
        scanner.feed(text)
        if scanner.name is None:
            raise UpstreamError(_bad(forced, "it was cut off (max_tokens) before naming a tool"))
        return scanner.name, scanner.arguments_so_far()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise UpstreamError(_bad(forced, "its output is not JSON")) from None
    if forced.named:
        if not isinstance(value, dict):
            raise UpstreamError(_bad(forced, "its output is not a JSON object"))
        return forced.names[0], orjson.dumps(value).decode()
    name = value.get("name") if isinstance(value, dict) else None
    if not isinstance(name, str) or name not in forced.names:
        raise UpstreamError(_bad(forced, "its output does not name one of the tools"))
    arguments = value.get("arguments")
    if not isinstance(arguments, dict):
        raise UpstreamError(_bad(forced, "its output has no arguments object"))
    return name, orjson.dumps(arguments).decode()


def check_streamed(forced: ForcedCall, scanner: CallScanner | None, text: str, *, cut: bool = False) -> None:
    """Refuse a finished streamed call whose output breaks the contract (502 as an error frame)."""
    if cut:
        raise UpstreamError(_bad(forced, "it was cut off (max_tokens) before the call began"))
    parse_call(forced, text)
    if scanner is not None and (scanner.name is None or scanner.args_end is None):
        raise UpstreamError(_bad(forced, "its output has no arguments object"))


def not_a_call(forced: ForcedCall, why: str) -> UpstreamError:
    """The 502 for output that is no valid call; ``why`` completes "... as tool_choice required: "."""
    return UpstreamError(_bad(forced, why))


def _bad(forced: ForcedCall, why: str) -> str:
    what = f"the tool '{forced.names[0]}'" if forced.named else "one of the tools"
    return (f"The model did not produce a valid call of {what}, as tool_choice required: {why}. "
            "Ollama may be too old to honour 'format' (structured outputs need 0.5 or later).")


class CallScanner:
    """Reads ``{"name": …, "arguments": {…}}`` as it is generated, one piece at a time.

    A small scanner of the top-level object (strings and escapes respected, nesting counted):
    it learns ``name`` as soon as its string closes and where ``arguments`` begins and ends, so a
    stream can announce the tool and then pass the arguments on as they come, in any key order.
    Each piece is scanned once and kept as it is (no growing string is copied per piece); only
    the top-level keys and string values, which are short, are collected to be decoded.
    """

    __slots__ = ("_buf", "_depth", "_escape", "_in_string", "_key", "_phase", "_start", "args_end",
                 "args_start", "name", "pieces", "pos")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.pos = 0  # characters seen
        self.name: str | None = None
        self.args_start: int | None = None  # offsets in the whole output
        self.args_end: int | None = None
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._phase = "open"  # open, key, colon, value, string, container, scalar, after
        self._key: str | None = None
        self._start = 0
        self._buf: list[str] = []  # the top-level string being read (a key or a value)

    @property
    def text(self) -> str:
        """The whole output so far."""
        return "".join(self.pieces)

    def feed(self, piece: str) -> str:
        """Scan ``piece``; return the part of it that belongs to ``arguments``."""
        base = self.pos
        j, n = 0, len(piece)
        stops = _STRING_STOPS if self._in_string else _NESTED_STOPS
        if self._depth >= 2 and not self._escape and stops.search(piece) is None:
            j = n  # the common case: a piece inside the arguments holding nothing to track
        while j < n:
            if self._depth >= 2 and not self._escape:
                # Inside the arguments (or another nested value) only quotes, backslashes and
                # brackets matter: jump to the next one (most pieces hold none).
                found = (_STRING_STOPS if self._in_string else _NESTED_STOPS).search(piece, j)
                if found is None:
                    break
                j = found.start()
            c, at = piece[j], base + j
            j += 1
            if self._in_string:
                if self._depth == 1:
                    self._buf.append(c)
                if self._escape:
                    self._escape = False
                elif c == "\\":
                    self._escape = True
                elif c == '"':
                    self._in_string = False
                    if self._depth == 1:
                        self._close_top_string(at)
                continue
            if c == '"':
                self._in_string = True
                if self._depth == 1:
                    self._buf = ['"']
                    if self._phase == "value":
                        self._begin_value(at, "string")
            elif c in "{[":
                self._depth += 1
                if self._depth == 1:
                    self._phase = "key"
                elif self._depth == 2 and self._phase == "value":
                    self._begin_value(at, "container")
            elif c in "}]":
                self._depth -= 1
                if self._depth == 1 and self._phase == "container":
                    self._end_value(at + 1)
                elif self._depth == 0 and self._phase == "scalar":
                    self._end_value(at)
            elif self._depth == 1:
                if c == ":" and self._phase == "colon":
                    self._phase = "value"
                elif c == ",":
                    if self._phase == "scalar":
                        self._end_value(at)
                    self._phase = "key"
                elif self._phase == "value" and not c.isspace():
                    self._begin_value(at, "scalar")
        self.pieces.append(piece)
        self.pos = base + len(piece)
        if self.args_start is None:
            return ""
        low = max(self.args_start, base)
        high = self.args_end if self.args_end is not None else self.pos
        return piece[low - base : high - base] if high > low else ""

    def _close_top_string(self, i: int) -> None:
        if self._phase == "key":
            self._key = _decode_str("".join(self._buf))
            self._phase = "colon"
        elif self._phase == "string":
            self._end_value(i + 1)

    def _begin_value(self, i: int, kind: str) -> None:
        self._start = i
        self._phase = kind
        if self._key == "arguments":
            self.args_start = i

    def _end_value(self, end: int) -> None:
        if self._key == "name":
            self.name = _decode_str("".join(self._buf)) if self._phase == "string" else None
        elif self._key == "arguments":
            self.args_end = end
        self._phase = "after"

    def arguments_so_far(self) -> str:
        """The arguments text generated so far (all of it once they are complete)."""
        if self.args_start is None:
            return ""
        return self.text[self.args_start : self.args_end if self.args_end is not None else self.pos]


_STRING_STOPS = re.compile(r'["\\]')
_NESTED_STOPS = re.compile(r'["\[\]{}]')


def _decode_str(raw: str) -> str | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None
