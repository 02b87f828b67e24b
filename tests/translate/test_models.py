"""Tables for ``proxy/translate/openai/models.py``: names, owners, dates, labels, details and entries.

Entry rows compare the whole ``/v1/models`` entry, so a rule that leaks or drops a key fails.
"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import UpstreamError
from proxy.translate.keys import camelize
from proxy.translate.openai.models import (
    ShowInfo,
    canonical_name,
    display_label,
    find_tag,
    from_show,
    owned_by,
    tag_entries,
    to_model,
    to_model_list,
    unix_time,
)

DETAILS = {
    "parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
    "parameter_size": "3.2B", "quantization_level": "Q4_0",
}  # fmt: skip
TAG = {
    "name": "llama3.2:latest", "model": "llama3.2:latest",
    "modified_at": "2025-05-04T17:37:44.706015396-07:00", "size": 2019393189,
    "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72", "details": DETAILS,
}  # fmt: skip
SHOW = {
    "details": DETAILS,
    "model_info": {"general.architecture": "llama", "llama.context_length": 131072,
                   "llama.embedding_length": 3072, "general.parameter_count": 3212749888},
    "capabilities": ["completion", "tools"],
}  # fmt: skip
CREATED = 1746405464  # 2025-05-04T17:37:44-07:00
FULL_ENTRY = {
    "id": "llama3.2:latest",
    "object": "model",
    "created": CREATED,
    "owned_by": "library",
    "display_label": "llama GGUF 3.2B Q4_0",
    "context_length": 131072,
    "capabilities": ["completion", "tools"],
    "metadata": {
        "family": "llama",
        "format": "gguf",
        "parameter_size": "3.2B",
        "quantization_level": "Q4_0",
    },
}


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("llama3.2:latest", "llama3.2:latest"),
        ("library/llama3.2:latest", "llama3.2:latest"),
        ("registry.ollama.ai/library/llama3.2", "llama3.2:latest"),
        ("hf.co/org/repo:Q4_K_M", "hf.co/org/repo:q4_k_m"),
        ("hf.co/org/repo", "hf.co/org/repo:latest"),
        ("org/model:7b", "org/model:7b"),
        ("Llama3.2:Latest", "llama3.2:latest"),
        ("localhost:5000/ns/model:tag", "localhost:5000/ns/model:tag"),
    ],
    ids=[
        "tag defaults to latest",
        "full short name unchanged",
        "default namespace dropped",
        "default host and namespace dropped",
        "other host kept, case folded",
        "other host gets latest tag",
        "user namespace kept",
        "names compare case-insensitively",
        "colon in host is not the tag",
    ],
)
def test_canonical_name(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("llama3.2:latest", "library"),
        ("library/llama3.2:latest", "library"),
        ("hf.co/org/repo:Q4_K_M", "org"),
        ("jmorgan/model:7b", "jmorgan"),
    ],
    ids=["bare name is library's", "explicit library", "namespace after host", "user namespace"],
)
def test_owned_by_is_the_namespace_like_ollama(name: str, owner: str) -> None:
    assert owned_by(name) == owner


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        ("2025-05-04T17:37:44.706015396-07:00", CREATED),
        ("2025-05-05T00:37:44Z", CREATED),
        ("0001-01-01T00:00:00Z", -62135596800),
        ("yesterday", 0),
        (None, 0),
        (12, 0),
    ],
    ids=[
        "nanoseconds and offset",
        "utc zulu",
        "go zero time",
        "unreadable is 0",
        "absent is 0",
        "not a string is 0",
    ],
)
def test_unix_time(stamp: Any, seconds: int) -> None:
    assert unix_time(stamp) == seconds


@pytest.mark.parametrize(
    ("details", "label"),
    [
        (DETAILS, "llama GGUF 3.2B Q4_0"),
        (
            {
                "family": "nomic-bert",
                "format": "gguf",
                "parameter_size": "137M",
                "quantization_level": "F16",
            },
            "nomic-bert GGUF 137M F16",
        ),
        ({"family": "llama", "format": "", "parameter_size": "8B"}, "llama 8B"),
        ({}, None),
    ],
    ids=[
        "family format size quantization",
        "embedding model",
        "missing parts skipped",
        "nothing known is null",
    ],
)
def test_display_label(details: dict[str, Any], label: str | None) -> None:
    assert display_label(details) == label


@pytest.mark.parametrize(
    ("show", "info"),
    [
        (SHOW, ShowInfo(131072, ("completion", "tools"))),
        (
            {
                "model_info": {
                    "general.architecture": "qwen3",
                    "qwen3.context_length": 40960,
                    "llama.context_length": 8192,
                },
                "capabilities": ["completion", "thinking"],
            },
            ShowInfo(40960, ("completion", "thinking")),
        ),
        ({"model_info": {"llama.context_length": 8192}, "capabilities": []}, ShowInfo(None, ())),
        ({"model_info": {"general.architecture": "llama"}}, ShowInfo(None, None)),
        ({"model_info": None, "capabilities": ["completion", 3]}, ShowInfo(None, ("completion",))),
    ],
    ids=[
        "context length from the architecture's key",
        "architecture picks the key, not another family's",
        "no architecture, no context length",
        "no capabilities is unknown, not empty",
        "non-string capabilities dropped",
    ],
)
def test_from_show(show: dict[str, Any], info: ShowInfo) -> None:
    assert from_show(show) == info


def test_from_show_refuses_a_non_object() -> None:
    with pytest.raises(UpstreamError):
        from_show(["not", "an", "object"])


@pytest.mark.parametrize(
    ("tag", "show", "entry"),
    [
        (TAG, ShowInfo(131072, ("completion", "tools")), FULL_ENTRY),
        (TAG, None, {**FULL_ENTRY, "context_length": None, "capabilities": None}),
        (
            {**TAG, "capabilities": ["completion"], "details": {**DETAILS, "context_length": 4096}},
            None,
            {**FULL_ENTRY, "context_length": 4096, "capabilities": ["completion"]},
        ),
        (
            {**TAG, "capabilities": ["completion"]},
            ShowInfo(131072, ("completion", "tools")),
            FULL_ENTRY,
        ),
        (
            {"name": "hf.co/org/repo:Q4_K_M", "modified_at": "", "digest": "x"},
            None,
            {
                "id": "hf.co/org/repo:Q4_K_M",
                "object": "model",
                "created": 0,
                "owned_by": "org",
                "display_label": None,
                "context_length": None,
                "capabilities": None,
                "metadata": {
                    "family": None,
                    "format": None,
                    "parameter_size": None,
                    "quantization_level": None,
                },
            },
        ),
    ],
    ids=[
        "tags plus show make the full entry",
        "failed show: listed without its details",
        "failed show: details newer ollamas put in tags",
        "show wins over tags",
        "name when model is absent, unknowns null",
    ],
)
def test_to_model(tag: dict[str, Any], show: ShowInfo | None, entry: dict[str, Any]) -> None:
    assert to_model(tag, show) == entry


def test_camel_key_style_gives_the_front_end_names() -> None:
    entry = camelize(to_model(TAG, ShowInfo(131072, ("completion", "tools"))))
    assert set(entry) == {
        "id",
        "object",
        "created",
        "ownedBy",
        "displayLabel",
        "contextLength",
        "capabilities",
        "metadata",
    }
    assert entry["displayLabel"] == "llama GGUF 3.2B Q4_0"
    assert entry["contextLength"] == 131072
    assert entry["metadata"] == {
        "family": "llama",
        "format": "gguf",
        "parameterSize": "3.2B",
        "quantizationLevel": "Q4_0",
    }


def test_to_model_list_keeps_ollamas_order() -> None:
    other = {**TAG, "name": "qwen3:8b", "model": "qwen3:8b"}
    listing = to_model_list([(TAG, None), (other, None)])
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["llama3.2:latest", "qwen3:8b"]


@pytest.mark.parametrize(
    ("tags", "names"),
    [
        ({"models": [TAG, {"name": ""}, "junk", {"model": "x:1"}]}, ["llama3.2:latest", "x:1"]),
        ({"models": []}, []),
        ({"models": None}, []),
    ],
    ids=["entries without a name skipped", "no models", "no models as older Ollama sends them (null)"],
)
def test_tag_entries(tags: dict[str, Any], names: list[str]) -> None:
    assert [t.get("model") or t.get("name") for t in tag_entries(tags)] == names


@pytest.mark.parametrize(
    "tags", [{"error": "boom"}, [], None], ids=["no models key", "array", "null"]
)
def test_tag_entries_refuses_a_body_that_is_not_a_listing(tags: Any) -> None:
    with pytest.raises(UpstreamError):
        tag_entries(tags)


ENTRIES = [
    TAG,
    {**TAG, "name": "hf.co/org/repo:Q4_K_M", "model": "hf.co/org/repo:Q4_K_M"},
    {**TAG, "name": "Org/Model:7B", "model": "Org/Model:7B"},
]


@pytest.mark.parametrize(
    ("wanted", "found"),
    [
        ("llama3.2:latest", "llama3.2:latest"),
        ("llama3.2", "llama3.2:latest"),
        ("library/llama3.2:latest", "llama3.2:latest"),
        ("registry.ollama.ai/library/llama3.2:latest", "llama3.2:latest"),
        ("hf.co/org/repo:Q4_K_M", "hf.co/org/repo:Q4_K_M"),
        ("org/model:7b", "Org/Model:7B"),
        ("llama3.2:1b", None),
        ("hf.co/org/repo", None),
    ],
    ids=[
        "exact id",
        "tag defaults to latest",
        "default namespace",
        "fully qualified",
        "id with slash and colon",
        "case-insensitive like ollama",
        "other tag is unknown",
        "hf repo without its tag means latest, which is not there",
    ],
)
def test_find_tag(wanted: str, found: str | None) -> None:
    tag = find_tag(ENTRIES, wanted)
    assert (tag["model"] if tag else None) == found
