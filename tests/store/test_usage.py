"""Usage accounting: the in-memory book and the roll-up into OpenAI's Usage API buckets."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.store.base import UsageRow
from proxy.store.usage import (
    COMPLETION_ENDPOINTS,
    EMBEDDING_ENDPOINTS,
    UsageBook,
    UsageQuery,
    buckets,
)
from proxy.upstream.outcome import Outcome

D = 1_700_006_400  # a UTC midnight
H = 3600


def outcome(key: str = "k1", model: str = "m", endpoint: str = "chat.completions", *, tokens: tuple[int, int] = (3, 4),
            error: str | None = None) -> Outcome:
    o = Outcome(endpoint, model, key)
    o.prompt_tokens, o.completion_tokens, o.error = *tokens, error
    o.ended = o.started + 0.5
    return o


def test_the_book_sums_outcomes_per_key_model_endpoint() -> None:
    book = UsageBook(100)
    book.listen(outcome())
    book.listen(outcome(error="mid_stream", tokens=(1, 2)))
    book.listen(outcome(key="k2"))
    book.listen(outcome(endpoint="embeddings", tokens=(9, 0)))
    rows = {(r.key_id, r.endpoint): r for r in book.take()}
    assert len(book) == 0 and book.take() == []
    one = rows[("k1", "chat.completions")]
    assert (one.requests, one.errors, one.input_tokens, one.output_tokens, one.seconds) == (2, 1, 4, 6, 1.0)
    assert one.hour % 3600 == 0
    assert (rows[("k2", "chat.completions")].requests, rows[("k1", "embeddings")].input_tokens) == (1, 9)


def test_given_back_rows_merge_and_the_oldest_go_past_the_bound() -> None:
    book = UsageBook(2)
    book.give_back([UsageRow(D, "k", "m", "e", 1, 0, 1, 1, 1.0), UsageRow(D + H, "k", "m", "e", 1)])
    book.give_back([UsageRow(D + H, "k", "m", "e", 2, 1, 5, 5, 0.5), UsageRow(D + 2 * H, "k", "m", "e", 1)])
    rows = sorted(book.take(), key=lambda r: r.hour)
    assert [r.hour for r in rows] == [D + H, D + 2 * H]  # the oldest hour was dropped
    assert (rows[0].requests, rows[0].errors, rows[0].input_tokens) == (3, 1, 5)
    assert book.dropped == 1


ROWS = [
    UsageRow(D, "k1", "a", "chat.completions", 2, 0, 10, 20, 1.0),
    UsageRow(D + H, "k2", "a", "completions", 1, 0, 5, 6, 1.0),
    UsageRow(D + H, "k1", "b", "chat.completions", 1, 1, 1, 1, 1.0),
    UsageRow(D + 86400, "k1", "a", "chat.completions", 4, 0, 40, 40, 1.0),
    UsageRow(D, "k1", "e", "embeddings", 3, 0, 30, 0, 1.0),
    UsageRow(D, "k1", "a", "passthrough", 9, 0, 90, 90, 1.0),
]


def results(page: list[dict[str, Any]]) -> list[list[tuple[Any, ...]]]:
    return [[(r["model"], r["api_key_id"], r["input_tokens"], r.get("output_tokens"), r["num_model_requests"])
             for r in b["results"]] for b in page]


@pytest.mark.parametrize("query, expected, next_start", [
    (UsageQuery(D, D + 3 * 86400, 86400, 7), [[(None, None, 16, 27, 4)], [(None, None, 40, 40, 4)], []], None),
    (UsageQuery(D, D + 3 * 86400, 86400, 2), [[(None, None, 16, 27, 4)], [(None, None, 40, 40, 4)]], D + 2 * 86400),
    (UsageQuery(D, D + 2 * H, H, 24, ("model",)),
     [[("a", None, 10, 20, 2)], [("a", None, 5, 6, 1), ("b", None, 1, 1, 1)]], None),
    (UsageQuery(D, D + 86400, 86400, 7, ("model", "api_key_id")),
     [[("a", "k1", 10, 20, 2), ("a", "k2", 5, 6, 1), ("b", "k1", 1, 1, 1)]], None),
    (UsageQuery(D, D + 86400, 86400, 7, (), ("b",)), [[(None, None, 1, 1, 1)]], None),
    (UsageQuery(D, D + 86400, 86400, 7, ("api_key_id",), (), ("k2",)), [[(None, "k2", 5, 6, 1)]], None),
], ids=["daily buckets, empty ones listed", "limit pages buckets", "hourly by model",
        "by model and key", "models filter", "api_key_ids filter"])
def test_completion_buckets(query: UsageQuery, expected: list[list[tuple[Any, ...]]], next_start: int | None) -> None:
    page, after = buckets(ROWS, query, COMPLETION_ENDPOINTS, embeddings=False)
    assert results(page) == expected
    assert after == next_start
    assert [(b["start_time"], b["end_time"]) for b in page] == [
        (query.start + i * query.width, query.start + (i + 1) * query.width) for i in range(len(page))]
    assert all(b["object"] == "bucket" for b in page)


def test_embedding_results_have_openais_shape() -> None:
    page, _ = buckets(ROWS, UsageQuery(D, D + 86400, 86400, 7), EMBEDDING_ENDPOINTS, embeddings=True)
    assert page[0]["results"] == [{"object": "organization.usage.embeddings.result", "input_tokens": 30,
                                   "num_model_requests": 3, "project_id": None, "user_id": None,
                                   "api_key_id": None, "model": None}]
