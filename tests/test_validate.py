"""Tables for ``proxy/models/limits.py``: the rules table itself, one row per limit refused (with the
``param`` path, ``code`` and config key the client sees), the model gates, the byte-level JSON
shape check (including JSON deep enough to crash orjson) and the default token budget."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config import Config, LimitsConfig, ModelLimits, build
from proxy.errors import InvalidRequest, ModelNotFound, PermissionDenied, ProxyError
from proxy.models.limits import (
    RULES,
    Limits,
    Validator,
    image_bytes,
    json_shape,
    path_text,
    with_defaults,
)

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="


def limits(**toml: Any) -> LimitsConfig:
    return build(Config, {"limits": toml}, "").limits


def image(data: str = PNG) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": list(messages) or [user("hi")], **extra}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def call(arguments: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}]}


# ---- the table -----------------------------------------------------------------------------------

def test_every_rule_names_a_limit_of_the_config() -> None:
    names = {f.name for f in dataclasses.fields(LimitsConfig)}
    assert {rule.limit for rule in RULES} <= names


def test_every_overridable_limit_mirrors_its_global_key() -> None:
    glob = {f.name: f for f in dataclasses.fields(LimitsConfig)}
    for f in dataclasses.fields(ModelLimits):
        assert f.name in glob, f.name
        assert f.default is None
        assert f.metadata["why"] == glob[f.name].metadata["why"], f.name


def test_every_overridable_limit_is_checked_or_applied() -> None:
    checked = {rule.limit for rule in RULES} | {"default_max_tokens"}  # applied by with_defaults
    checked |= {"allowed_options", "max_num_ctx", "max_keep_alive"}  # applied by extras.check_extras
    assert {f.name for f in dataclasses.fields(ModelLimits)} <= checked


# ---- refusals ------------------------------------------------------------------------------------

LONG_CALL = call(orjson.dumps(nested(10)).decode())
REFUSED = [
    ("too many messages", {"max_messages": 2}, body(user("a"), user("b"), user("c")),
     "messages", "array_above_max_length", "limits.max_messages"),
    ("a long string message", {"max_message_chars": 5}, body(user("hi"), user("123456")),
     "messages[1].content", "string_above_max_length", "limits.max_message_chars"),
    ("text parts count together", {"max_message_chars": 5},
     body(user([{"type": "text", "text": "abc"}, {"type": "text", "text": "def"}])),
     "messages[0].content", "string_above_max_length", "limits.max_message_chars"),
    ("the total names the message that crossed it", {"max_total_chars": 10},
     body(user("1234"), user("5678"), user("9abc"), user("more")),
     "messages[2].content", "string_above_max_length", "limits.max_total_chars"),
    ("the image that crossed the count is named", {"max_images": 2},
     body(user([image()]), user([{"type": "text", "text": "and"}, image(), image()])),
     "messages[1].content[2].image_url", "array_above_max_length", "limits.max_images"),
    ("an image too large", {"max_image_bytes": 100}, body(user([image("A" * 400)])),
     "messages[0].content[0].image_url", "image_too_large", "limits.max_image_bytes"),
    ("too many tools", {"max_tools": 1},
     body(tools=[{"type": "function", "function": {"name": n}} for n in "ab"]),
     "tools", "array_above_max_length", "limits.max_tools"),
    ("too many stop sequences", {"max_stop": 2}, body(stop=["a", "b", "c"]),
     "stop", "array_above_max_length", "limits.max_stop"),
    ("n above max_n (default 4)", {}, body(n=5), "n", "integer_above_max_value", "limits.max_n"),
    ("n above a configured max_n", {"max_n": 2}, body(n=3), "n", "integer_above_max_value", "limits.max_n"),
    ("max_tokens above the cap", {"max_tokens": 100}, body(max_tokens=101),
     "max_tokens", "integer_above_max_value", "limits.max_tokens"),
    ("max_completion_tokens above the cap", {"max_tokens": 100}, body(max_completion_tokens=1000),
     "max_completion_tokens", "integer_above_max_value", "limits.max_tokens"),
    ("Ollama's endless num_predict under a cap", {"max_tokens": 100}, body(options={"num_predict": -1}),
     "options.num_predict", "integer_above_max_value", "limits.max_tokens"),
    ("temperature above OpenAI's range", {}, body(temperature=2.5),
     "temperature", "decimal_out_of_range", "limits.temperature"),
    ("temperature through Ollama's options", {"temperature": [0, 1]}, body(options={"temperature": 1.5}),
     "options.temperature", "decimal_out_of_range", "limits.temperature"),
    ("top_p above 1", {}, body(top_p=1.01), "top_p", "decimal_out_of_range", "limits.top_p"),
    ("frequency_penalty below -2", {}, body(frequency_penalty=-2.5),
     "frequency_penalty", "decimal_out_of_range", "limits.frequency_penalty"),
    ("presence_penalty above 2", {}, body(presence_penalty=3),
     "presence_penalty", "decimal_out_of_range", "limits.presence_penalty"),
    ("tool-call arguments nested too deep", {"max_json_depth": 5}, body(user("x"), LONG_CALL),
     "messages[1].tool_calls[0].function.arguments", "json_too_deep", "limits.max_json_depth"),
    ("tool-call arguments with too many containers", {"max_json_containers": 3},
     body(user("x"), call("[[],[],[],{}]")),
     "messages[1].tool_calls[0].function.arguments", "json_too_large", "limits.max_json_containers"),
]  # fmt: skip


@pytest.mark.parametrize("toml, request_body, param, code, key", [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_refused(toml: dict[str, Any], request_body: dict[str, Any], param: str, code: str, key: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Validator(limits(**toml)).check(request_body)
    error = caught.value
    assert (error.status, error.param, error.code) == (400, param, code)
    assert f"'{param}'" in error.message and f"({key})" in error.message


ACCEPTED = [
    ("a plain request", {}, body(temperature=0.7, top_p=1, max_tokens=10, stop="x")),
    ("the edges of every range", {}, body(temperature=2, top_p=0, frequency_penalty=-2, presence_penalty=2)),
    ("0 disables a count", {"max_messages": 0}, body(*[user("x")] * 5000)),
    ("no cap: any budget", {}, body(max_tokens=10**9, options={"num_predict": -1})),
    ("exactly at each limit", {"max_messages": 2, "max_message_chars": 3, "max_total_chars": 6},
     body(user("abc"), user("def"))),
    ("wrong types are the translation's to refuse",
     {"max_messages": 1, "max_tokens": 5}, {"model": 5, "messages": "x", "temperature": "hot", "max_tokens": True}),
    ("http image URLs are not sized (never fetched)", {"max_image_bytes": 1},
     body(user([{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]))),
    ("the content is not changed", {}, body(user("  <script>\x00 ünïcode  "))),
]  # fmt: skip


@pytest.mark.parametrize("toml, request_body", [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_accepted(toml: dict[str, Any], request_body: dict[str, Any]) -> None:
    before = orjson.dumps(request_body)
    Validator(limits(**toml)).check(request_body)
    assert orjson.dumps(request_body) == before


def test_a_per_model_override_applies_and_is_named() -> None:
    validator = Validator(limits(max_tokens=1000, models={"qwen*": {"max_tokens": 10}}))
    validator.check(body(max_tokens=500))  # llama3.2: the global cap
    with pytest.raises(InvalidRequest) as caught:
        validator.check({**body(max_tokens=500), "model": "qwen3:8b"})
    assert 'limits.models."qwen*".max_tokens' in caught.value.message


def test_every_matching_pattern_applies_in_file_order() -> None:
    validator = Validator(limits(models={"qwen*": {"max_tokens": 10, "max_stop": 1},
                                         "*:8b": {"max_tokens": 20}}))
    effective = validator.limits_for("qwen3:8b")
    assert (effective["max_tokens"], effective["max_stop"]) == (20, 1)
    assert effective.sources["max_tokens"] == 'limits.models."*:8b".max_tokens'
    assert validator.limits_for("llama3.2")["max_tokens"] == 0


def test_the_per_model_cache_stays_bounded() -> None:
    validator = Validator(limits(models={"qwen*": {"max_tokens": 10}}))
    for i in range(3000):
        validator.limits_for(f"model-{i}")
    assert len(validator._per_model) <= 1024


# ---- model gates ---------------------------------------------------------------------------------

GATES = [
    ("everything is allowed by default", {}, "anything:7b", None),
    ("an allowed glob", {"allowed_models": ["llama3*"]}, "llama3.2:latest", None),
    ("outside the allowed globs: 404", {"allowed_models": ["llama3*"]}, "qwen3:8b", ModelNotFound),
    ("a size glob", {"denied_models": ["*:70b"]}, "llama3:70b", PermissionDenied),
    ("denied names its canonical form", {"denied_models": ["llama3:latest"]}, "llama3", PermissionDenied),
    ("denied ignores case", {"denied_models": ["llama3"]}, "LLaMA3:Latest", PermissionDenied),
    ("denied sees through the default registry", {"denied_models": ["llama3*"]},
     "registry.ollama.ai/library/llama3", PermissionDenied),
    ("an exact allowed name admits its short form", {"allowed_models": ["llama3:latest"]}, "llama3", None),
    ("a different tag is a different model", {"denied_models": ["llama3"]}, "llama3:8b", None),
    ("not allowed wins over denied (existence not revealed)",
     {"allowed_models": ["a*"], "denied_models": ["b*"]}, "b1", ModelNotFound),
]  # fmt: skip


@pytest.mark.parametrize("toml, model, error", [r[1:] for r in GATES], ids=[r[0] for r in GATES])
def test_model_gates(toml: dict[str, Any], model: str, error: type[ProxyError] | None) -> None:
    validator = Validator(limits(**toml))
    assert validator.allows(model) is (error is None)
    if error is None:
        validator.check({**body(), "model": model})
        return
    with pytest.raises(error) as caught:
        validator.check({**body(), "model": model})
    assert caught.value.param == "model"
    assert caught.value.status == (404 if error is ModelNotFound else 403)


# ---- the JSON shape of raw bytes -----------------------------------------------------------------

def raw_check(raw: bytes, **toml: Any) -> InvalidRequest | None:
    try:
        Validator(limits(**toml)).check_raw(raw)
    except InvalidRequest as exc:
        return exc
    return None


def test_depth_at_the_limit_passes_and_beyond_names_the_path() -> None:
    assert raw_check(orjson.dumps({"a": nested(63)})) is None  # the object is level 1
    error = raw_check(orjson.dumps({"tools": [{"p": nested(70)}]}))
    assert error is not None and error.code == "json_too_deep" and "limits.max_json_depth" in error.message
    assert error.param is not None and error.param.startswith("tools[0].p[0][0]")


def test_json_deep_enough_to_crash_orjson_is_refused_unparsed() -> None:
    # orjson 3.8 overflows its stack (the process dies) near a million levels: never parse this.
    raw = b'{"model": "m", "messages": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}"
    error = raw_check(raw)  # the container count stops it first
    assert error is not None and error.code == "json_too_large"
    error = raw_check(raw, max_json_containers=0)
    assert error is not None and error.code == "json_too_deep" and error.param is None


def test_too_many_containers_are_refused_before_parsing() -> None:
    error = raw_check(b"[" + b"[]," * 1000 + b"[]]", max_json_containers=500)
    assert error is not None and error.code == "json_too_large" and "1002" in error.message


@pytest.mark.parametrize("raw, shape", [
    (b'{"a": "[[[[[[[[[[{{{{{{"}', (1, 1)),
    (b'{"a": "\\"[[[[[[[[[[", "b": [[]]}', (3, 3)),
    (b'{"a": "\\\\", "b": [[]]}', (3, 3)),
    (b'["\\\\\\"[[["]', (1, 1)),
    (b"[[[[[[[[[[", (10, 10)),  # unbalanced: as deep as a parser would go
    (b"]]]]][[", (0, 2)),
], ids=["brackets in strings", "escaped quote", "escaped backslash before a quote",
        "escaped backslash then escaped quote", "unbalanced", "closers first"])
def test_json_shape_skips_strings(raw: bytes, shape: tuple[int, int]) -> None:
    assert json_shape(raw, 0) == shape


def _true_shape(value: Any, level: int = 1) -> tuple[int, int]:
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    else:
        return 0, 0
    depth, containers = level, 1
    for child in children:
        d, c = _true_shape(child, level + 1)
        depth, containers = max(depth, d), containers + c
    return depth, containers


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('[]{}"\\ab\n\u00e9'), max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=5), inner,
                                                                 max_size=4),
    max_leaves=30,
)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(JSON)
def test_json_shape_matches_the_parsed_value(value: Any) -> None:
    assert json_shape(orjson.dumps(value), 0) == _true_shape(value)


# ---- small parts ---------------------------------------------------------------------------------

def test_image_bytes_are_computed_from_the_base64_length() -> None:
    assert image_bytes({"url": "data:image/png;base64,QUJD"}) == 3
    assert image_bytes({"url": "data:image/png;base64,QUI="}) == 2
    assert image_bytes("data:image/png;base64,QQ==") == 1
    assert image_bytes({"url": "https://example.com/a.png"}) is None


def test_path_text() -> None:
    assert path_text(("messages", 3, "content", 1, "image_url")) == "messages[3].content[1].image_url"
    assert path_text(()) == ""


def test_with_defaults_fills_only_a_missing_budget_and_mutates_nothing() -> None:
    budget = Limits({"default_max_tokens": 256}, {})
    ollama = {"model": "m", "messages": [], "options": {"temperature": 0.5}}
    out = with_defaults(ollama, budget)
    assert out["options"] == {"temperature": 0.5, "num_predict": 256}
    assert ollama["options"] == {"temperature": 0.5}
    assert with_defaults({"model": "m", "options": {"num_predict": 9}}, budget)["options"]["num_predict"] == 9
    assert with_defaults({"model": "m"}, Limits({"default_max_tokens": 0}, {})) == {"model": "m"}
