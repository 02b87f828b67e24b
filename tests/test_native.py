"""``proxy/upstream/native.py``: the pass-through's one canonical path and Go's reading of JSON keys."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import InvalidRequest
from proxy.upstream.native import (
    canonical_target,
    filter_listing,
    go_object,
    hide_error_lines,
    named_models,
    parse_object,
)

TARGETS = [
    ("a plain path", "/api/chat", ("/api/chat", "")),
    ("a blob digest", "/api/blobs/sha256:0a1b", ("/api/blobs/sha256:0a1b", "")),
    ("a query kept byte for byte", "/api/tags?d=%23x&e=1", ("/api/tags", "d=%23x&e=1")),
    ("an empty query", "/api/tags?", ("/api/tags", "")),
]  # fmt: skip

REFUSED = [
    ("encoded dots", "/api/chat/%2e%2e/pull"),
    ("an encoded slash", "/api/chat%2F..%2Fpull"),
    ("double encoding", "/api/chat/%252e%252e/pull"),
    ("an escaped letter", "/api/ch%61t"),
    ("dot-dot", "/api/chat/../pull"),
    ("a dot", "/api/./chat"),
    ("a trailing slash", "/api/chat/"),
    ("an empty segment", "/api//chat"),
    ("a backslash", "/api/chat\\..\\pull"),
    ("a space", "/api/chat pull"),
    ("outside /api", "/v1/../api/chat"),
    ("a raw fragment in the query", "/api/tags?a=#b"),
    ("a broken escape in the query", "/api/tags?a=%zz"),
    ("a control character in the query", "/api/tags?a=\r\nX: y"),
]  # fmt: skip


@pytest.mark.parametrize("raw, expected", [r[1:] for r in TARGETS], ids=[r[0] for r in TARGETS])
def test_canonical_targets(raw: str, expected: tuple[str, str]) -> None:
    assert canonical_target(raw) == expected


@pytest.mark.parametrize("raw", [r[1] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_non_canonical_targets_are_400(raw: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        canonical_target(raw)
    assert (info.value.status, info.value.code) == (400, "invalid_path")


FOLDS = [
    ("lower-case keys stay", {"model": "a", "stream": True}, {"model": "a", "stream": True}),
    ("a capitalised key is the field Go fills", {"Model": "a"}, {"model": "a"}),
    ("the Kelvin sign folds to k, as in Go", {"\u212aeep_alive": 1}, {"keep_alive": 1}),
    ("the long s folds to s", {"\u017ftream": True}, {"stream": True}),
]  # fmt: skip


@pytest.mark.parametrize("obj, folded", [r[1:] for r in FOLDS], ids=[r[0] for r in FOLDS])
def test_go_object_folds_keys(obj: dict[str, Any], folded: dict[str, Any]) -> None:
    assert go_object(obj, "") == folded


@pytest.mark.parametrize("obj", [{"model": "a", "Model": "b"}, {"MODEL": "a", "model": "b"},
                                 {"keep_alive": 1, "\u212aeep_alive": -1}], ids=["Model", "MODEL", "Kelvin"])
def test_keys_that_fold_together_are_refused(obj: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as info:
        go_object(obj, "")
    assert info.value.code == "duplicate_key"


def test_messages_are_folded_and_options_are_not() -> None:
    body = parse_object(b'{"messages": [{"Role": "user"}], "options": {"Num_Ctx": 1}}')
    assert body == {"messages": [{"role": "user"}], "options": {"Num_Ctx": 1}}  # a Go map: exact keys


def test_named_models_covers_every_field_that_names_one() -> None:
    body = {"model": "a", "name": "b", "source": "c", "destination": "d", "from": "e", "other": "f"}
    assert named_models(body) == ["a", "b", "e", "c", "d"]


def test_filter_listing() -> None:
    listing = {"models": [{"name": "a:latest", "model": "a:latest"}, {"name": "b:latest"}, "junk"]}
    assert filter_listing(listing, lambda m: m.startswith("a")) == {"models": [{"name": "a:latest", "model": "a:latest"}]}


HIDE = [
    ("a stream without errors is untouched", b'{"response":"a"}\n{"response":"b"}\n', b'{"response":"a"}\n{"response":"b"}\n', []),
    ("generated text about errors is untouched", b'{"response":"\\"error\\": x"}\n', b'{"response":"\\"error\\": x"}\n', []),
    ("an error line is reworded", b'{"response":"a"}\n{"error":"CUDA error at /usr/lib/x.so"}\n',
     b'{"response":"a"}\n{"error":"generic"}\n', ["CUDA error at /usr/lib/x.so"]),
    ("a cut line is left for the next read", b'{"response":"a"}\n{"error":"CUDA', b'{"response":"a"}\n{"error":"CUDA', []),
]  # fmt: skip


@pytest.mark.parametrize("data, out, hidden", [r[1:] for r in HIDE], ids=[r[0] for r in HIDE])
def test_hide_error_lines(data: bytes, out: bytes, hidden: list[str]) -> None:
    assert hide_error_lines(data, "generic") == (out, hidden)
