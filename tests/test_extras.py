"""``proxy/models/options.py``: Ollama's own knobs (``options.*``, ``num_ctx``, ``keep_alive``) held to
the ``[limits]`` allow-list, table-driven and without a network."""

from __future__ import annotations

import math
from typing import Any

import pytest

from proxy.config import LimitsConfig, ModelLimits
from proxy.errors import InvalidRequest
from proxy.models.limits import Validator
from proxy.models.options import check_extras, needs_context_length, parse_duration

DURATIONS = [
    ("seconds as a number", 300, 300.0),
    ("fractional seconds", 1.5, 1.5),
    ("zero unloads at once", 0, 0.0),
    ("the string zero", "0", 0.0),
    ("minutes", "5m", 300.0),
    ("hours and minutes", "1h30m", 5400.0),
    ("milliseconds", "250ms", 0.25),
    ("a fraction of an hour", "1.5h", 5400.0),
    ("a negative number is forever", -1, math.inf),
    ("a negative duration is forever", "-1m", math.inf),
    ("a bare number string is refused, as by Go", "300", None),
    ("an unknown unit", "5d", None),
    ("garbage", "soon", None),
    ("a boolean", True, None),
    ("an array", [1], None),
]  # fmt: skip


@pytest.mark.parametrize("value, seconds", [r[1:] for r in DURATIONS], ids=[r[0] for r in DURATIONS])
def test_parse_duration(value: Any, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


def limits(model: str = "llama3.2", **overrides: Any) -> Any:
    models = overrides.pop("models", {})
    config = LimitsConfig(**overrides, models={k: ModelLimits(**v) for k, v in models.items()})
    return Validator(config).limits_for(model)


def opts(**options: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "options": options}


# name, body, limits, context length, param refused (None: accepted)
CASES = [
    ("sampling options pass", opts(temperature=0.5, top_k=40, seed=1, stop=["x"]), {}, None, None),
    ("no options at all", {"model": "llama3.2"}, {}, None, None),
    ("num_gpu is a hardware knob", opts(num_gpu=99), {}, None, "options.num_gpu"),
    ("num_thread", opts(num_thread=64), {}, None, "options.num_thread"),
    ("num_batch", opts(num_batch=4096), {}, None, "options.num_batch"),
    ("use_mmap", opts(use_mmap=False), {}, None, "options.use_mmap"),
    ("an unknown option", opts(whatever=1), {}, None, "options.whatever"),
    ("a null budget would bypass max_tokens", opts(num_predict=None), {}, None, "options.num_predict"),
    ("any null option", opts(temperature=None), {}, None, "options.temperature"),
    ("an operator may allow a hardware knob", opts(num_thread=4), {"allowed_options": ("num_thread",)}, None, None),
    ("per model, only where it matches", opts(num_thread=4),
     {"models": {"qwen*": {"allowed_options": ("num_thread",)}}}, None, "options.num_thread"),
    ("num_ctx up to the model's context length", opts(num_ctx=131072), {}, 131072, None),
    ("num_ctx beyond the model's context length", opts(num_ctx=131073), {}, 131072, "options.num_ctx"),
    ("num_ctx of ten million", opts(num_ctx=10_000_000), {}, 131072, "options.num_ctx"),
    ("unknown length: Ollama's default is the most", opts(num_ctx=4097), {}, None, "options.num_ctx"),
    ("unknown length: up to the default passes", opts(num_ctx=4096), {}, None, None),
    ("max_num_ctx caps below the model", opts(num_ctx=16384), {"max_num_ctx": 8192}, 131072, "options.num_ctx"),
    ("max_num_ctx applies when the length is unknown", opts(num_ctx=8192), {"max_num_ctx": 8192}, None, None),
    ("a per-model max_num_ctx", opts(num_ctx=8192), {"models": {"llama*": {"max_num_ctx": 2048}}}, None,
     "options.num_ctx"),
    ("num_ctx must be a positive integer", opts(num_ctx=0), {}, None, "options.num_ctx"),
    ("num_ctx as a fraction", opts(num_ctx=1.5), {}, None, "options.num_ctx"),
    ("keep_alive of ten minutes", {"model": "m", "keep_alive": "10m"}, {}, None, None),
    ("keep_alive 0 unloads", {"model": "m", "keep_alive": 0}, {}, None, None),
    ("keep_alive forever (-1)", {"model": "m", "keep_alive": -1}, {}, None, "keep_alive"),
    ("keep_alive forever (a negative string)", {"model": "m", "keep_alive": "-1m"}, {}, None, "keep_alive"),
    ("keep_alive above 30 minutes", {"model": "m", "keep_alive": "31m"}, {}, None, "keep_alive"),
    ("keep_alive in seconds above the cap", {"model": "m", "keep_alive": 1801}, {}, None, "keep_alive"),
    ("keep_alive with a higher cap", {"model": "m", "keep_alive": "2h"}, {"max_keep_alive": 7200}, None, None),
    ("keep_alive that Ollama cannot read", {"model": "m", "keep_alive": "soon"}, {}, None, "keep_alive"),
]  # fmt: skip


@pytest.mark.parametrize("body, overrides, context, param", [r[1:] for r in CASES], ids=[r[0] for r in CASES])
def test_check_extras(body: dict[str, Any], overrides: dict[str, Any], context: int | None,
                      param: str | None) -> None:
    in_force = limits(**overrides)
    if param is None:
        check_extras(body, in_force, context)
        return
    with pytest.raises(InvalidRequest) as info:
        check_extras(body, in_force, context)
    assert (info.value.status, info.value.param) == (400, param)


def test_a_refusal_names_the_config_key() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_extras(opts(num_gpu=1), limits(models={"llama*": {"allowed_options": ("seed",)}}), None)
    assert 'limits.models."llama*".allowed_options' in info.value.message
    assert info.value.code == "option_not_allowed"


@pytest.mark.parametrize(
    "body, overrides, wanted",
    [
        (opts(num_ctx=8192), {}, True),
        (opts(num_ctx=4096), {}, False),  # nothing Ollama would not do anyway: no look-up
        (opts(num_ctx=8192), {"max_num_ctx": 16384}, False),  # the operator's number decides
        (opts(temperature=1), {}, False),
    ],
    ids=["a large num_ctx", "the default size", "a fixed cap", "no num_ctx"],
)
def test_the_model_is_looked_up_only_when_needed(body: dict[str, Any], overrides: dict[str, Any],
                                                 wanted: bool) -> None:
    assert needs_context_length(body, limits(**overrides)) is wanted
