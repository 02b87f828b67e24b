"""The model list in Anthropic's shape, for a client that says ``anthropic-version``.

Anthropic's ``GET /v1/models`` answers ``{"data": [{"type": "model", "id", "display_name",
"created_at"}], "has_more", "first_id", "last_id"}``; the entries are made from the OpenAI
ones (``translate/models.py``), so both lists hold the same models in the same order.
"""

from __future__ import annotations

import datetime
from typing import Any

__all__ = ["to_anthropic_model", "to_anthropic_model_list"]


def to_anthropic_model(model: dict[str, Any]) -> dict[str, Any]:
    created = datetime.datetime.fromtimestamp(int(model.get("created") or 0), datetime.UTC)
    return {"type": "model", "id": model["id"], "display_name": model["id"],
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ")}


def to_anthropic_model_list(models: dict[str, Any]) -> dict[str, Any]:
    data = [to_anthropic_model(m) for m in models.get("data") or []]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}
