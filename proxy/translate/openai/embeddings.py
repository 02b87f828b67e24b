"""OpenAI embeddings ⇄ Ollama ``/api/embed``, as pure functions.

``from_openai`` checks the client's body and builds Ollama's; ``to_embedding_list`` turns
Ollama's vectors into OpenAI's list, as floats or, for ``encoding_format="base64"`` (the
official Python SDK's default), as base64 of little-endian float32, the bytes OpenAI sends and
the SDK decodes with ``np.frombuffer(..., dtype="float32")``.
"""

from __future__ import annotations

import base64
import sys
from array import array
from dataclasses import dataclass
from typing import Any, Literal

from ...errors import InvalidRequest, UnsupportedParameter, UpstreamError
from ..fields import integer, keep_alive, log_unknown, model_name, type_name

__all__ = ["EmbedRequest", "floats_to_base64", "from_openai", "to_embedding_list"]


# Parameters OpenAI defines, in the order of its reference.
MAPPED = ("input", "model", "dimensions", "encoding_format")
NO_EFFECT = ("user",)  # caller bookkeeping
# Ollama-native extras (e.g. the SDK's ``extra_body``), passed on as they are.
OLLAMA_EXTRAS = ("truncate", "keep_alive", "options")

_KNOWN = frozenset((*MAPPED, *NO_EFFECT, *OLLAMA_EXTRAS))
_BIG_ENDIAN = sys.byteorder == "big"

Encoding = Literal["float", "base64"]


@dataclass(frozen=True)
class EmbedRequest:
    """A translated request: Ollama's body plus what the response needs."""

    body: dict[str, Any]
    model: str
    encoding: Encoding
    count: int


def from_openai(body: dict[str, Any]) -> EmbedRequest:
    """Translate an OpenAI embeddings request into Ollama's ``/api/embed`` body."""
    log_unknown(body, _KNOWN)
    model = model_name(body)
    texts = to_input(body.get("input"))
    encoding = to_encoding(body.get("encoding_format"))
    ollama: dict[str, Any] = {"model": model, "input": texts}
    dimensions = integer(body, "dimensions")
    if dimensions is not None:
        if dimensions < 1:
            raise InvalidRequest("'dimensions' must be at least 1.", param="dimensions")
        ollama["dimensions"] = dimensions
    truncate = body.get("truncate")
    if truncate is not None:
        if not isinstance(truncate, bool):
            raise InvalidRequest("'truncate' must be a boolean.", param="truncate")
        ollama["truncate"] = truncate
    alive = keep_alive(body)
    if alive is not None:
        ollama["keep_alive"] = alive
    options = body.get("options")
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidRequest("'options' must be an object.", param="options")
        ollama["options"] = options
    return EmbedRequest(ollama, model, encoding, len(texts))


def to_input(value: Any) -> list[str]:
    """``input`` as Ollama's list of strings; token-id arrays cannot be sent to Ollama."""
    if value is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and value:
        if any(isinstance(v, (int, list)) and not isinstance(v, bool) for v in value):
            # OpenAI accepts token ids, but Ollama's /api/embed takes only text (EmbedHandler).
            # LangChain's OpenAIEmbeddings sends token ids by default (it splits with tiktoken).
            raise UnsupportedParameter(
                "'input' as token ids is not supported by Ollama; send strings. (LangChain's "
                "OpenAIEmbeddings sends token ids unless created with check_embedding_ctx_length=False.)",
                param="input",
            )
        if not all(isinstance(v, str) for v in value):
            raise InvalidRequest("'input' must be a string or an array of strings.", param="input")
        texts = list(value)
    elif isinstance(value, list):
        raise InvalidRequest("'input' must not be an empty array.", param="input")
    else:
        raise InvalidRequest(
            f"'input' must be a string or an array of strings, got {type_name(value)}.",
            param="input",
        )
    # OpenAI refuses empty strings; Ollama would silently return no vector for "" (EmbedHandler).
    for i, text in enumerate(texts):
        if not text:
            param = "input" if isinstance(value, str) else f"input[{i}]"
            raise InvalidRequest("'input' must not contain empty strings.", param=param)
    return texts


def to_encoding(value: Any) -> Encoding:
    if value is None or value == "float":
        return "float"
    if value == "base64":
        return "base64"
    raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")


def floats_to_base64(vector: list[float]) -> str:
    """Base64 of the vector as little-endian float32, whatever this machine's byte order."""
    try:
        packed = array("f", vector)
    except TypeError:
        raise UpstreamError("Ollama sent an embedding with a value that is not a number.") from None
    if _BIG_ENDIAN:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def to_embedding_list(ollama: Any, request: EmbedRequest) -> dict[str, Any]:
    """Ollama's ``/api/embed`` answer → OpenAI's embedding list, one entry per input, in order."""
    vectors = ollama.get("embeddings") if isinstance(ollama, dict) else None
    if not isinstance(vectors, list) or len(vectors) != request.count:
        raise UpstreamError("Ollama sent a different number of embeddings than inputs.")
    data = []
    for index, vector in enumerate(vectors):
        if not isinstance(vector, list):
            raise UpstreamError("Ollama sent an embedding that is not an array.")
        embedding: list[float] | str = (
            floats_to_base64(vector) if request.encoding == "base64" else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    # Ollama counts the tokens it embedded; an embedding has no completion tokens.
    tokens = int(ollama.get("prompt_eval_count") or 0)
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
