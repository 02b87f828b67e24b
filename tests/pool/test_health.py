"""``proxy/upstream/health.py``: passive ejection with growing back-off, and who stays eligible."""

from __future__ import annotations

import pytest

from proxy.upstream.health import Health, Policy, eligible

POLICY = Policy(eject_after=3, base=10.0, max=35.0)


def test_ejected_after_consecutive_failures_only() -> None:
    health = Health()
    assert not health.failure(0, POLICY)
    assert not health.failure(0, POLICY)
    health.success()  # a success in between: the streak starts over
    assert not health.failure(0, POLICY)
    assert not health.failure(0, POLICY)
    assert health.failure(1, POLICY)
    assert health.ejected(1) and health.ejected(10.9) and not health.ejected(11)


@pytest.mark.parametrize(("ejections", "backoff"), [(1, 10.0), (2, 20.0), (3, 35.0), (9, 35.0)],
                         ids=["first", "doubles", "capped", "stays capped"])
def test_backoff_grows_with_repeated_ejections(ejections: int, backoff: float) -> None:
    assert POLICY.backoff(ejections) == backoff


def test_repeated_ejections_grow_and_successes_step_back() -> None:
    health = Health()
    for _ in range(3):
        health.failure(0, POLICY)
    assert health.ejected_until == 10
    for _ in range(3):
        health.failure(20, POLICY)
    assert health.ejected_until == 40  # twice the first
    health.success()
    for _ in range(3):
        health.failure(100, POLICY)
    assert health.ejected_until == 120  # stepped back down once


def test_failures_while_ejected_do_not_eject_again() -> None:
    health = Health()
    for _ in range(3):
        health.failure(0, POLICY)
    for _ in range(5):
        assert not health.failure(1, POLICY)
    assert health.ejected_until == 10 and health.ejections == 1


def ejected_until(t: float) -> Health:
    return Health(reachable=True, ejected_until=t)


@pytest.mark.parametrize(("healths", "now", "expected"), [
    ([Health(), Health(reachable=True)], 0, [0, 1]),
    ([Health(reachable=False), Health(reachable=True)], 0, [1]),
    ([ejected_until(5), Health(reachable=True)], 0, [1]),
    ([ejected_until(5), Health(reachable=True)], 5, [0, 1]),
    ([ejected_until(9), ejected_until(5)], 0, [1]),
    ([Health(reachable=False), ejected_until(50)], 0, [1]),
    ([Health(reachable=False), Health(reachable=False, ejected_until=3)], 0, [0]),
    ([], 0, []),
], ids=[
    "not probed yet counts as reachable",
    "an unreachable server is out",
    "an ejected server is out",
    "back after its back-off",
    "all ejected: the one due back first stays",
    "all out: a reachable one before an unreachable one",
    "all unreachable: the one not ejected",
    "no servers",
])
def test_eligible(healths: list[Health], now: float, expected: list[int]) -> None:
    assert eligible(healths, now) == expected


def test_probe_results_mark_reachability_changes() -> None:
    health = Health()
    assert health.probed("0.12.6", 1.0)  # first result: a change
    assert not health.probed("0.12.6", 1.0)
    assert health.probed(None, 2.0, "refused")
    assert (health.reachable, health.version, health.error) == (False, "0.12.6", "refused")
    assert not health.available(0)
