"""Tables for ``proxy/translate/openai/embeddings.py``: request rules, refusals, encodings, responses."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from proxy.errors import InvalidRequest, ProxyError, UnsupportedParameter, UpstreamError
from proxy.translate.openai.embeddings import (
    EmbedRequest,
    floats_to_base64,
    from_openai,
    to_embedding_list,
)

MODEL = "nomic-embed-text"


@pytest.mark.parametrize(
    ("body", "ollama"),
    [
        ({"model": MODEL, "input": "hi"}, {"model": MODEL, "input": ["hi"]}),
        ({"model": MODEL, "input": ["a", "b"]}, {"model": MODEL, "input": ["a", "b"]}),
        (
            {"model": MODEL, "input": "hi", "dimensions": 256},
            {"model": MODEL, "input": ["hi"], "dimensions": 256},
        ),
        (
            {"model": MODEL, "input": "hi", "dimensions": 256.0},
            {"model": MODEL, "input": ["hi"], "dimensions": 256},
        ),
        (
            {"model": MODEL, "input": "hi", "user": "u1", "encoding_format": "base64"},
            {"model": MODEL, "input": ["hi"]},
        ),
        (
            {
                "model": MODEL,
                "input": "hi",
                "truncate": False,
                "keep_alive": "1m",
                "options": {"num_ctx": 512},
            },
            {
                "model": MODEL,
                "input": ["hi"],
                "truncate": False,
                "keep_alive": "1m",
                "options": {"num_ctx": 512},
            },
        ),
        ({"model": MODEL, "input": "hi", "surprise": 1}, {"model": MODEL, "input": ["hi"]}),
    ],
    ids=[
        "string input becomes a one-item list",
        "list input kept in order",
        "dimensions passed on",
        "integral float dimensions accepted",
        "user and encoding are not sent upstream",
        "ollama extras passed on",
        "unknown fields ignored",
    ],
)
def test_request(body: dict[str, Any], ollama: dict[str, Any]) -> None:
    assert from_openai(body).body == ollama


@pytest.mark.parametrize(
    ("body", "encoding", "count"),
    [
        ({"model": MODEL, "input": "hi"}, "float", 1),
        ({"model": MODEL, "input": ["a", "b", "c"], "encoding_format": "float"}, "float", 3),
        ({"model": MODEL, "input": "hi", "encoding_format": "base64"}, "base64", 1),
    ],
    ids=["float by default", "float asked, count of inputs", "base64 asked"],
)
def test_request_remembers_encoding_and_count(
    body: dict[str, Any], encoding: str, count: int
) -> None:
    request = from_openai(body)
    assert (request.encoding, request.count, request.model) == (encoding, count, MODEL)


@pytest.mark.parametrize(
    ("body", "error", "param"),
    [
        ({"input": "hi"}, InvalidRequest, "model"),
        ({"model": "", "input": "hi"}, InvalidRequest, "model"),
        ({"model": MODEL}, InvalidRequest, "input"),
        ({"model": MODEL, "input": [1, 2, 3]}, UnsupportedParameter, "input"),
        ({"model": MODEL, "input": [[1, 2], [3]]}, UnsupportedParameter, "input"),
        ({"model": MODEL, "input": []}, InvalidRequest, "input"),
        ({"model": MODEL, "input": ""}, InvalidRequest, "input"),
        ({"model": MODEL, "input": ["a", ""]}, InvalidRequest, "input[1]"),
        ({"model": MODEL, "input": ["a", None]}, InvalidRequest, "input"),
        ({"model": MODEL, "input": {"text": "a"}}, InvalidRequest, "input"),
        (
            {"model": MODEL, "input": "hi", "encoding_format": "int8"},
            InvalidRequest,
            "encoding_format",
        ),
        ({"model": MODEL, "input": "hi", "dimensions": 0}, InvalidRequest, "dimensions"),
        ({"model": MODEL, "input": "hi", "dimensions": "256"}, InvalidRequest, "dimensions"),
        ({"model": MODEL, "input": "hi", "truncate": "no"}, InvalidRequest, "truncate"),
        ({"model": MODEL, "input": "hi", "options": []}, InvalidRequest, "options"),
    ],
    ids=[
        "model is required",
        "model must not be empty",
        "input is required",
        "token ids cannot reach ollama",
        "arrays of token ids cannot reach ollama",
        "empty list refused",
        "empty string refused like openai",
        "empty item named by index",
        "non-string item refused",
        "object input refused",
        "unknown encoding refused",
        "dimensions at least 1",
        "dimensions must be an integer",
        "truncate must be a boolean",
        "options must be an object",
    ],
)
def test_refusals(body: dict[str, Any], error: type[ProxyError], param: str) -> None:
    with pytest.raises(error) as info:
        from_openai(body)
    assert type(info.value) is error
    assert info.value.status == 400
    assert info.value.param == param


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ([], b""),
        ([1.0], b"\x00\x00\x80\x3f"),
        ([1.0, -2.0], b"\x00\x00\x80\x3f\x00\x00\x00\xc0"),
        ([0.1], struct.pack("<f", 0.1)),
    ],
    ids=["empty vector", "one is 3f800000 little-endian", "order kept", "rounded to float32"],
)
def test_base64_is_little_endian_float32(vector: list[float], expected: bytes) -> None:
    assert base64.b64decode(floats_to_base64(vector)) == expected


def request(encoding: str = "float", count: int = 2) -> EmbedRequest:
    return EmbedRequest({}, MODEL, encoding, count)  # type: ignore[arg-type]


OLLAMA = {"model": MODEL, "embeddings": [[0.5, -0.25], [1.0, 0.0]], "prompt_eval_count": 6}


@pytest.mark.parametrize(
    ("ollama", "req", "expected"),
    [
        (
            OLLAMA,
            request("float"),
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                    {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]},
                ],
                "model": MODEL,
                "usage": {"prompt_tokens": 6, "total_tokens": 6},
            },
        ),
        (
            OLLAMA,
            request("base64"),
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": 0,
                        "embedding": base64.b64encode(struct.pack("<2f", 0.5, -0.25)).decode(),
                    },
                    {
                        "object": "embedding",
                        "index": 1,
                        "embedding": base64.b64encode(struct.pack("<2f", 1.0, 0.0)).decode(),
                    },
                ],
                "model": MODEL,
                "usage": {"prompt_tokens": 6, "total_tokens": 6},
            },
        ),
        (
            {"model": "other", "embeddings": [[1.0]]},
            request("float", 1),
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [1.0]}],
                "model": MODEL,
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            },
        ),
    ],
    ids=[
        "floats, usage from prompt_eval_count",
        "base64 per vector",
        "requested model named, no count is 0",
    ],
)
def test_response(ollama: dict[str, Any], req: EmbedRequest, expected: dict[str, Any]) -> None:
    assert to_embedding_list(ollama, req) == expected


@pytest.mark.parametrize(
    "ollama",
    [
        {"embeddings": [[1.0]]},
        {"embeddings": None},
        {"error": "boom"},
        {"embeddings": [[1.0], "x"]},
        {"embeddings": [[1.0], ["x"]]},
    ],
    ids=[
        "fewer vectors than inputs",
        "no vectors",
        "error body",
        "vector not an array",
        "value not a number",
    ],
)
def test_response_refuses_what_ollama_should_not_send(ollama: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        to_embedding_list(ollama, request("base64"))
