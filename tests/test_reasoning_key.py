"""The server key that seals reasoning (``proxy/store/reasoning_key.py``): from config, else a key file
made once (workers racing agree on one), else a key of the process; and its config checks."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path

import pytest

from proxy.config import Config, ConfigError, ResponsesConfig, build, key_file_relative_to
from proxy.errors import ProxyError
from proxy.store.reasoning_key import ReasoningKey
from proxy.translate.openai.sealed import Sealer, derive_key

SECRET = "a-configured-secret-of-32-characters!"


async def test_the_configured_secret_is_used_and_no_file_is_made(tmp_path: Path) -> None:
    key_file = tmp_path / "reasoning.key"
    keys = ReasoningKey(ResponsesConfig(reasoning_key=SECRET, reasoning_key_file=str(key_file)))
    assert await keys.get() == derive_key(SECRET.encode())
    assert not key_file.exists()


async def test_a_key_file_is_made_once_and_shared_by_racing_processes(tmp_path: Path) -> None:
    key_file = tmp_path / "reasoning.key"
    config = ResponsesConfig(reasoning_key_file=str(key_file))
    racing = [ReasoningKey(config) for _ in range(8)]  # as eight workers starting together
    keys = await asyncio.gather(*(k.get() for k in racing))
    assert len(set(keys)) == 1
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["reasoning.key"]  # no temporary file left
    # After a restart the same file gives the same key: tokens outlive the process.
    token = Sealer(keys[0], "alice").seal("kept")
    assert Sealer(await ReasoningKey(config).get(), "alice").open(token, "p") == "kept"


async def test_an_unwritable_place_gives_a_process_key_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    keys = ReasoningKey(ResponsesConfig(reasoning_key_file=str(tmp_path / "missing-dir" / "reasoning.key")))
    first = await keys.get()
    assert first == await keys.get() and len(first) == 32
    assert "reasoning_key" in caplog.text and caplog.records[-1].levelno == logging.WARNING
    assert await ReasoningKey(ResponsesConfig(reasoning_key_file="")).get() != first


async def test_a_key_file_without_a_key_is_an_error(tmp_path: Path) -> None:
    key_file = tmp_path / "reasoning.key"
    key_file.write_text("short\n")
    with pytest.raises(ProxyError):
        await ReasoningKey(ResponsesConfig(reasoning_key_file=str(key_file))).get()


@pytest.mark.parametrize(("table", "key"), [
    ({"reasoning_key": "too short"}, "responses.reasoning_key"),
    ({"hosted_tools": "sometimes"}, "responses.hosted_tools"),
])
def test_bad_responses_settings_name_the_key(table: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build(Config, {"responses": table}, "")


def test_a_relative_key_file_lives_beside_the_config_file(tmp_path: Path) -> None:
    config = key_file_relative_to(Config(), tmp_path)
    assert config.responses.reasoning_key_file == str(tmp_path / "reasoning.key")
    absolute = build(Config, {"responses": {"reasoning_key_file": "/srv/k"}}, "")
    assert key_file_relative_to(absolute, tmp_path).responses.reasoning_key_file == "/srv/k"
