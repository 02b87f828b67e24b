"""``proxy/config.py``: defaults, the committed ``config.toml``, ``OLLAMA_BASE_URL``, and one
``ConfigError`` naming the dotted key for every kind of bad file (also through the real CLI)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from proxy.config import Config, ConfigError, Timeouts, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG_TOML = ROOT / "config.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = Config()
    assert (config.server.host, config.server.port, config.server.workers) == ("127.0.0.1", 8080, 1)
    assert config.upstream.base_url == "http://localhost:11434"
    assert config.upstream.timeouts == Timeouts(connect=5.0, first_byte=300.0, idle=60.0)
    assert config.upstream.max_connections == 0
    assert config.upstream.max_line_bytes == 16 * 1024 * 1024
    assert config.limits.max_body_bytes == 20 * 1024 * 1024
    assert config.response.keys == "snake"
    assert config.log.level == "info"


def test_no_file_is_the_defaults() -> None:
    assert load_config(None, env={}) == Config()


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), env={}) == Config()


def test_the_committed_config_toml_is_the_defaults() -> None:
    assert load_config(CONFIG_TOML, env={}) == Config()


def _keys(value: Any, prefix: str = "") -> set[str]:
    if dataclasses.is_dataclass(value):
        return {k for f in dataclasses.fields(value) for k in _keys(getattr(value, f.name), f"{prefix}{f.name}.")}
    if isinstance(value, dict):
        return {k for name, v in value.items() for k in _keys(v, f"{prefix}{name}.")}
    return {prefix.rstrip(".")}


def test_the_committed_config_toml_spells_out_every_key() -> None:
    with open(CONFIG_TOML, "rb") as fh:
        documented = tomllib.load(fh)
    assert _keys(documented) == _keys(Config())


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().server.port = 1  # type: ignore[misc]


ACCEPTED = [
    ("a partial file keeps the other defaults", "[server]\nport = 9000\n",
     lambda c: c.server.port == 9000 and c.server.host == "127.0.0.1" and c.upstream == Config().upstream),
    ("an integer where a float is expected becomes a float", "[upstream.timeouts]\nidle = 5\n",
     lambda c: c.upstream.timeouts.idle == 5.0 and type(c.upstream.timeouts.idle) is float),
    ("camel keys", '[response]\nkeys = "camel"\n', lambda c: c.response.keys == "camel"),
    ("port 0 picks a free port", "[server]\nport = 0\n", lambda c: c.server.port == 0),
    ("base_url from the file", '[upstream]\nbase_url = "https://ollama.internal:443"\n',
     lambda c: c.upstream.base_url == "https://ollama.internal:443"),
]  # fmt: skip


@pytest.mark.parametrize("text, check", [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_accepted(tmp_path: Path, text: str, check: Any) -> None:
    assert check(load_config(write(tmp_path, text), env={}))


ENV = [
    ("OLLAMA_BASE_URL overrides the default", None, {"OLLAMA_BASE_URL": "http://gpu-box:11434"},
     "http://gpu-box:11434"),
    ("OLLAMA_BASE_URL overrides the file", '[upstream]\nbase_url = "http://file:11434"\n',
     {"OLLAMA_BASE_URL": "http://gpu-box:11434"}, "http://gpu-box:11434"),
    ("an empty OLLAMA_BASE_URL is ignored", '[upstream]\nbase_url = "http://file:11434"\n',
     {"OLLAMA_BASE_URL": ""}, "http://file:11434"),
    ("no OLLAMA_BASE_URL keeps the file", '[upstream]\nbase_url = "http://file:11434"\n', {}, "http://file:11434"),
]  # fmt: skip


@pytest.mark.parametrize("text, env, url", [r[1:] for r in ENV], ids=[r[0] for r in ENV])
def test_ollama_base_url(tmp_path: Path, text: str | None, env: dict[str, str], url: str) -> None:
    path = write(tmp_path, text) if text is not None else None
    config = load_config(path, env=env)
    assert config.upstream.base_url == url
    without_env = load_config(path, env={})
    same_url = dataclasses.replace(without_env.upstream, base_url=url)
    assert config == dataclasses.replace(without_env, upstream=same_url)  # nothing else changes


def test_ollama_base_url_is_read_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://from-env:11434")
    assert load_config(None).upstream.base_url == "http://from-env:11434"


def test_a_bad_ollama_base_url_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^upstream\.base_url \(or OLLAMA_BASE_URL\): .*'gpu-box:11434'"):
        load_config(None, env={"OLLAMA_BASE_URL": "gpu-box:11434"})


REFUSED = [
    ("an unknown top-level key", "bogus = 1\n", "bogus"),
    ("an unknown section", "[telemetry]\nenabled = true\n", "telemetry"),
    ("an unknown key in a section", '[server]\nhots = "0.0.0.0"\n', "server.hots"),
    ("an unknown nested key", "[upstream.timeouts]\nread = 1.0\n", "upstream.timeouts.read"),
    ("a string for an integer", '[server]\nport = "8080"\n', "server.port"),
    ("a boolean for an integer", "[server]\nport = true\n", "server.port"),
    ("a float for an integer", "[server]\nworkers = 2.0\n", "server.workers"),
    ("a table for an integer", "[server]\nport = { a = 1 }\n", "server.port"),
    ("a string for a float", '[upstream.timeouts]\nidle = "60s"\n', "upstream.timeouts.idle"),
    ("a boolean for a float", "[upstream.timeouts]\nconnect = true\n", "upstream.timeouts.connect"),
    ("an integer for a string", "[server]\nhost = 8080\n", "server.host"),
    ("a scalar for a section", "server = 1\n", "server"),
    ("a scalar for a nested section", "[upstream]\ntimeouts = 5\n", "upstream.timeouts"),
    ("a port above 65535", "[server]\nport = 70000\n", "server.port"),
    ("a negative port", "[server]\nport = -1\n", "server.port"),
    ("zero workers", "[server]\nworkers = 0\n", "server.workers"),
    ("a zero idle time-out", "[upstream.timeouts]\nidle = 0\n", "upstream.timeouts.idle"),
    ("a negative connect time-out", "[upstream.timeouts]\nconnect = -1.5\n", "upstream.timeouts.connect"),
    ("negative max_connections", "[upstream]\nmax_connections = -1\n", "upstream.max_connections"),
    ("zero max_line_bytes", "[upstream]\nmax_line_bytes = 0\n", "upstream.max_line_bytes"),
    ("zero max_body_bytes", "[limits]\nmax_body_bytes = 0\n", "limits.max_body_bytes"),
    ("a key style outside the Literal", '[response]\nkeys = "kebab"\n', "response.keys"),
    ("a log level outside the Literal", '[log]\nlevel = "verbose"\n', "log.level"),
    ("log levels are lower case", '[log]\nlevel = "INFO"\n', "log.level"),
    ("a base_url without scheme", '[upstream]\nbase_url = "localhost:11434"\n', "upstream.base_url"),
]  # fmt: skip


@pytest.mark.parametrize("text, key", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    message = str(info.value)
    assert message.startswith((f"{key}:", f"{key} (")), message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text", ["[server\nport = 1\n", "[server]\nport = 1\nport = 2\n", "[server]\nport = \n"],
    ids=["an unclosed table header", "a duplicate key", "a missing value"],
)
def test_bad_toml_names_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in str(info.value) and "TOML" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "text, key",
    [('[server]\nport = "eighty"\n', "server.port"), ("[upstream.timeouts]\nread = 1.0\n", "upstream.timeouts.read")],
    ids=["wrong type", "unknown nested key"],
)
def test_the_cli_exits_non_zero_with_one_line_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_BASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "--config", str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert key in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
