"""proxy/models: alias and default resolution as tables, without a network (issue 19)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from proxy.config import Config, ConfigError, LimitsConfig, ModelLimits, build
from proxy.gates.resolve import ModelTable
from proxy.models.limits import Validator


def config(text: str) -> Config:
    return build(Config, tomllib.loads(text), "")


TABLE = '''
[models.aliases]
"gpt-5*" = "llama3.2"
"gpt-5-codex" = "qwen3:8b"
"gpt-*" = "never-reached-for-gpt-5"
"claude-*" = "qwen3:8b"
"Fast" = "llama3.2:1b"
"qwen*" = "qwen3:8b"
'''


@pytest.mark.parametrize(("asked", "served", "pattern"), [
    ("gpt-5-mini", "llama3.2", "gpt-5*"),  # a glob
    ("gpt-5-codex", "qwen3:8b", "gpt-5-codex"),  # exact wins over a glob written before it
    ("GPT-5-CODEX:latest", "qwen3:8b", "gpt-5-codex"),  # exact names match as Ollama matches names
    ("gpt-4o", "never-reached-for-gpt-5", "gpt-*"),  # the first glob in file order that matches
    ("gpt-5", "llama3.2", "gpt-5*"),  # "gpt-5*" comes before "gpt-*"
    ("claude-sonnet-4-5-20250929", "qwen3:8b", "claude-*"),
    ("fast", "llama3.2:1b", "Fast"),
    ("qwen3:8b", "qwen3:8b", "qwen*"),  # a target its own glob matches: served as it is
    ("llama3.2", "llama3.2", None),  # no alias: Ollama's own name
])
def test_resolution(asked: str, served: str, pattern: str | None) -> None:
    resolved = ModelTable(config(TABLE).models).resolve(asked)
    assert (resolved.requested, resolved.served) == (asked, served)
    assert (resolved.alias.pattern if resolved.alias else None) == pattern


def test_no_alias_of_an_alias() -> None:
    # The target is never resolved again: "fast" → "gpt-5-mini" would be a chain, refused at start.
    with pytest.raises(ConfigError, match=r'models.aliases."fast": its target .* is itself an alias '
                                          r'\(models.aliases."gpt-5-mini"\)'):
        config('[models.aliases]\n"gpt-5-mini" = "llama3.2"\n"fast" = "gpt-5-mini"\n')
    # A target that only a glob matches is Ollama's model, not resolved again.
    resolved = ModelTable(config('[models.aliases]\n"gpt-*" = "llama3.2"\n"fast" = "gpt-oss"\n').models)
    assert resolved.resolve("fast").served == "gpt-oss"


@pytest.mark.parametrize(("text", "error"), [
    ('[models.aliases]\n"a" = "b\\u0000"\n', "models.aliases: must be a table of model names"),
    ('[models.aliases]\n"a\\u0000" = "b"\n', "models.aliases: must be a table of model names"),
    ('[models.aliases]\n"a" = "llama*"\n', "a target is one model, not a glob"),
    ('[models.aliases]\n"a" = ""\n', "models.aliases: must be"),
    ('[models.defaults."*"]\noptions = {num_ctx = 0}\n', 'models.defaults."*".options: must be'),
    ('[models.defaults."*"]\nkeep_alive = "forever"\n', 'models.defaults."*".keep_alive: must be seconds'),
    ('[models.defaults."*"]\nthink = "max"\n', 'models.defaults."*".think'),
    ('[models.defaults."*"]\nsurprise = 1\n', 'models.defaults."*".surprise: unknown key'),
])
def test_bad_tables_name_their_key(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("*", r"\*").replace("(", r"\(")):
        config(text)


@pytest.mark.parametrize(("text", "error"), [
    # [limits] bounds bound the defaults too: a default beyond one names both keys.
    ('[limits]\nmax_num_ctx = 32768\n[models.defaults."*"]\noptions = {num_ctx = 65536}\n',
     'models.defaults."*".options.num_ctx: 65536 is beyond limits.max_num_ctx (32768)'),
    ('[models.defaults."*"]\nkeep_alive = "1h"\n',  # max_keep_alive is 1800 s by default
     'models.defaults."*".keep_alive: 3600.0 is beyond limits.max_keep_alive (1800)'),
    ('[models.defaults."*"]\nkeep_alive = -1\n', "keep_alive: inf is beyond limits.max_keep_alive"),
    ('[limits]\nmax_tokens = 100\n[models.defaults."*"]\nmax_tokens = 200\n',
     'models.defaults."*".max_tokens: 200 is beyond limits.max_tokens (100)'),
    ('[models.defaults."*"]\noptions = {temperature = 3.5}\n',
     'models.defaults."*".options.temperature: 3.5 is beyond limits.temperature ([0, 2])'),
    ('[limits.models."qwen*"]\nmax_num_ctx = 8192\n[models.defaults."qwen*"]\noptions = {num_ctx = 16384}\n',
     'models.defaults."qwen*".options.num_ctx: 16384 is beyond limits.models."qwen*".max_num_ctx (8192)'),
])
def test_a_default_beyond_a_limit_is_a_config_error(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("*", r"\*").replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        config(text)


DEFAULTS = '''
[models.aliases]
"gpt-5*" = "llama3.2"
[models.defaults."*"]
options = { num_ctx = 8192, temperature = 0.2 }
keep_alive = "10m"
[models.defaults."llama3*"]
options = { num_ctx = 65536 }
think = false
[models.defaults."gpt-5*"]
max_tokens = 512
system = "Answer briefly."
'''


def fill(body: dict[str, Any], asked: str, limits: dict[str, Any] | None = None,
         context_length: int | None = None, text: str = DEFAULTS) -> dict[str, Any]:
    cfg = config(text)
    resolved = ModelTable(cfg.models).resolve(asked)
    validator = Validator(LimitsConfig(**(limits or {})))
    return resolved.defaults.fill({"model": resolved.served, **body}, validator.limits_for(resolved.served, asked),
                                  context_length)


def test_every_matching_table_applies_in_file_order() -> None:
    out = fill({"messages": [{"role": "user", "content": "hi"}]}, "gpt-5-mini")
    assert out == {"model": "llama3.2", "options": {"num_ctx": 65536, "temperature": 0.2, "num_predict": 512},
                   "keep_alive": "10m", "think": False,
                   "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "hi"}]}
    # Asked by its own name, the alias's table does not apply; the globs of the served name do.
    assert fill({"messages": []}, "llama3.2") == {
        "model": "llama3.2", "messages": [], "options": {"num_ctx": 65536, "temperature": 0.2},
        "keep_alive": "10m", "think": False}
    assert fill({}, "qwen3:8b") == {"model": "qwen3:8b", "options": {"num_ctx": 8192, "temperature": 0.2},
                                    "keep_alive": "10m"}


def test_the_clients_own_values_win() -> None:
    mine = {"options": {"num_ctx": 2048, "num_predict": 5}, "keep_alive": 0, "think": True,
            "messages": [{"role": "system", "content": "mine"}]}
    out = fill(mine, "gpt-5-mini")
    assert out["options"] == {"num_ctx": 2048, "num_predict": 5, "temperature": 0.2}
    assert (out["keep_alive"], out["think"], out["messages"]) == (0, True, [{"role": "system", "content": "mine"}])
    assert mine["options"] == {"num_ctx": 2048, "num_predict": 5}  # the caller's body is not changed


def test_a_per_model_limit_for_another_pattern_holds_a_default_per_request() -> None:
    limits = {"models": {"llama*": ModelLimits(max_num_ctx=16384, max_keep_alive=60.0, max_tokens=100,
                                               temperature=(0.5, 1.0))}}
    out = fill({"messages": []}, "gpt-5-mini", limits)
    assert out["options"] == {"num_ctx": 16384, "temperature": 0.5, "num_predict": 100}
    assert out["keep_alive"] == 60.0


def test_num_ctx_max_is_the_models_context_length() -> None:
    text = '[models.defaults."*"]\noptions = { num_ctx = "max" }\n'
    assert fill({}, "llama3.2", context_length=131072, text=text)["options"] == {"num_ctx": 131072}
    assert fill({}, "llama3.2", {"max_num_ctx": 32768}, 131072, text)["options"] == {"num_ctx": 32768}
    assert "options" not in fill({}, "llama3.2", context_length=None, text=text)  # unknown: Ollama's own


def test_an_embedding_gets_options_and_keep_alive_only() -> None:
    assert fill({"input": ["hi"]}, "gpt-5-mini") == {
        "model": "llama3.2", "input": ["hi"], "options": {"num_ctx": 65536, "temperature": 0.2}, "keep_alive": "10m"}


def test_a_generate_body_gets_the_system_field() -> None:
    text = '[models.defaults."*"]\nsystem = "Be terse."\n'
    assert fill({"prompt": "hi"}, "llama3.2", text=text)["system"] == "Be terse."
    assert fill({"prompt": "hi", "system": "mine"}, "llama3.2", text=text)["system"] == "mine"


def test_no_tables_cost_nothing() -> None:
    table = ModelTable(Config().models)
    resolved = table.resolve("llama3.2")
    assert (resolved.served, resolved.alias, bool(resolved.defaults)) == ("llama3.2", None, False)
    body = {"model": "llama3.2"}
    assert resolved.defaults.fill(body, Validator(LimitsConfig()).base) is body


@pytest.mark.parametrize(("gates", "asked", "outcome"), [
    # allowed_models and denied_models may name either side of an alias; a deny always wins.
    ({"allowed_models": ["llama3*"]}, "gpt-5-mini", "ok"),
    ({"allowed_models": ["gpt-5*"]}, "gpt-5-mini", "ok"),
    ({"allowed_models": ["qwen*"]}, "gpt-5-mini", "404"),
    ({"denied_models": ["gpt-5-mini"]}, "gpt-5-mini", "403"),
    ({"denied_models": ["llama3.2"]}, "gpt-5-mini", "403"),
    ({"allowed_models": ["gpt-5*"], "denied_models": ["llama3.2"]}, "gpt-5-mini", "403"),
])
def test_the_model_gates_see_both_names(gates: dict[str, Any], asked: str, outcome: str) -> None:
    from proxy.errors import ModelNotFound, PermissionDenied

    resolved = ModelTable(config(TABLE).models).resolve(asked)
    validator = Validator(LimitsConfig(**gates))
    body = {"model": resolved.served}
    if outcome == "ok":
        validator.check(body, resolved.requested)
        return
    with pytest.raises(ModelNotFound if outcome == "404" else PermissionDenied, match="gpt-5-mini"):
        validator.check(body, resolved.requested)


def test_limits_tables_of_either_name_apply_in_file_order() -> None:
    validator = Validator(LimitsConfig(models={"gpt-5*": ModelLimits(max_tools=3),
                                               "llama*": ModelLimits(max_tools=5, max_stop=2)}))
    limits = validator.limits_for("llama3.2", "gpt-5-mini")
    assert (limits["max_tools"], limits["max_stop"]) == (5, 2)
    assert limits.sources["max_tools"] == 'limits.models."llama*".max_tools'
    assert validator.limits_for("qwen3:8b", "gpt-5-mini")["max_tools"] == 3


def test_reload_swaps_the_table_whole() -> None:
    table = ModelTable(config(TABLE).models)
    table.reload(config('[models.aliases]\n"gpt-5*" = "qwen3:8b"\n').models)
    assert table.resolve("gpt-5-mini").served == "qwen3:8b"
    assert table.resolve("claude-x").alias is None


def test_check_config_shows_the_tables_as_toml() -> None:
    from proxy.checkconfig import describe

    shown = tomllib.loads(describe(config(DEFAULTS)))["models"]
    assert shown["aliases"] == {"gpt-5*": "llama3.2"}
    assert shown["defaults"]["*"] == {"options": {"num_ctx": 8192, "temperature": 0.2}, "keep_alive": "10m"}
    assert shown["defaults"]["gpt-5*"] == {"max_tokens": 512, "system": "Answer briefly."}


def test_the_usage_cli_groups_by_the_name_asked_for() -> None:
    from proxy.store.base import UsageRow
    from proxy.store.cli import summarize

    rows = [UsageRow(0, "k", "llama3.2", "chat.completions", 2, 0, 10, 20, 1.0, "gpt-5-mini"),
            UsageRow(0, "k", "llama3.2", "chat.completions", 1, 0, 5, 5, 0.5)]
    assert [(r["model"], r["requested"], r["requests"]) for r in summarize(rows, ["model", "requested"])] == [
        ("llama3.2", "gpt-5-mini", 2), ("llama3.2", "llama3.2", 1)]
    assert summarize(rows, ["model"])[0]["requests"] == 3
