"""proxy/access/keys.py: key format, hashing, masking, where a key is read, and the table."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from proxy.access.keys import KeyTable, hash_key, mask, new_key, presented_key
from proxy.config import AuthConfig, Config, build
from proxy.errors import Unauthorized

ALICE, BOB, OLD, OFF = (new_key() for _ in range(4))


def table() -> KeyTable:
    config = build(Config, {"auth": {"keys": [
        {"id": "alice", "sha256": hash_key(ALICE), "models": ["llama3*"], "rpm": 60, "tpm": 1000,
         "model_limits": {"llama3.2*": {"tpm": 50}}},
        {"id": "bob", "sha256": hash_key(BOB), "role": "admin"},
        {"id": "old", "sha256": hash_key(OLD), "expires_at": "2020-01-01T00:00:00Z"},
        {"id": "off", "sha256": hash_key(OFF), "enabled": False},
    ]}}, "")
    return KeyTable(config.auth)


def test_a_new_key_is_sk_and_32_random_bytes_in_base64url() -> None:
    key = new_key()
    assert re.fullmatch(r"sk-[A-Za-z0-9_-]{43}", key)
    assert len(base64.urlsafe_b64decode(key[3:] + "=")) == 32
    assert new_key() != key


def test_the_hash_is_the_hex_sha256_of_the_whole_key() -> None:
    assert hash_key("sk-test") == hashlib.sha256(b"sk-test").hexdigest()


@pytest.mark.parametrize("key, shown", [
    ("sk-abcdefghijklmnopqrstuvwxyz", "sk-ab…yz"),
    ("short", "…"),
], ids=["a key shows its first five and last two characters", "a short key shows nothing"])
def test_mask(key: str, shown: str) -> None:
    assert mask(key) == shown


@pytest.mark.parametrize("headers, key", [
    ({"Authorization": "Bearer sk-1"}, "sk-1"),
    ({"Authorization": "bearer  sk-1 "}, "sk-1"),
    ({"x-api-key": "sk-2"}, "sk-2"),
    ({"api-key": "sk-3"}, "sk-3"),
    ({"Authorization": "Basic abc", "x-api-key": "sk-2"}, None),
    ({"Authorization": "Bearer "}, None),
    ({}, None),
], ids=["bearer (the SDKs)", "scheme case and spaces", "x-api-key (Anthropic style)", "api-key (Azure style)",
        "another auth scheme is not a key", "an empty bearer", "none"])
def test_presented_key(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(headers) == key


@pytest.mark.parametrize("presented, words", [
    (None, "You didn't provide an API key"),
    ("sk-" + "x" * 40, "Incorrect API key provided: sk-xx…xx."),
    (OLD, "has expired"),
    (OFF, "is disabled"),
], ids=["missing", "unknown", "expired", "disabled"])
def test_refused_keys_are_401_invalid_api_key_and_never_echoed(presented: str | None, words: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        table().authenticate(presented)
    error = caught.value
    assert (error.status, error.code, dict(error.headers)) == (401, "invalid_api_key", {"WWW-Authenticate": "Bearer"})
    assert words in error.message
    assert presented is None or presented not in error.message


def test_a_known_key_gives_its_id_role_models_and_limits() -> None:
    keys = table()
    alice = keys.authenticate(ALICE)
    assert (alice.id, alice.role, alice.limited) == ("alice", "user", True)
    assert alice.allows("llama3.1:8b") and not alice.allows("qwen3:8b")
    assert alice.limits_for("qwen3:8b").bucket == "alice" and alice.limits_for("qwen3:8b").tpm == 1000
    per_model = alice.limits_for("llama3.2")
    assert (per_model.bucket, per_model.rpm, per_model.tpm) == ("alice|llama3.2*", 60, 50)
    bob = keys.authenticate(BOB)
    assert (bob.role, bob.limited, bob.allows("anything")) == ("admin", False, True)


def test_an_expiry_in_the_future_is_honoured_until_it_passes() -> None:
    config = build(AuthConfig, {"keys": [{"id": "a", "sha256": hash_key(ALICE),
                                          "expires_at": "2030-01-01T00:00:00+00:00"}]}, "auth.")
    keys = KeyTable(config)
    assert keys.authenticate(ALICE, now=1_800_000_000).id == "a"
    with pytest.raises(Unauthorized):
        keys.authenticate(ALICE, now=1_900_000_000)
