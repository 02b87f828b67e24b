"""Tables for ``proxy/translate/tool_choice.py``: the format a forced call gives Ollama, where the
instruction goes, how the output becomes a call (or a 502), and the incremental scanner."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import InvalidRequest, UpstreamError
from proxy.translate.tool_choice import CallScanner, forced_call, instruct, parse_call


def tool(name: str, parameters: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TIME = {"type": "object", "properties": {}}
ADDRESS = {"type": "object", "properties": {"street": {"type": "string"}}}
OTHER_ADDRESS = {"type": "object", "properties": {"zip": {"type": "string"}}}
PERSON = {"type": "object", "properties": {"home": {"$ref": "#/$defs/Address"}}, "$defs": {"Address": ADDRESS}}
COMPANY = {"type": "object", "properties": {"office": {"$ref": "#/$defs/Address"},
                                            "items": {"type": "array", "items": {"$ref": "#/$defs/Address"}}},
           "$defs": {"Address": OTHER_ADDRESS}}
TOOLS = [tool("get_weather", WEATHER, "Weather for a city"), tool("get_time", TIME)]


def branch(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"name": {"type": "string", "enum": [name]}, "arguments": arguments},
            "required": ["name", "arguments"], "additionalProperties": False}


FORMATS = [
    ("a named function: its parameters are the format", {"type": "function", "function": {"name": "get_time"}},
     TOOLS, ("get_time",), True, TIME),
    ("required over one tool is that tool named", "required", TOOLS[:1], ("get_weather",), True, WEATHER),
    ("required over several: anyOf of name-first branches", "required", TOOLS, ("get_weather", "get_time"), False,
     {"anyOf": [branch("get_weather", WEATHER), branch("get_time", TIME)]}),
    ("required: $defs move to the root, equal ones shared", "required",
     [tool("a", PERSON), tool("b", PERSON)], ("a", "b"), False,
     {"anyOf": [branch("a", {"type": "object", "properties": {"home": {"$ref": "#/$defs/Address"}}}),
                branch("b", {"type": "object", "properties": {"home": {"$ref": "#/$defs/Address"}}})],
      "$defs": {"Address": ADDRESS}}),
    ("required: a clashing definition is renamed, its references too", "required",
     [tool("person", PERSON), tool("company", COMPANY)], ("person", "company"), False,
     {"anyOf": [branch("person", {"type": "object", "properties": {"home": {"$ref": "#/$defs/Address"}}}),
                branch("company", {"type": "object", "properties": {
                    "office": {"$ref": "#/$defs/company__Address"},
                    "items": {"type": "array", "items": {"$ref": "#/$defs/company__Address"}}}})],
      "$defs": {"Address": ADDRESS, "company__Address": OTHER_ADDRESS}}),
]  # fmt: skip


@pytest.mark.parametrize("choice, tools, names, named, fmt", [r[1:] for r in FORMATS], ids=[r[0] for r in FORMATS])
def test_format_for_a_forced_choice(choice: Any, tools: list[dict[str, Any]], names: tuple[str, ...], named: bool,
                                    fmt: dict[str, Any]) -> None:
    forced = forced_call(choice, tools)
    assert forced is not None
    assert (forced.names, forced.named, forced.format) == (names, named, fmt)
    for name in names:
        assert f"`{name}`" in forced.instruction or f"- {name}" in forced.instruction


@pytest.mark.parametrize("choice", [None, "auto", "none"], ids=["absent", "auto", "none"])
def test_no_force_for_auto_and_none(choice: Any) -> None:
    assert forced_call(choice, TOOLS) is None


def test_the_instruction_describes_the_tools() -> None:
    forced = forced_call("required", TOOLS)
    assert forced is not None
    assert "Weather for a city" in forced.instruction and json.dumps(WEATHER, separators=(",", ":")) in forced.instruction


@pytest.mark.parametrize("messages, at", [
    ([{"role": "user", "content": "hi"}], 0),
    ([{"role": "system", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "hi"}], 2),
    ([{"role": "user", "content": "hi"}, {"role": "system", "content": "late"}], 0),
], ids=["no system message: first", "after the leading system messages", "a later system message stays later"])
def test_the_instruction_follows_the_leading_system_messages(messages: list[dict[str, Any]], at: int) -> None:
    forced = forced_call("required", TOOLS)
    assert forced is not None
    out = instruct(messages, forced)
    assert out[at] == {"role": "system", "content": forced.instruction}
    assert out[:at] + out[at + 1:] == messages


def test_an_unknown_name_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        forced_call({"type": "function", "function": {"name": "nope"}}, TOOLS)
    assert info.value.param == "tool_choice.function.name"


NAMED = forced_call({"type": "function", "function": {"name": "get_weather"}}, TOOLS)
REQUIRED = forced_call("required", TOOLS)

PARSED = [
    ("named: the object is the arguments, compact", NAMED, ' {"city" : "Paris"}\n', False,
     ("get_weather", '{"city":"Paris"}')),
    ("required: name and arguments", REQUIRED, '{"name": "get_time", "arguments": {}}', False, ("get_time", "{}")),
    ("required: arguments first is fine too", REQUIRED, '{"arguments": {"city": "Oslo"}, "name": "get_weather"}',
     False, ("get_weather", '{"city":"Oslo"}')),
    ("named, cut off: the text as generated", NAMED, '{"city": "Pa', True, ("get_weather", '{"city": "Pa')),
    ("required, cut off after the name", REQUIRED, '{"name": "get_weather", "arguments": {"ci', True,
     ("get_weather", '{"ci')),
]  # fmt: skip


@pytest.mark.parametrize("forced, text, cut, call", [r[1:] for r in PARSED], ids=[r[0] for r in PARSED])
def test_parse_call(forced: Any, text: str, cut: bool, call: tuple[str, str]) -> None:
    assert parse_call(forced, text, cut=cut) == call


REFUSED = [
    ("named: not JSON", NAMED, "The weather is", False, "not JSON"),
    ("named: an array", NAMED, "[]", False, "not a JSON object"),
    ("required: a name not among the tools", REQUIRED, '{"name": "rm", "arguments": {}}', False,
     "does not name one of the tools"),
    ("required: arguments not an object", REQUIRED, '{"name": "get_time", "arguments": "x"}', False,
     "no arguments object"),
    ("required: cut off before the name", REQUIRED, '{"na', True, "before naming a tool"),
]  # fmt: skip


@pytest.mark.parametrize("forced, text, cut, why", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_output_that_is_no_valid_call_is_a_502(forced: Any, text: str, cut: bool, why: str) -> None:
    with pytest.raises(UpstreamError) as info:
        parse_call(forced, text, cut=cut)
    assert info.value.status == 502 and why in info.value.message


SCANNED = [
    ("name first", '{"name": "f", "arguments": {"a": [1, {"b": "}"}]}}', "f", '{"a": [1, {"b": "}"}]}'),
    ("arguments first", '{"arguments":{"q":"\\"}\\\\"},"name":"g"}', "g", '{"q":"\\"}\\\\"}'),
    ("an escaped quote in the name", '{"name": "a\\"b", "arguments": {}}', 'a"b', "{}"),
    ("a scalar before the end", '{"n": 1, "name": "h", "arguments": {}, "x": true}', "h", "{}"),
    ("whitespace everywhere", '\n{ "name" :\t"i" ,\n "arguments" : { } }', "i", "{ }"),
]  # fmt: skip


@pytest.mark.parametrize("text, name, arguments", [r[1:] for r in SCANNED], ids=[r[0] for r in SCANNED])
@pytest.mark.parametrize("size", [1, 3, 1000], ids=["char by char", "three at a time", "whole"])
def test_the_scanner_finds_name_and_arguments_in_any_pieces(text: str, name: str, arguments: str, size: int) -> None:
    scanner = CallScanner()
    seen_before_end = []
    returned = []
    for i in range(0, len(text), size):
        returned.append(scanner.feed(text[i:i + size]))
        seen_before_end.append(scanner.arguments_so_far())
    assert (scanner.name, scanner.arguments_so_far()) == (name, arguments)
    assert "".join(returned) == arguments and scanner.text == text
    assert scanner.args_end is not None
    # What went out along the way is always a prefix of the final arguments (never the wrapper).
    assert all(arguments.startswith(part) for part in seen_before_end)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(arguments=st.dictionaries(st.text(max_size=5), _JSON, max_size=4), name=st.text(min_size=1, max_size=6),
       cuts=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=40), arguments_first=st.booleans(),
       spaced=st.booleans())
def test_the_scanner_on_any_call_in_any_pieces(arguments: dict[str, Any], name: str, cuts: list[int],
                                               arguments_first: bool, spaced: bool) -> None:
    separators = (", ", ": ") if spaced else (",", ":")
    args_text = json.dumps(arguments, separators=separators)
    call = {"arguments": arguments, "name": name} if arguments_first else {"name": name, "arguments": arguments}
    text = json.dumps(call, separators=separators)
    scanner, returned, at = CallScanner(), [], 0
    for cut in itertools.cycle(cuts):
        if at >= len(text):
            break
        returned.append(scanner.feed(text[at:at + cut]))
        at += cut
    assert (scanner.name, "".join(returned)) == (name, args_text)
