"""``proxy/upstream/routing.py``: candidate ranking, stickiness keys and the LRU, as tables."""

from __future__ import annotations

import pytest

from proxy.upstream.routing import Affinity, Candidate, Residency, Tier, affinity_key, rank

F, P, D, U = Tier.FULL, Tier.PARTIAL, Tier.ON_DISK, Tier.UNKNOWN


def c(name: str, tier: int, in_flight: int = 0, weight: int = 1, full: bool = False) -> Candidate:
    return Candidate(name, tier, in_flight, weight, full)


@pytest.mark.parametrize(("candidates", "turn", "preferred", "expected"), [
    ([c("a", D), c("b", F)], 0, None, ["b", "a"]),
    ([c("a", P), c("b", F, in_flight=9)], 0, None, ["b", "a"]),
    ([c("a", D), c("b", P, in_flight=5)], 0, None, ["b", "a"]),
    ([c("a", U), c("b", D, in_flight=5)], 0, None, ["b", "a"]),
    ([c("a", D, 3), c("b", D, 1), c("c", D, 2)], 0, None, ["b", "c", "a"]),
    ([c("a", F, 2), c("b", F, 1)], 0, None, ["b", "a"]),
    ([c("a", F, 2, weight=4), c("b", F, 1)], 0, None, ["a", "b"]),
    ([c("a", D), c("b", D), c("c", D)], 0, None, ["a", "b", "c"]),
    ([c("a", D), c("b", D), c("c", D)], 1, None, ["b", "a", "c"]),
    ([c("a", D), c("b", D), c("c", D)], 2, None, ["c", "a", "b"]),
    ([c("a", D), c("b", D), c("c", D)], 3, None, ["a", "b", "c"]),
    ([c("a", D, weight=2), c("b", D)], 1, None, ["a", "b"]),
    ([c("a", D, weight=2), c("b", D)], 2, None, ["b", "a"]),
    ([c("a", F, full=True), c("b", D)], 0, None, ["b"]),
    ([c("a", F, full=True)], 0, None, []),
    ([], 0, None, []),
    ([c("a", F), c("b", D)], 0, "b", ["b", "a"]),
    ([c("a", F), c("b", D, full=True)], 0, "b", ["a"]),
    ([c("a", F)], 0, "gone", ["a"]),
], ids=[
    "loaded beats on disk",
    "fully in VRAM beats partly, even when busier",
    "partly loaded beats on disk, even when busier",
    "a known inventory beats an unknown one",
    "fewest in flight first among equals",
    "fewest in flight among the loaded",
    "in flight counts per unit of weight",
    "round-robin among ties: turn 0",
    "round-robin among ties: turn 1",
    "round-robin among ties: turn 2",
    "round-robin among ties: wraps",
    "weight 2 takes two turns of three (first)",
    "weight 2 takes two turns of three (third is the other)",
    "a server at its bound is left out",
    "every server at its bound: nobody",
    "no candidates: nobody",
    "the sticky server goes first",
    "the sticky server at its bound is not used",
    "a sticky server that is not a candidate is ignored",
])
def test_rank(candidates: list[Candidate], turn: int, preferred: str | None, expected: list[str]) -> None:
    assert rank(candidates, turn, preferred) == expected


@pytest.mark.parametrize(("size", "vram", "tier"), [
    (100, 100, F), (100, 40, P), (100, 0, P), (0, 0, P),
], ids=["all in VRAM", "part in VRAM", "CPU only", "sizes unknown"])
def test_residency_tier(size: int, vram: int, tier: int) -> None:
    assert Residency("m", size, vram).tier == tier


SYSTEM = {"role": "system", "content": "be brief"}
USER1 = {"role": "user", "content": "hi"}
ANSWER = {"role": "assistant", "content": "hello"}
USER2 = {"role": "user", "content": "more"}


def chat(*messages: dict[str, str], model: str = "m") -> dict[str, object]:
    return {"model": model, "messages": list(messages)}


@pytest.mark.parametrize(("a", "b", "same"), [
    (("/api/chat", chat(SYSTEM, USER1), None), ("/api/chat", chat(SYSTEM, USER1, ANSWER, USER2), None), True),
    (("/api/chat", chat(USER1), None), ("/api/chat", chat(USER2), None), False),
    (("/api/chat", chat(USER1), None), ("/api/chat", chat(USER1, model="other"), None), False),
    (("/api/chat", chat(USER1), "s1"), ("/api/chat", chat(USER2), "s1"), True),
    (("/api/chat", chat(USER1), "s1"), ("/api/chat", chat(USER1), "s2"), False),
    (("/api/generate", {"model": "m", "prompt": "x"}, "s1"), ("/api/chat", chat(USER1), "s1"), True),
], ids=[
    "a later turn keeps the first turn's key",
    "other conversations differ",
    "the model is part of the key",
    "the session header wins over the messages",
    "other sessions differ",
    "a session spans endpoints",
])
def test_affinity_key(a: tuple[str, dict[str, object], str | None], b: tuple[str, dict[str, object], str | None],
                      same: bool) -> None:
    ka, kb = affinity_key(*a), affinity_key(*b)
    assert ka is not None and kb is not None
    assert (ka == kb) is same


@pytest.mark.parametrize(("path", "body"), [
    ("/api/generate", {"model": "m", "prompt": "x"}),
    ("/api/chat", {"model": "m", "messages": []}),
    ("/api/chat", None),
    ("/api/embed", {"model": "m", "input": "x"}),
], ids=["generate without session", "no messages", "no body", "embed without session"])
def test_no_affinity_key_without_conversation_or_session(path: str, body: dict[str, object] | None) -> None:
    assert affinity_key(path, body, None) is None


def test_affinity_is_a_bounded_lru_with_an_idle_ttl() -> None:
    now = [0.0]
    table = Affinity(max_entries=2, idle_ttl=10, clock=lambda: now[0])
    table.put("a", "s1")
    table.put("b", "s2")
    assert table.get("a") == "s1"
    table.put("a", "s1")  # used again: the most recent
    table.put("c", "s3")  # evicts the least recently put, "b"
    assert (table.get("a"), table.get("b"), table.get("c"), len(table)) == ("s1", None, "s3", 2)
    now[0] = 10.5
    assert table.get("a") is None and len(table) == 1  # idle too long: forgotten
