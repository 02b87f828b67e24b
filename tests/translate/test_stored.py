"""Stored chat completions' objects and envelopes, and OpenAI's ``metadata`` rules."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import InvalidRequest
from proxy.translate.openai.stored import (
    deleted,
    list_page,
    message_objects,
    retrieved,
    to_metadata,
)


@pytest.mark.parametrize("value, expected", [
    (None, None), ({}, {}), ({"a": "b"}, {"a": "b"}), ({f"k{i}": "v" for i in range(16)}, {f"k{i}": "v" for i in range(16)}),
], ids=["absent", "empty", "one pair", "16 pairs is the most"])
def test_metadata_accepted(value: Any, expected: Any) -> None:
    assert to_metadata(value) == expected


@pytest.mark.parametrize("value, param", [
    ("x", "metadata"), ({f"k{i}": "v" for i in range(17)}, "metadata"), ({"k" * 65: "v"}, "metadata"),
    ({"k": "v" * 513}, "metadata.k"), ({"k": None}, "metadata.k"), ({"k": "\x00"}, "metadata"),
], ids=["not an object", "17 pairs", "key of 65", "value of 513", "value null", "NUL"])
def test_metadata_refused(value: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_metadata(value)
    assert caught.value.param == param


def test_messages_get_ids_text_and_parts() -> None:
    parts = [{"type": "text", "text": "look "}, {"type": "image_url", "image_url": {"url": "data:x"}},
             {"type": "text", "text": "here"}]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": parts, "name": "ann"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]
    assert message_objects("chatcmpl-1", messages) == [
        {"id": "chatcmpl-1-0", "role": "system", "content": "Be brief.", "name": None, "content_parts": None},
        {"id": "chatcmpl-1-1", "role": "user", "content": "look here", "name": "ann", "content_parts": parts},
        {"id": "chatcmpl-1-2", "role": "assistant", "content": None, "name": None, "content_parts": None,
         "tool_calls": [{"id": "c"}]},
    ]


@pytest.mark.parametrize("n, limit, first, last, more", [
    (0, 2, None, None, False), (2, 2, "0", "1", False), (3, 2, "0", "1", True),
], ids=["empty page", "exactly a page", "one more than a page"])
def test_list_envelope(n: int, limit: int, first: str | None, last: str | None, more: bool) -> None:
    page = list_page([{"id": str(i)} for i in range(n)], limit)
    assert (page["object"], page["first_id"], page["last_id"], page["has_more"]) == ("list", first, last, more)
    assert len(page["data"]) == min(n, limit)


def test_retrieved_and_deleted_objects() -> None:
    assert retrieved({"id": "c", "object": "chat.completion"}, {"a": "b"}) == {
        "id": "c", "object": "chat.completion", "metadata": {"a": "b"}}
    assert deleted("c") == {"object": "chat.completion.deleted", "id": "c", "deleted": True}
