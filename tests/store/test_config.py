"""``[store]`` settings: defaults, the SQLite path beside the config file, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import Config, ConfigError, load_config


def test_off_by_default_with_an_embedded_url() -> None:
    store = Config().store
    assert (store.enabled, store.url, store.chat_completions, store.responses) == (
        False, "sqlite:///proxy.db", "on_request", "on_request")


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///proxy.db", "sqlite:///{dir}/proxy.db"),
    ("sqlite:///data/p.db", "sqlite:///{dir}/data/p.db"),
    ("sqlite:////var/lib/p.db", "sqlite:////var/lib/p.db"),
    ("sqlite://", "sqlite://"),
    ("postgresql://u@db/proxy", "postgresql://u@db/proxy"),
], ids=["relative: beside the config file", "relative subdirectory", "absolute: four slashes", "memory",
        "postgresql untouched"])
def test_relative_sqlite_paths_are_beside_the_config_file(tmp_path: Path, url: str, expected: str) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(f'[store]\nenabled = true\nurl = "{url}"\n')
    assert load_config(path, env={}).store.url == expected.format(dir=tmp_path.resolve())


def test_an_unused_url_is_left_as_written(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text('[store]\nurl = "sqlite:///proxy.db"\n')
    assert load_config(path, env={}).store.url == "sqlite:///proxy.db"


@pytest.mark.parametrize("toml, key", [
    ('url = "mysql://x"', "store.url"), ("flush_interval = 0", "store.flush_interval"),
    ('chat_completions = "sometimes"', "store.chat_completions"), ('responses = "yes"', "store.responses"),
    ("retention_days = -1", "store.retention_days"), ("max_pending = 0", "store.max_pending"),
    ("pool_size = 0", "store.pool_size"), ("nope = 1", "store.nope"),
])
def test_bad_values_name_their_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(f"[store]\n{toml}\n")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path, env={})
