"""Ollama's own knobs in a request body: ``options.*`` and ``keep_alive``, as pure checks.

A client reaches Ollama's runner settings through ``options`` (the OpenAI SDK's ``extra_body``,
or the native pass-through). On a shared server some of them are not one client's to choose:
``num_ctx`` sizes the KV cache (10,000,000 would exhaust memory), ``num_gpu``, ``num_thread``,
``num_batch`` or ``use_mmap`` reload the model for everyone, and ``keep_alive: -1`` pins a model
in memory forever. ``check_extras`` holds the body Ollama will get (after translation) to the
limits in force for its model, all declared in ``[limits]`` with per-model overrides:

* ``allowed_options``: the only ``options`` keys a client may send (400 naming any other);
  a ``null`` option is refused too, because Ollama skips nulls, which would let
  ``"num_predict": null`` slip past the ``max_tokens`` cap and the default budget;
* ``max_num_ctx``: the largest ``num_ctx``; 0 means the model's own context length
  (``/api/show``, passed in as ``context_length``), or Ollama's default when that is unknown;
* ``max_keep_alive``: the longest ``keep_alive`` in seconds, Go duration strings included;
  a negative one (Ollama: forever) is refused.
"""

from __future__ import annotations

import math
from typing import Any

from ..durations import parse_duration
from ..errors import InvalidRequest
from .limits import Limits

__all__ = ["OLLAMA_DEFAULT_NUM_CTX", "check_extras", "needs_context_length", "parse_duration"]

# Ollama's default context size (envconfig OLLAMA_CONTEXT_LENGTH): a client asking no more
# than this asks for nothing the server would not do anyway.
OLLAMA_DEFAULT_NUM_CTX = 4096

def needs_context_length(body: dict[str, Any], limits: Limits) -> bool:
    """Whether checking ``num_ctx`` needs the model's context length (an ``/api/show`` look-up)."""
    options = body.get("options")
    if not isinstance(options, dict):
        return False
    num_ctx = options.get("num_ctx")
    if not isinstance(num_ctx, (int, float)) or isinstance(num_ctx, bool) or limits["max_num_ctx"]:
        return False
    return num_ctx > OLLAMA_DEFAULT_NUM_CTX


def check_extras(body: dict[str, Any], limits: Limits, context_length: int | None) -> None:
    """Refuse Ollama extras in ``body`` (Ollama's own request) that ``limits`` do not allow."""
    options = body.get("options")
    if isinstance(options, dict) and options:
        allowed = limits["allowed_options"]
        for key, value in options.items():
            param = f"options.{key}"
            if key not in allowed:
                raise InvalidRequest(
                    f"'{param}' may not be set through this proxy "
                    f"(not in {limits.sources['allowed_options']}).", param=param, code="option_not_allowed")
            if value is None:
                raise InvalidRequest(f"'{param}' must not be null.", param=param, code="invalid_value")
        if "num_ctx" in options:
            _check_num_ctx(options["num_ctx"], limits, context_length)
    if "keep_alive" in body:
        _check_keep_alive(body["keep_alive"], limits)


def _check_num_ctx(value: Any, limits: Limits, context_length: int | None) -> None:
    if not _is_number(value) or value < 1 or value != int(value):
        raise InvalidRequest("'options.num_ctx' must be a positive integer.", param="options.num_ctx")
    cap, source = _num_ctx_cap(limits, context_length)
    if value > cap:
        raise InvalidRequest(f"'options.num_ctx' is {int(value)}, above the limit of {cap} ({source}).",
                             param="options.num_ctx", code="integer_above_max_value")


def _num_ctx_cap(limits: Limits, context_length: int | None) -> tuple[int, str]:
    """The largest ``num_ctx`` allowed, and where that limit comes from (for the message)."""
    cap: int = limits["max_num_ctx"]
    if context_length and (not cap or context_length < cap):
        return context_length, "the model's context length"
    if cap:
        return cap, limits.sources["max_num_ctx"]
    # Default deny, as nginx and Envoy do: what cannot be checked is held to what Ollama does anyway.
    return OLLAMA_DEFAULT_NUM_CTX, (f"Ollama's default, as the model's context length is unknown; "
                                    f"{limits.sources['max_num_ctx']} sets a cap")


def _check_keep_alive(value: Any, limits: Limits) -> None:
    seconds = parse_duration(value)
    if seconds is None:
        raise InvalidRequest("'keep_alive' must be a duration (\"5m\", \"1h\") or seconds.", param="keep_alive")
    cap = limits["max_keep_alive"]
    if seconds > cap:
        what = "forever" if seconds == math.inf else f"{seconds:g} s"
        raise InvalidRequest(f"'keep_alive' asks to keep the model loaded {what}, above the limit of {cap:g} s "
                             f"({limits.sources['max_keep_alive']}).", param="keep_alive",
                             code="integer_above_max_value")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
