"""Whether an answer is stored, and the bounded queue of answers waiting to be written."""

from __future__ import annotations

import pytest

from proxy.errors import UnsupportedParameter
from proxy.store.base import ChatRecord
from proxy.store.history import HistoryQueue, Policy, should_store


@pytest.mark.parametrize("requested, policy, expected", [
    (None, "on_request", False), (False, "on_request", False), (True, "on_request", True),
    (None, "always", True), (False, "always", True), (None, "never", False), (False, "never", False),
    (None, None, False), (False, None, False),
], ids=["on_request without store", "on_request with store false", "on_request with store true",
        "always without store", "always overrides store false", "never without store",
        "never with store false", "off without store", "off with store false"])
def test_policy(requested: bool | None, policy: Policy | None, expected: bool) -> None:
    assert should_store(requested, policy) is expected


@pytest.mark.parametrize("policy", [None, "never"], ids=["store off", "never"])
def test_store_true_that_cannot_be_honoured_is_a_400(policy: Policy | None) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        should_store(True, policy)
    assert caught.value.param == "store" and caught.value.status == 400


def record(n: int) -> ChatRecord:
    return ChatRecord(f"c{n}", "k", n, "m", [], {}, {})


def test_queue_keeps_order_and_drops_the_oldest_past_its_bound() -> None:
    queue = HistoryQueue(3)
    for n in range(2):
        queue.push(record(n))
    batch = queue.take()
    queue.push(record(2))
    queue.push(record(3))
    queue.give_back(batch)  # the failed batch goes first again
    assert [r.id for r in queue.take()] == ["c1", "c2", "c3"]  # c0, the oldest, was dropped
    assert queue.dropped == 1 and len(queue) == 0
