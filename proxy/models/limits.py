"""The request limits of ``[limits]``, checked by one declarative validator.

Two stages, both driven by ``config.LimitsConfig``:

* ``Validator.check_raw(raw)`` looks at the body's bytes before anything parses them: its JSON
  nesting depth and its number of objects and arrays. This cannot wait for the parser: orjson 3.8
  overflows its stack (the process dies, no exception) on JSON nested about a million levels
  deep, and a 20 MiB body of ``[[],[],…]`` costs it seconds of CPU. The scan works on the bytes
  with C-speed ``bytes`` methods (strings removed, brackets counted) and is skipped outright when
  the body holds fewer brackets than the limits.
* ``Validator.check(body)`` looks at the parsed body before translation: first the model gates
  (``allowed_models`` → 404, ``denied_models`` → 403), then every row of ``RULES``. A row names a
  limit, where in the body it applies (a path with ``[*]`` for every item of an array), how the
  value there is measured, and whether each value or their running total is bounded.

Adding a limit is adding its key to ``LimitsConfig`` (and ``ModelLimits`` when it may differ per
model) and one row to ``RULES``. Nothing here changes the body: content passes through as sent,
and what breaks a limit is refused with a 400 naming the path (``messages[3].content[1].image_url``)
and the config key of the limit in force (``limits.models."qwen*".max_tokens``). Wrong types are
not this module's business: a measure returns ``None`` for a value it cannot measure and the
translation refuses it with its own message. A limit of 0 means "no limit".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal

import orjson

from ..config import LimitsConfig, ModelLimits
from ..errors import InvalidRequest, ModelNotFound, PermissionDenied
from ..modelglob import Globs

__all__ = ["RULES", "Limits", "Rule", "Validator", "json_shape", "with_defaults"]

Measure = Callable[[Any], float | None]


# ---- measures: a value → a number, or None when the value is not this rule's business ----------


def item_count(value: Any) -> float | None:
    """Items of a Responses ``input`` list (objects); an embeddings ``input`` of strings or token
    ids is ``max_inputs``' business, not this."""
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return len(value)
    return None


def length(value: Any) -> float | None:
    return len(value) if isinstance(value, list) else None


def text_chars(content: Any) -> float | None:
    """Characters of a message's text: a string, or the text parts of a content array."""
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        return None
    total = 0
    for part in content:
        if isinstance(part, dict):
            text = part.get("text", part.get("refusal"))
            if isinstance(text, str):
                total += len(text)
    return total


def longest_text(value: Any) -> float | None:
    """Characters of the longest text in a string or an array of strings (a prompt, an input)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return max((len(v) for v in value if isinstance(v, str)), default=0)
    return None


def all_text(value: Any) -> float | None:
    """Characters of a string or of every string in an array of strings."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(len(v) for v in value if isinstance(v, str))
    return None


def one(value: Any) -> float | None:
    return 1


def image_bytes(image_url: Any) -> float | None:
    """Decoded size of a ``data:`` URL image, from its length (nothing is decoded or fetched)."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    comma = url.find(",")
    payload = len(url) - comma - 1
    if comma < 0 or ";base64" not in url[:comma]:
        return payload
    return payload * 3 // 4 - url.endswith("=") - url.endswith("==")


def base64_image(source: Any) -> float | None:
    """An Anthropic image block's ``source``: 1 when it is a base64 image (documents are not)."""
    return 1 if isinstance(source, dict) and str(source.get("media_type", "")).startswith("image/") else None


def base64_bytes(source: Any) -> float | None:
    """Decoded size of an Anthropic base64 ``source``, from its length."""
    data = source.get("data") if isinstance(source, dict) and source.get("type") == "base64" else None
    if not isinstance(data, str):
        return None
    return len(data) * 3 // 4 - data.endswith("=") - data.endswith("==")


def stop_count(stop: Any) -> float | None:
    return 1 if isinstance(stop, str) else length(stop)


def tokens(value: Any) -> float | None:
    """A token budget; Ollama's negative ``num_predict`` (-1 endless, -2 fill) is unbounded."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return math.inf if value < 0 else value


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def json_containers(text: Any) -> float | None:
    """Objects and arrays of JSON held in a string (tool-call arguments, decoded by translation)."""
    if not isinstance(text, str):
        return None
    bones = skeleton(text.encode())
    return bones.count(b"[") + bones.count(b"{")


def json_depth(text: Any) -> float | None:
    """Nesting depth of JSON held in a string; its row follows the containers row, which bounds
    the cost of this walk."""
    return json_shape(text.encode(), 0)[0] if isinstance(text, str) else None


# ---- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One limit applied at one place of the body."""

    limit: str  # a key of [limits]
    where: str  # dotted path; "[*]" means every item of an array
    measure: Measure  # the value there → a number, or None (not this rule's business)
    unit: str  # for the message
    how: Literal["each", "total", "range"]  # bound each value, their running total, or a range
    code: str  # OpenAI-style error code


_ARGS = "messages[*].tool_calls[*].function.arguments"  # JSON in a string, decoded by translation

RULES: tuple[Rule, ...] = (
    #    limit                  where                               measure          unit                  how      code
    Rule("max_messages",        "messages",                         length,          "messages",           "each",  "array_above_max_length"),
    Rule("max_message_chars",   "messages[*].content",              text_chars,      "characters",         "each",  "string_above_max_length"),
    Rule("max_total_chars",     "messages[*].content",              text_chars,      "characters",         "total", "string_above_max_length"),
    # /v1/completions and /v1/embeddings (and Ollama's native generate/embed): the same
    # character limits as chat messages, per text and for the whole request
    Rule("max_message_chars",   "prompt",                           longest_text,    "characters",         "each",  "string_above_max_length"),
    Rule("max_total_chars",     "prompt",                           all_text,        "characters",         "total", "string_above_max_length"),
    Rule("max_message_chars",   "suffix",                           longest_text,    "characters",         "each",  "string_above_max_length"),
    Rule("max_inputs",          "input",                            length,          "inputs",             "each",  "array_above_max_length"),
    Rule("max_message_chars",   "input",                            longest_text,    "characters",         "each",  "string_above_max_length"),
    Rule("max_total_chars",     "input",                            all_text,        "characters",         "total", "string_above_max_length"),
    Rule("max_images",          "messages[*].content[*].image_url", one,             "images",             "total", "array_above_max_length"),
    Rule("max_image_bytes",     "messages[*].content[*].image_url", image_bytes,     "bytes",              "each",  "image_too_large"),
    Rule("max_tools",           "tools",                            length,          "tools",              "each",  "array_above_max_length"),
    Rule("max_stop",            "stop",                             stop_count,      "stop sequences",     "each",  "array_above_max_length"),
    Rule("max_n",               "n",                                number,          "choices",            "each",  "integer_above_max_value"),
    Rule("max_tokens",          "max_tokens",                       tokens,          "tokens",             "each",  "integer_above_max_value"),
    Rule("max_tokens",          "max_completion_tokens",            tokens,          "tokens",             "each",  "integer_above_max_value"),
    Rule("max_tokens",          "options.num_predict",              tokens,          "tokens",             "each",  "integer_above_max_value"),
    Rule("temperature",         "temperature",                      number,          "",                   "range", "decimal_out_of_range"),
    Rule("temperature",         "options.temperature",              number,          "",                   "range", "decimal_out_of_range"),
    Rule("top_p",               "top_p",                            number,          "",                   "range", "decimal_out_of_range"),
    Rule("top_p",               "options.top_p",                    number,          "",                   "range", "decimal_out_of_range"),
    Rule("frequency_penalty",   "frequency_penalty",                number,          "",                   "range", "decimal_out_of_range"),
    Rule("frequency_penalty",   "options.frequency_penalty",        number,          "",                   "range", "decimal_out_of_range"),
    Rule("presence_penalty",    "presence_penalty",                 number,          "",                   "range", "decimal_out_of_range"),
    Rule("presence_penalty",    "options.presence_penalty",         number,          "",                   "range", "decimal_out_of_range"),
    # containers before depth: the count bounds the cost of the depth walk
    Rule("max_json_containers", _ARGS,                              json_containers, "objects and arrays", "each",  "json_too_large"),
    Rule("max_json_depth",      _ARGS,                              json_depth,      "levels of nesting",  "each",  "json_too_deep"),
    # /v1/responses: the same limits where its body holds the same things (chat bodies have no
    # "input" or "instructions", so these rows cost chat one dict lookup each)
    Rule("max_messages",        "input",                            item_count,      "items",              "each",  "array_above_max_length"),
    Rule("max_message_chars",   "input",                            text_chars,      "characters",         "each",  "string_above_max_length"),
    Rule("max_message_chars",   "instructions",                     text_chars,      "characters",         "each",  "string_above_max_length"),
    Rule("max_message_chars",   "input[*].content",                 text_chars,      "characters",         "each",  "string_above_max_length"),
    Rule("max_total_chars",     "input[*].content",                 text_chars,      "characters",         "total", "string_above_max_length"),
    Rule("max_message_chars",   "input[*].output",                  text_chars,      "characters",         "each",  "string_above_max_length"),
    Rule("max_images",          "input[*].content[*].image_url",    one,             "images",             "total", "array_above_max_length"),
    Rule("max_image_bytes",     "input[*].content[*].image_url",    image_bytes,     "bytes",              "each",  "image_too_large"),
    Rule("max_tokens",          "max_output_tokens",                tokens,          "tokens",             "each",  "integer_above_max_value"),
    Rule("max_json_containers", "input[*].arguments",               json_containers, "objects and arrays", "each",  "json_too_large"),
    Rule("max_json_depth",      "input[*].arguments",               json_depth,      "levels of nesting",  "each",  "json_too_deep"),
    # /v1/messages (Anthropic): its system prompt, stop sequences and tool results
    Rule("max_message_chars",   "system",                           text_chars,      "characters",         "each",  "string_above_max_length"),
    Rule("max_stop",            "stop_sequences",                   length,          "stop sequences",     "each",  "array_above_max_length"),
    Rule("max_message_chars",   "messages[*].content[*].content",   text_chars,      "characters",         "each",  "string_above_max_length"),
    Rule("max_images",          "messages[*].content[*].source",    base64_image,    "images",             "total", "array_above_max_length"),
    Rule("max_image_bytes",     "messages[*].content[*].source",    base64_bytes,    "bytes",              "each",  "image_too_large"),
)  # fmt: skip

_STAR = object()  # "[*]" in a compiled path


def _steps(where: str) -> tuple[Any, ...]:
    steps: list[Any] = []
    for name in where.split("."):
        steps.append(name.replace("[*]", ""))
        steps.extend([_STAR] * name.count("[*]"))
    return tuple(steps)


def _select(body: Any, steps: tuple[Any, ...]) -> list[Any]:
    """Every value the compiled path reaches, in document order; parts of the wrong type are
    skipped. Values only, level by level: this runs on every request, and the paths are only
    wanted for a refusal (``_paths``)."""
    level: list[Any] = [body]
    for step in steps:
        found: list[Any] = []
        for node in level:
            if step is _STAR:
                if isinstance(node, list):
                    found.extend(node)
            elif isinstance(node, dict) and (value := node.get(step)) is not None:
                found.append(value)
        if not found:
            return found
        level = found
    return level


def _paths(body: Any, steps: tuple[Any, ...]) -> list[tuple[str | int, ...]]:
    """The paths of ``_select``'s values, in the same order."""
    level: list[tuple[tuple[str | int, ...], Any]] = [((), body)]
    for step in steps:
        found: list[tuple[tuple[str | int, ...], Any]] = []
        for path, node in level:
            if step is _STAR:
                if isinstance(node, list):
                    found.extend(((*path, i), item) for i, item in enumerate(node))
            elif isinstance(node, dict) and (value := node.get(step)) is not None:
                found.append(((*path, step), value))
        level = found
    return [path for path, _ in level]


def path_text(path: tuple[str | int, ...]) -> str:
    """``("messages", 3, "content")`` → ``messages[3].content``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# ---- the JSON shape of raw bytes -----------------------------------------------------------------

_BRACKETS_ONLY = bytes(range(256)).translate(None, b"[]{}")  # every byte but brackets: deleted
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def json_shape(raw: bytes, fast_below: int, max_containers: int = 0) -> tuple[int, int]:
    """(nesting depth, objects + arrays) of JSON text, without parsing it.

    Returns (0, 0) when the bytes hold at most ``fast_below`` brackets at all, which bounds both,
    and depth 0 (not measured) when the containers exceed ``max_containers``: the depth walk is
    the one step that costs per bracket, so it only runs on a skeleton known to be small.
    """
    if raw.count(b"[") + raw.count(b"{") <= fast_below:
        return 0, 0
    bones = skeleton(raw)
    containers = bones.count(b"[") + bones.count(b"{")
    if max_containers and containers > max_containers:
        return 0, containers
    depth = max(accumulate(map(_STEP.__getitem__, bones)), default=0)
    return max(depth, 0), containers


def skeleton(raw: bytes) -> bytes:
    """The brackets of JSON text that lie outside strings, in order.

    Escaped backslashes and quotes are removed first (valid JSON pairs them left to right, as
    ``bytes.replace`` does), then every other quote-delimited part is dropped. For invalid JSON
    the result is exact up to the first error, which is as far as any parser nests, so it
    remains a safe bound.
    """
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2]).translate(None, _BRACKETS_ONLY)


def _deep_param(raw: bytes, depth: int, limit: int) -> str | None:
    """The path to name in a depth refusal; parsing is safe here because ``depth`` is known."""
    if depth > 10_000:  # far below orjson's stack overflow, far above any sane limit
        return None
    try:
        return _deep_path(orjson.loads(raw), limit)
    except orjson.JSONDecodeError:
        return None


def _deep_path(body: Any, limit: int) -> str | None:
    """Path of the first container nested deeper than ``limit`` (iterative: no recursion limit)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(body, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= limit:
            return path_text(path) or None
        items = node.items() if isinstance(node, dict) else enumerate(node)
        stack.extend((v, (*path, k)) for k, v in items if isinstance(v, (dict, list)))
    return None


# ---- the validator -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The limits in force for one model, each with the config key it came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


_OVERRIDABLE = tuple(f.name for f in dataclasses.fields(ModelLimits))
_CACHE_SIZE = 1024  # model names come from clients: the per-model cache must stay bounded


class Validator:
    """Checks bodies against one ``LimitsConfig``; built once per app, shared by requests."""

    def __init__(self, config: LimitsConfig) -> None:
        self.config = config
        # Rows sharing a path share one walk of the body; groups keep the table's order.
        groups: dict[str, list[Rule]] = {}
        for rule in RULES:
            groups.setdefault(rule.where, []).append(rule)
        self.groups = tuple((_steps(where), tuple(rules)) for where, rules in groups.items())
        self.allowed = Globs(config.allowed_models)
        self.allow_any = "*" in config.allowed_models  # the default: no glob to match per request
        self.denied = Globs(config.denied_models)
        self.open = self.allow_any and not config.denied_models  # no gate at all (the default)
        self.overrides = Globs(config.models)
        names = {rule.limit for rule in RULES} | set(_OVERRIDABLE)
        self.base = Limits({n: getattr(config, n) for n in names}, {n: f"limits.{n}" for n in names})
        self._per_model: dict[str, Limits] = {}

    # -- stage 1: bytes
    def check_raw(self, raw: bytes) -> None:
        """Refuse a body nested too deep or holding too many containers, before parsing it."""
        max_depth, max_containers = self.config.max_json_depth, self.config.max_json_containers
        fast = min(max_depth, max_containers or max_depth)
        depth, containers = json_shape(raw, fast, max_containers)
        if max_containers and containers > max_containers:
            raise InvalidRequest(
                f"The JSON body holds {containers} objects and arrays, above the limit of "
                f"{max_containers} (limits.max_json_containers).", code="json_too_large")
        if depth > max_depth:
            raise InvalidRequest(
                f"The JSON body is nested {depth} levels deep, above the limit of {max_depth} "
                f"(limits.max_json_depth).", param=_deep_param(raw, depth, max_depth), code="json_too_deep")

    # -- stage 2: the parsed body
    def check_model(self, model: Any, requested: str | None = None) -> None:
        """The model gates: not allowed → 404 (its existence is not revealed), denied → 403.

        ``requested`` is the name the client sent when ``model`` is an alias's target: either
        name may be allowed, and either name denied refuses it (a deny always wins).
        """
        if not isinstance(model, str):
            return  # the translation refuses a missing or mistyped model
        names = (model,) if requested is None or requested == model else (requested, model)
        if not self.allow_any and not any(n in self.allowed for n in names):
            raise ModelNotFound(f"The model `{names[0]}` does not exist or you do not have access to it.",
                                param="model")
        if self.denied and any(n in self.denied for n in names):
            raise PermissionDenied(f"The model `{names[0]}` is not available through this proxy.",
                                   param="model", code="model_not_allowed")

    def allows(self, model: str, requested: str | None = None) -> bool:
        """Whether ``model`` (asked for as ``requested``) passes the gates (for listing models)."""
        names = (model,) if requested is None or requested == model else (requested, model)
        return (self.allow_any or any(n in self.allowed for n in names)) and not any(n in self.denied for n in names)

    def limits_for(self, model: Any, requested: str | None = None) -> Limits:
        """The limits in force for ``model``: ``[limits]`` overlaid by every matching pattern
        (of ``model`` or of ``requested``, the alias the client asked for), in file order."""
        if not self.overrides or not isinstance(model, str):
            return self.base
        key = model if requested is None or requested == model else f"{model}\x00{requested}"
        cached = self._per_model.get(key)
        if cached is None:
            cached = self._merge(model, requested)
            if len(self._per_model) >= _CACHE_SIZE:
                self._per_model.clear()
            self._per_model[key] = cached
        return cached

    def _merge(self, model: str, requested: str | None) -> Limits:
        values, sources = dict(self.base.values), dict(self.base.sources)
        matching = set(self.overrides.matching(model))
        if requested is not None and requested != model:
            matching.update(self.overrides.matching(requested))
        for i in sorted(matching):
            pattern = self.overrides.patterns[i]
            for name, value in dataclasses.asdict(self.config.models[pattern]).items():
                if value is not None:
                    values[name] = value
                    sources[name] = f'limits.models."{pattern}".{name}'
        return Limits(values, sources)

    def check(self, body: dict[str, Any], requested: str | None = None) -> Limits:
        """Refuse ``body`` if it breaks a gate or a limit; else the limits in force for it.

        ``requested``: the name the client asked for, when ``body["model"]`` is an alias's
        target (``proxy.models.resolve.resolve_model``); the gates and ``[limits.models]`` see both.
        """
        model = body.get("model")
        self.check_model(model, requested)
        limits = self.limits_for(model, requested)
        for steps, rules in self.groups:
            if body.get(steps[0]) is None:
                continue  # most rows name fields a request leaves out
            found = _select(body, steps)
            for rule in rules:
                broken = _apply(rule, found, limits)
                if broken is not None:
                    index, what = broken
                    raise _refusal(rule, _paths(body, steps)[index], limits, what)
        return limits


def _apply(rule: Rule, found: list[Any], limits: Limits) -> tuple[int, str] | None:
    """The index of the first value of ``found`` that breaks ``rule``, and how; else None."""
    limit = limits[rule.limit]
    if not limit:
        return None
    total = 0.0
    for index, value in enumerate(found):
        n = rule.measure(value)
        if n is None:
            continue
        if rule.how == "range":
            low, high = limit
            if not low <= n <= high:
                return index, f"must be between {low:g} and {high:g}, got {n:g}"
        elif rule.how == "total":
            total += n
            if total > limit:
                return index, f"brings the request to {_num(total)} {rule.unit}, above the limit of {limit}"
        elif n > limit:
            return index, f"has {_num(n)} {rule.unit}, above the limit of {limit}"
    return None


def _num(n: float) -> str:
    return "unlimited" if n == math.inf else f"{n:g}" if isinstance(n, float) and not n.is_integer() else str(int(n))


def _refusal(rule: Rule, path: tuple[str | int, ...], limits: Limits, what: str) -> InvalidRequest:
    param = path_text(path)
    return InvalidRequest(f"'{param}' {what} ({limits.sources[rule.limit]}).", param=param, code=rule.code)


def with_defaults(ollama: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Ollama's body with ``default_max_tokens`` filled in when the client set no budget.

    Returns a new dict (the translated body is not mutated); the same dict when nothing is added.
    """
    default = limits["default_max_tokens"]
    options = ollama.get("options") or {}
    if not default or "num_predict" in options:
        return ollama
    return {**ollama, "options": {**options, "num_predict": default}}
