"""The access sections of the config: a mistake stops the proxy with one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, load_config

SHA = "a" * 64

REFUSED = [
    ('[[auth.keys]]\nid = "a"\nsha256 = "ABC"\n', "auth.keys[0].sha256: must be 64 lower-case hex digits"),
    ('[[auth.keys]]\nsha256 = "' + SHA + '"\n', "auth.keys[0].id: required"),
    ('[[auth.keys]]\nid = "bad id"\nsha256 = "' + SHA + '"\n', "auth.keys[0].id: must be 1-64 letters"),
    ('[[auth.keys]]\nid = "a"\nsha256 = "' + SHA + '"\n[[auth.keys]]\nid = "a"\nsha256 = "' + "b" * 64 + '"\n',
     "auth.keys[1].id: 'a' is used by another key"),
    ('[[auth.keys]]\nid = "a"\nsha256 = "' + SHA + '"\n[[auth.keys]]\nid = "b"\nsha256 = "' + SHA + '"\n',
     "auth.keys[1].sha256: the same key is declared twice"),
    ('[[auth.keys]]\nid = "a"\nsha256 = "' + SHA + '"\nexpires_at = "2026-01-01"\n',
     "auth.keys[0].expires_at: must be an RFC 3339 time with an offset"),
    ('[[auth.keys]]\nid = "a"\nsha256 = "' + SHA + '"\nrole = "root"\n', "auth.keys[0].role: must be one of"),
    ('[[auth.keys]]\nid = "a"\nsha256 = "' + SHA + '"\n[auth.keys.model_limits."q*"]\ntpm = -1\n',
     'auth.keys[0].model_limits."q*".tpm: must be >= 0'),
    ('[ratelimit]\nbackend = "memcached"\n', "ratelimit.backend: must be one of 'memory', 'redis'"),
    ('[ratelimit]\nurl = "http://redis"\n', "ratelimit.url: must be a redis://"),
    ('[cors]\norigins = ["*"]\nallow_credentials = true\n', "cors.allow_credentials: must be false"),
    ('[cors]\norigins = ["localhost:3000"]\n', "cors.origins: must be origins like"),
]


@pytest.mark.parametrize("text, message", REFUSED, ids=[
    "a hash that is not hex", "a key without id", "an id with a space", "two keys with one id",
    "one key twice", "an expiry without time and offset", "an unknown role", "a negative per-model limit",
    "an unknown backend", "a Redis URL that is not redis://", "credentials with any origin",
    "an origin without scheme",
])
def test_a_bad_access_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(message), str(caught.value)
