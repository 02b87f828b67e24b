"""``proxy/upstream/fairqueue.py`` as a pure structure: the order in which waiters go, with the clock
passed in. Fairness is stated in counts (how many of A's requests go before B's), never time."""

from __future__ import annotations

import pytest

from proxy.errors import InvalidRequest
from proxy.upstream.admission import answer_tier, requested_tier, tier_class
from proxy.upstream.fairqueue import DEFAULT, HIGH, LOW, FairQueue, Waiter


def always(_model: str) -> bool:
    return True


def waiter(party: str, priority: int = DEFAULT, *, weight: float = 1.0, since: float = 0.0,
           model: str = "m", name: str = "") -> Waiter:
    return Waiter(model, party, priority, since, weight, token=name or party)


def drain(queue: FairQueue, now: float = 0.0, fits=always) -> list[str]:
    order = []
    while (w := queue.pop(fits, now)) is not None:
        order.append(w.token)
    return order


def test_one_party_keeps_its_order() -> None:
    queue = FairQueue()
    for i in range(5):
        queue.push(waiter("a", name=f"a{i}"))
    assert drain(queue) == ["a0", "a1", "a2", "a3", "a4"] and len(queue) == 0


def test_a_late_party_goes_next_instead_of_behind_a_backlog() -> None:
    """A queues 40 at once; after two of A's have gone, B's one request goes next."""
    queue = FairQueue()
    for i in range(40):
        queue.push(waiter("a", name=f"a{i}"))
    assert [queue.pop(always, 0).token for _ in range(2)] == ["a0", "a1"]
    queue.push(waiter("b", name="b0"))
    assert queue.pop(always, 0).token == "b0"


def test_one_at_a_time_party_waits_behind_at_most_one_of_the_backlog() -> None:
    """B sends 5 one after another, each only after the previous went: between B's arrival
    and its turn, at most one of A's requests goes (the bound the integration test measures)."""
    queue = FairQueue()
    for i in range(40):
        queue.push(waiter("a", name=f"a{i}"))
    passed_over = []
    for _ in range(5):
        queue.pop(always, 0)  # a slot frees for one of A's
        queue.push(waiter("b"))
        ahead = 0
        while queue.pop(always, 0).token != "b":
            ahead += 1
        passed_over.append(ahead)
    assert max(passed_over) <= 1


@pytest.mark.parametrize(("weights", "share"), [((3, 1), (3, 1)), ((1, 1), (1, 1)), ((2, 1), (2, 1))])
def test_weights_give_their_share_while_both_are_backlogged(weights: tuple[int, int], share: tuple[int, int]) -> None:
    queue = FairQueue()
    for i in range(100):
        queue.push(waiter("a", weight=weights[0], name="a"))
        queue.push(waiter("b", weight=weights[1], name="b"))
    first = [queue.pop(always, 0).token for _ in range(60)]
    assert first.count("a") * share[1] == first.count("b") * share[0]


def test_an_idle_party_builds_no_credit() -> None:
    """B was idle while A was served alone; on return B gets its share, not a burst."""
    queue = FairQueue()
    for _ in range(10):
        queue.push(waiter("a", name="a"))
    assert drain(queue)[:10] == ["a"] * 10
    for _ in range(4):
        queue.push(waiter("a", name="a"))
        queue.push(waiter("b", name="b"))
    assert drain(queue) == ["a", "b"] * 4


def test_classes_are_strict() -> None:
    queue = FairQueue()
    queue.push(waiter("a", LOW, name="low"))
    queue.push(waiter("a", DEFAULT, name="default"))
    queue.push(waiter("b", HIGH, name="high"))
    assert drain(queue) == ["high", "default", "low"]


def test_flex_waits_behind_default_of_the_same_key() -> None:
    queue = FairQueue()
    queue.push(waiter("a", LOW, name="flex"))
    for i in range(3):
        queue.push(waiter("a", DEFAULT, name=f"d{i}"))
    assert drain(queue) == ["d0", "d1", "d2", "flex"]


def test_low_is_served_once_it_has_waited_the_aging_bound() -> None:
    queue = FairQueue(aging=10)
    queue.push(waiter("batch", LOW, since=0, name="low"))
    for i in range(5):
        queue.push(waiter("a", DEFAULT, since=9, name=f"d{i}"))
    assert queue.pop(always, 9.5).token == "d0"  # not yet aged
    assert queue.pop(always, 10.0).token == "low"  # aged: before every class
    assert drain(queue, 10.0) == ["d1", "d2", "d3", "d4"]


def test_without_aging_low_waits_for_every_default() -> None:
    queue = FairQueue(aging=0)
    queue.push(waiter("batch", LOW, since=0, name="low"))
    queue.push(waiter("a", DEFAULT, since=0, name="d"))
    assert drain(queue, 1e9) == ["d", "low"]


def test_aged_waiters_go_oldest_first() -> None:
    queue = FairQueue(aging=5)
    queue.push(waiter("x", LOW, since=3, name="younger"))
    queue.push(waiter("y", DEFAULT, since=1, name="older"))
    queue.push(waiter("z", HIGH, since=9, name="high"))
    assert drain(queue, 9) == ["older", "younger", "high"]


def test_a_waiter_whose_model_is_full_does_not_block_others() -> None:
    queue = FairQueue()
    queue.push(waiter("a", HIGH, model="big", name="big"))
    queue.push(waiter("a", HIGH, model="small", name="small-a"))
    queue.push(waiter("b", LOW, model="small", name="small-b"))
    assert drain(queue, fits=lambda m: m != "big") == ["small-a", "small-b"]
    assert drain(queue) == ["big"]


def test_remove_and_counts() -> None:
    queue = FairQueue()
    one, two = waiter("a", name="1"), waiter("b", LOW, name="2")
    queue.push(one)
    queue.push(two)
    assert sorted(queue.counts()) == [("default", "a", 1), ("low", "b", 1)]
    assert queue.party_waiting("a") == 1
    assert queue.remove(one) and not queue.remove(one)
    assert list(queue.counts()) == [("low", "b", 1)] and len(queue) == 1 and queue.party_waiting("a") == 0


@pytest.mark.parametrize(("tier", "default", "ceiling", "expected"), [
    (None, DEFAULT, DEFAULT, DEFAULT),
    ("auto", LOW, DEFAULT, LOW),  # auto: the key's own default class
    ("default", LOW, DEFAULT, DEFAULT),
    ("scale", DEFAULT, DEFAULT, DEFAULT),
    ("flex", DEFAULT, HIGH, LOW),
    ("priority", DEFAULT, HIGH, HIGH),
    ("priority", DEFAULT, DEFAULT, DEFAULT),  # not allowed: the answer says "default"
    ("default", DEFAULT, LOW, LOW),  # a key capped at low
])
def test_tier_to_class(tier: str | None, default: int, ceiling: int, expected: int) -> None:
    assert tier_class(tier, default, ceiling) == expected


def test_answer_tier_names_and_validation() -> None:
    assert [answer_tier(p) for p in (HIGH, DEFAULT, LOW)] == ["priority", "default", "flex"]
    assert requested_tier({}) is None and requested_tier({"service_tier": "flex"}) == "flex"
    for bad in ("fast", 1, ""):
        with pytest.raises(InvalidRequest):
            requested_tier({"service_tier": bad})
