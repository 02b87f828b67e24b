"""The pool's configuration: ``[[upstreams]]``, ``OLLAMA_BASE_URL`` lists, names, and
``--check-config`` printing the pool."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import ConfigError, UpstreamServer, load_config, pool_servers

ROOT = Path(__file__).resolve().parents[2]

POOL = """
[[upstreams]]
name = "gpu-a"
base_url = "http://10.0.0.5:11434"
weight = 2
max_concurrent = 8
models = ["llama3*"]

[[upstreams]]
base_url = "http://10.0.0.6:11434/"

[routing]
sticky = true
probe_interval = 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_upstreams_tables_are_the_pool(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, POOL), env={})
    assert pool_servers(config) == (
        UpstreamServer("gpu-a", "http://10.0.0.5:11434", 2, 8, ("llama3*",)),
        UpstreamServer("10.0.0.6:11434", "http://10.0.0.6:11434/"),
    )
    assert config.routing.sticky and config.routing.probe_interval == 0.5


def test_a_single_base_url_is_a_pool_of_one() -> None:
    config = load_config(None, env={"OLLAMA_BASE_URL": "http://gpu:11434"})
    assert pool_servers(config) == (UpstreamServer("gpu:11434", "http://gpu:11434"),)
    assert pool_servers(load_config(None, env={})) == (UpstreamServer("localhost:11434", "http://localhost:11434"),)


def test_a_comma_separated_ollama_base_url_is_a_pool_and_replaces_the_files(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, POOL), env={"OLLAMA_BASE_URL": "http://a:1, http://b:2,"})
    assert [(s.name, s.base_url) for s in pool_servers(config)] == [("a:1", "http://a:1"), ("b:2", "http://b:2")]
    assert config.upstream.base_url == "http://a:1"


def test_credentials_never_make_it_into_a_name() -> None:
    config = load_config(None, env={"OLLAMA_BASE_URL": "http://user:secret@gpu:11434,http://b:2"})
    assert pool_servers(config)[0].name == "gpu:11434"


@pytest.mark.parametrize(("text", "env", "key"), [
    ('[[upstreams]]\nname = "a"\n', {}, "upstreams[0].base_url"),
    ('[[upstreams]]\nbase_url = "ftp://x"\n', {}, "upstreams[0].base_url"),
    ('[[upstreams]]\nbase_url = "http://x:1"\nweight = 0\n', {}, "upstreams[0].weight"),
    ('[[upstreams]]\nbase_url = "http://x:1"\nname = "a b"\n', {}, "upstreams[0].name"),
    ('[[upstreams]]\nbase_url = "http://x:1"\nport = 1\n', {}, "upstreams[0].port"),
    ('[[upstreams]]\nname = "a"\nbase_url = "http://x:1"\n[[upstreams]]\nname = "a"\nbase_url = "http://y:1"\n',
     {}, "upstreams[1].name"),
    ('[[upstreams]]\nbase_url = "http://x:1"\n[[upstreams]]\nbase_url = "http://x:1/"\n', {}, "upstreams[1].name"),
    ('[upstream]\nbase_url = "http://x:1"\n[[upstreams]]\nbase_url = "http://y:1"\n', {}, "upstream.base_url"),
    ('[routing]\nmax_failovers = 11\n', {}, "routing.max_failovers"),
    ("", {"OLLAMA_BASE_URL": "http://a:1,nope"}, "upstreams[1].base_url"),
], ids=["no base_url", "not http", "weight 0", "name unsafe for a header", "unknown key", "duplicate names",
        "one server twice", "both [upstream] base_url and [[upstreams]]", "too many failovers",
        "a bad URL in the list"])
def test_bad_pools_name_the_key(tmp_path: Path, text: str, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ":"):
        load_config(write(tmp_path, text), env=env)


def test_check_config_prints_the_pool(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "proxy", "--check-config", "--config", str(write(tmp_path, POOL))],
                          capture_output=True, text=True, timeout=60, check=False, cwd=ROOT, env={"PATH": ""})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "# The pool: 2 Ollama servers" in out
    assert '[[upstreams]]\nname = "gpu-a"\nbase_url = "http://10.0.0.5:11434"\nweight = 2\nmax_concurrent = 8\n' \
           'models = ["llama3*"]\n' in out
    assert 'name = "10.0.0.6:11434"' in out and "[routing]\nsticky = true\n" in out
