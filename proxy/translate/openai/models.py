"""Ollama ``/api/tags`` + ``/api/show`` → OpenAI ``/v1/models`` entries, as pure functions.

An entry is OpenAI's ``{"id", "object": "model", "created", "owned_by"}`` plus what a front end
needs to present and choose a model: ``display_label``, ``context_length``, ``capabilities``
and ``metadata`` (family, format, parameter size, quantization level). ``/api/tags`` gives the
id, date, digest and details; ``/api/show`` adds the context length and capabilities, which the
caller caches per digest as a ``ShowInfo``. What could not be learned is ``null``, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...errors import UpstreamError

__all__ = [
    "ShowInfo",
    "canonical_name",
    "display_label",
    "find_tag",
    "from_show",
    "model_id",
    "owned_by",
    "tag_entries",
    "to_model",
    "to_model_list",
    "unix_time",
]

# Ollama's defaults for the parts of a model name (types/model/name.go).
_DEFAULT_HOST = "registry.ollama.ai"
_DEFAULT_NAMESPACE = "library"
_DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class ShowInfo:
    """What ``/api/show`` adds to a ``/api/tags`` entry; ``None`` where Ollama said nothing."""

    context_length: int | None
    capabilities: tuple[str, ...] | None


def tag_entries(tags: Any) -> list[dict[str, Any]]:
    """The model entries of an ``/api/tags`` answer; ones without a name are skipped."""
    models = tags.get("models") if isinstance(tags, dict) else None
    if isinstance(tags, dict) and "models" in tags and models is None:
        return []  # older Ollama servers with no model at all send a Go nil slice: null
    if not isinstance(models, list):
        raise UpstreamError("Ollama sent a model list without 'models'.")
    return [m for m in models if isinstance(m, dict) and model_id(m)]


def model_id(tag: dict[str, Any]) -> str:
    """The OpenAI id of an /api/tags entry."""
    # Ollama's own /v1/models prefers "model" and falls back to "name" (openai.ToListCompletion).
    value = tag.get("model") or tag.get("name") or ""
    return value if isinstance(value, str) else ""


def canonical_name(name: str) -> str:
    """The shortest form of a model name, as Ollama displays it, lower-cased for comparison.

    ``registry.ollama.ai/library/llama3.2`` and ``library/llama3.2:latest`` are both
    ``llama3.2:latest``; other hosts and namespaces stay (``hf.co/org/repo:Q4_K_M``).
    """
    name = name.strip()
    head, _, last = name.rpartition("/")
    if ":" not in last:  # "/" is illegal in a tag, so a ":" after the last "/" starts the tag
        last = f"{last}:{_DEFAULT_TAG}"
    parts = [p for p in head.split("/") if p]
    if parts[:1] and parts[0].lower() == _DEFAULT_HOST:
        parts = parts[1:]
    if len(parts) == 1 and parts[0].lower() == _DEFAULT_NAMESPACE:
        parts = []
    return "/".join([*parts, last]).lower()


def owned_by(name: str) -> str:
    """The namespace of a model name, as Ollama's ``/v1/models`` reports ``owned_by``."""
    head = name.strip().rpartition("/")[0]
    if not head:
        return _DEFAULT_NAMESPACE
    return head.rsplit("/", 1)[-1] or _DEFAULT_NAMESPACE


def unix_time(stamp: Any) -> int:
    """Ollama's RFC 3339 ``modified_at`` (nanoseconds, offset) as Unix seconds; 0 if unreadable."""
    if not isinstance(stamp, str) or not stamp:
        return 0
    try:
        return int(datetime.fromisoformat(stamp).timestamp())
    except ValueError:
        return 0


def display_label(details: dict[str, Any]) -> str | None:
    """ "llama GGUF 3.2B Q4_0": family, format, parameter size and quantization, when known."""
    parts = [
        _text(details.get("family")),
        _text(details.get("format")).upper(),
        _text(details.get("parameter_size")),
        _text(details.get("quantization_level")),
    ]
    label = " ".join(p for p in parts if p)
    return label or None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def from_show(show: Any) -> ShowInfo:
    """An ``/api/show`` answer → ``ShowInfo``.

    The context length is ``model_info["<general.architecture>.context_length"]`` (GGUF's key
    scheme); capabilities are Ollama's own list (completion, tools, vision, thinking, embedding…).
    """
    if not isinstance(show, dict):
        raise UpstreamError("Ollama sent model details that are not an object.")
    info = show.get("model_info")
    context_length = None
    if isinstance(info, dict):
        arch = info.get("general.architecture")
        if isinstance(arch, str) and arch:
            context_length = _positive_int(info.get(f"{arch}.context_length"))
    return ShowInfo(context_length, _capabilities(show.get("capabilities")))


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return int(value)


def _capabilities(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(c for c in value if isinstance(c, str))


def to_model(tag: dict[str, Any], show: ShowInfo | None) -> dict[str, Any]:
    """One ``/v1/models`` entry from an ``/api/tags`` entry and what ``/api/show`` told.

    Without ``show`` (its call failed), newer Ollamas still give capabilities and context length
    in ``/api/tags`` itself (``ListModelResponse.Capabilities``, ``ModelDetails.ContextLength``).
    """
    ident = model_id(tag)
    details = tag.get("details")
    if not isinstance(details, dict):
        details = {}
    context_length = show.context_length if show is not None else None
    if context_length is None:
        context_length = _positive_int(details.get("context_length"))
    capabilities = show.capabilities if show is not None else None
    if capabilities is None:
        capabilities = _capabilities(tag.get("capabilities"))
    return {
        "id": ident,
        "object": "model",
        "created": unix_time(tag.get("modified_at")),
        "owned_by": owned_by(ident),
        "display_label": display_label(details),
        "context_length": context_length,
        "capabilities": list(capabilities) if capabilities is not None else None,
        "metadata": {
            "family": _text(details.get("family")) or None,
            "format": _text(details.get("format")) or None,
            "parameter_size": _text(details.get("parameter_size")) or None,
            "quantization_level": _text(details.get("quantization_level")) or None,
        },
    }


def to_model_list(entries: list[tuple[dict[str, Any], ShowInfo | None]]) -> dict[str, Any]:
    """OpenAI's model list, in Ollama's order (most recently modified first)."""
    return {"object": "list", "data": [to_model(tag, show) for tag, show in entries]}


def find_tag(entries: list[dict[str, Any]], wanted_id: str) -> dict[str, Any] | None:
    """The ``/api/tags`` entry a client's id names: exactly, else by Ollama's name rules."""
    for tag in entries:
        if model_id(tag) == wanted_id:
            return tag
    wanted = canonical_name(wanted_id)
    for tag in entries:
        if canonical_name(model_id(tag)) == wanted:
            return tag
    return None
