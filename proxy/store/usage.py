"""Usage accounting: an outcome listener adding to in-memory hourly totals, and the pure
roll-up of stored hourly rows into OpenAI's Usage API buckets.

``UsageBook.listen`` runs once per request at its end and only adds numbers to a dict keyed by
(UTC hour, key id, model, endpoint): no I/O, nothing per streamed chunk. ``take`` hands the
totals to the background flusher; a failed write is ``give_back``-ed and merged with what came
in since, bounded by ``max_rows`` (the oldest hours are dropped first, and counted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..upstream.outcome import Outcome
from .base import UsageRow

__all__ = ["COMPLETION_ENDPOINTS", "EMBEDDING_ENDPOINTS", "GROUPS", "WIDTHS", "UsageBook", "UsageQuery", "buckets"]

log = logging.getLogger("proxy.store")

# Which of the proxy's endpoints each Usage API family counts (passthrough is Ollama's native
# API, outside OpenAI's families: it is in the store and the CLI, not in these buckets).
# A batch's lines count under "batch.<endpoint>" (the Usage API's ``batch`` filter and group).
COMPLETION_ENDPOINTS = frozenset({"chat.completions", "completions", "responses", "messages",
                                  "batch.chat.completions", "batch.completions", "batch.responses"})
EMBEDDING_ENDPOINTS = frozenset({"embeddings", "batch.embeddings"})

Key = tuple[int, str, str, str, str]  # hour, key id, model, endpoint, requested name ('' if the same)


class UsageBook:
    """The usage not yet written: per (hour, key, model, endpoint), five running sums."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.dropped = 0  # rows given up after failed writes, for the log and /readyz
        self._rows: dict[Key, list[float]] = {}

    def listen(self, outcome: Outcome) -> None:
        """The outcome listener: one dict lookup and five additions per request."""
        hour = int(time.time()) // 3600 * 3600  # listeners run at the request's end
        key = (hour, outcome.key_id, outcome.model, outcome.endpoint, outcome.requested)
        sums = self._rows.get(key)
        if sums is None:
            sums = self._rows[key] = [0, 0, 0, 0, 0.0]
            if len(self._rows) > self.max_rows:
                self._drop_oldest()
        sums[0] += 1
        sums[1] += outcome.error is not None
        sums[2] += outcome.prompt_tokens
        sums[3] += outcome.completion_tokens
        sums[4] += outcome.duration

    def __len__(self) -> int:
        return len(self._rows)

    def take(self) -> list[UsageRow]:
        """Everything pending, as rows to write; the book starts empty again."""
        rows, self._rows = self._rows, {}
        return [UsageRow(h, k, m, e, int(s[0]), int(s[1]), int(s[2]), int(s[3]), float(s[4]), r)
                for (h, k, m, e, r), s in rows.items()]

    def give_back(self, rows: Iterable[UsageRow]) -> None:
        """Rows whose write failed: merged back, to be retried with the next flush."""
        for r in rows:
            sums = self._rows.setdefault((r.hour, r.key_id, r.model, r.endpoint, r.requested), [0, 0, 0, 0, 0.0])
            sums[0] += r.requests
            sums[1] += r.errors
            sums[2] += r.input_tokens
            sums[3] += r.output_tokens
            sums[4] += r.seconds
        while len(self._rows) > self.max_rows:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        oldest = min(self._rows)
        del self._rows[oldest]
        self.dropped += 1
        log.warning("usage: store unreachable and %d rows pending; dropped the oldest (%d dropped so far)",
                    self.max_rows, self.dropped)


# ---- OpenAI's Usage API --------------------------------------------------------------------

WIDTHS = {"1h": 3600, "1d": 86400}
GROUPS = {"model": "model", "api_key_id": "key_id", "batch": "batch"}


@dataclass(frozen=True)
class UsageQuery:
    """A validated ``GET /v1/organization/usage/{completions,embeddings}`` request."""

    start: int  # the first bucket's start (aligned down to the width)
    end: int  # exclusive
    width: int
    limit: int
    group_by: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    api_key_ids: tuple[str, ...] = ()
    batch: bool | None = None  # only batch lines (True), only live requests (False), both (None)


def buckets(rows: Iterable[UsageRow], query: UsageQuery, endpoints: frozenset[str],
            embeddings: bool) -> tuple[list[dict[str, Any]], int | None]:
    """OpenAI's ``bucket`` objects for one page, and the next page's start (None: last page).

    Every bucket in the range is listed, empty ones too (as OpenAI does); results sum the
    hourly rows per the ``group_by`` fields, and fields not grouped by are ``null``.
    """
    sums: dict[int, dict[tuple[Any, ...], list[int]]] = {}
    for r in rows:
        batch = r.endpoint.startswith("batch.")
        if r.endpoint not in endpoints or (query.models and r.model not in query.models) or (
                query.api_key_ids and r.key_id not in query.api_key_ids) or (
                query.batch is not None and batch != query.batch):
            continue
        start = query.start + (r.hour - query.start) // query.width * query.width
        group = (r.model if "model" in query.group_by else None, r.key_id if "api_key_id" in query.group_by else None,
                 batch if "batch" in query.group_by else None)
        total = sums.setdefault(start, {}).setdefault(group, [0, 0, 0])
        total[0] += r.input_tokens
        total[1] += r.output_tokens
        total[2] += r.requests
    page: list[dict[str, Any]] = []
    start = query.start
    while start < query.end and len(page) < query.limit:
        results = [_result(group, total, embeddings) for group, total in sorted(
            sums.get(start, {}).items(), key=lambda item: tuple(str(v or "") for v in item[0]))]
        page.append({"object": "bucket", "start_time": start, "end_time": start + query.width,
                     "results": results})
        start += query.width
    return page, (start if start < query.end else None)


def _result(group: tuple[Any, ...], total: list[int], embeddings: bool) -> dict[str, Any]:
    model, key_id, batch = group
    if embeddings:
        return {"object": "organization.usage.embeddings.result", "input_tokens": total[0],
                "num_model_requests": total[2], "project_id": None, "user_id": None,
                "api_key_id": key_id, "model": model}
    return {"object": "organization.usage.completions.result", "input_tokens": total[0],
            "output_tokens": total[1], "input_cached_tokens": 0, "input_audio_tokens": 0,
            "output_audio_tokens": 0, "num_model_requests": total[2], "project_id": None,
            "user_id": None, "api_key_id": key_id, "model": model, "batch": batch}
