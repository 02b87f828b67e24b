"""What the manifests rely on in the config: secrets merged from an ``include``d file (a mounted
Kubernetes Secret) and the graceful stop's time for streams."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.access.keys import hash_key
from proxy.config import ConfigError, load_config, merge_tables
from proxy.gates.access import ACCESS
from proxy.gates.reload import reload_access
from tests.conftest import AppFactory


@pytest.mark.parametrize(("base", "over", "merged"), [
    ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
    ({"store": {"enabled": True, "url": "x"}}, {"store": {"url": "y"}}, {"store": {"enabled": True, "url": "y"}}),
    ({"auth": {"keys": [{"id": "a"}]}}, {"auth": {"keys": [{"id": "b"}]}}, {"auth": {"keys": [{"id": "b"}]}}),
    ({"t": {"x": 1}}, {"t": 5}, {"t": 5}),
], ids=["new key", "tables merge", "arrays of tables replace", "a value replaces a table"])
def test_merge_tables(base: dict[str, object], over: dict[str, object], merged: dict[str, object]) -> None:
    assert merge_tables(base, over) == merged


def test_an_included_file_brings_the_secrets(tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "secrets.toml").write_text(
        '[store]\nurl = "postgresql://proxy:pw@db/proxy"\n[ratelimit]\nurl = "redis://redis:6379/0"\n'
        '[[auth.keys]]\nid = "alice"\nsha256 = "' + "ab" * 32 + '"\n')
    (tmp_path / "config.toml").write_text(
        'include = ["secret/secrets.toml"]\n[store]\nenabled = true\n[ratelimit]\nbackend = "redis"\n')
    config = load_config(tmp_path / "config.toml", env={})
    assert config.store.enabled and config.store.url == "postgresql://proxy:pw@db/proxy"
    assert (config.ratelimit.backend, config.ratelimit.url) == ("redis", "redis://redis:6379/0")
    assert [k.id for k in config.auth.keys] == ["alice"]
    assert config.include == ("secret/secrets.toml",)


@pytest.mark.parametrize(("main", "files", "error"), [
    ('include = ["missing.toml"]', {}, "include[0]: cannot read missing.toml"),
    ('include = "x.toml"', {}, "include: must be a list of file paths"),
    ('include = ["a.toml"]', {"a.toml": "[store\n"}, "include[0]: a.toml is not valid TOML"),
    ('include = ["a.toml"]', {"a.toml": 'include = ["b.toml"]'}, "include[0]: a.toml may not include"),
    ('include = ["a.toml"]', {"a.toml": "[store]\nbogus = 1"}, "store.bogus: unknown key"),
])
def test_a_bad_include_names_the_key(tmp_path: Path, main: str, files: dict[str, str], error: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "config.toml").write_text(main + "\n")
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]")):
        load_config(tmp_path / "config.toml", env={})


def test_shutdown_timeout_is_checked(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[server]\nshutdown_timeout = 0\n")
    with pytest.raises(ConfigError, match="server.shutdown_timeout"):
        load_config(tmp_path / "config.toml", env={})


async def test_sighup_reads_the_included_keys_again(app_factory: AppFactory, tmp_path: Path) -> None:
    """A Secret updated in place: the reload (SIGHUP's handler) takes the new keys from the include."""
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[[auth.keys]]\nid = "alice"\nsha256 = "{hash_key("sk-alice")}"\n')
    (tmp_path / "config.toml").write_text('include = ["secrets.toml"]\n')
    _, app = await app_factory({"auth": {"keys": [{"id": "alice", "sha256": hash_key("sk-alice")}]}})
    secrets.write_text(secrets.read_text() + f'[[auth.keys]]\nid = "bob"\nsha256 = "{hash_key("sk-bob")}"\n')
    assert reload_access(app, str(tmp_path / "config.toml"))
    assert sorted(k.id for k in app[ACCESS].keys.by_hash.values()) == ["alice", "bob"]
