"""Who goes next when a slot frees up: priority classes, then weighted fair sharing across parties.

A pure structure (no event loop, no clock of its own: ``now`` is passed in), so its order is
table-tested on its own; ``proxy/upstream/admission.py`` keeps one per bound and calls ``pop`` on every
release.

* Classes ``high`` > ``default`` > ``low`` are strict: a waiter of a lower class goes only when
  no waiter of a higher class can (a higher one blocked by its own model's bound does not hold
  a lower one up). The aging bound keeps ``low`` from starving: a waiter that has waited
  ``aging`` seconds or more goes before every class, the oldest such first.
* Within a class, parties (API keys) share by start-time fair queuing (Goyal et al., SFQ): each
  waiter is tagged on arrival with ``start = max(V, the party's last finish)`` and
  ``finish = start + 1 / weight``; the waiter with the smallest finish tag goes, and the class's
  virtual time ``V`` becomes its start tag. A party that was idle starts at ``V`` (it gets no
  credit for having been idle, and its share went to the others meanwhile: work-conserving);
  parties that stay backlogged are served in proportion to their weights. Within a party,
  requests keep their order (the first one whose model has room goes).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT", "HIGH", "LOW", "PRIORITIES", "FairQueue", "Waiter", "priority_index"]

PRIORITIES = ("high", "default", "low")  # index 0 is served first
HIGH, DEFAULT, LOW = 0, 1, 2


def priority_index(name: str) -> int:
    return PRIORITIES.index(name)


@dataclass(eq=False, slots=True)
class Waiter:
    """One request waiting for a slot; ``token`` is whatever the caller wakes it with."""

    model: str
    party: str
    priority: int
    since: float  # when it began waiting (the caller's clock)
    weight: float = 1.0
    token: Any = field(default=None, repr=False)
    start: float = 0.0  # SFQ tags, set by push
    finish: float = 0.0
    seq: int = 0


class _Class:
    """One priority class: a FIFO per party and the class's virtual time."""

    __slots__ = ("last_finish", "parties", "virtual")

    def __init__(self) -> None:
        self.parties: dict[str, collections.deque[Waiter]] = {}
        self.last_finish: dict[str, float] = {}  # only for parties with waiters
        self.virtual = 0.0


class FairQueue:
    """Waiters of every class and party; ``pop`` the next one whose model fits."""

    def __init__(self, aging: float = 0.0) -> None:
        self.aging = aging  # 0: no aging (strict classes only)
        self._classes = tuple(_Class() for _ in PRIORITIES)
        self._by_party: dict[str, int] = {}
        self._seq = 0
        self.size = 0  # waiters queued (an attribute: read on every release)

    def __len__(self) -> int:
        return self.size

    def party_waiting(self, party: str) -> int:
        return self._by_party.get(party, 0)

    def push(self, waiter: Waiter) -> None:
        """Queue ``waiter`` at the end of its party's line, tagged for its class."""
        cls = self._classes[waiter.priority]
        party = waiter.party
        waiter.start = max(cls.virtual, cls.last_finish.get(party, 0.0))
        waiter.finish = cls.last_finish[party] = waiter.start + 1.0 / waiter.weight
        self._seq += 1
        waiter.seq = self._seq
        line = cls.parties.get(party)
        if line is None:
            line = cls.parties[party] = collections.deque()
        line.append(waiter)
        self._by_party[party] = self._by_party.get(party, 0) + 1
        self.size += 1

    def remove(self, waiter: Waiter) -> bool:
        """Take out a waiter that stopped waiting (timed out, cancelled); False if not queued."""
        cls = self._classes[waiter.priority]
        line = cls.parties.get(waiter.party)
        if line is None or waiter not in line:
            return False
        line.remove(waiter)
        self._forget(cls, waiter, line)
        return True

    def pop(self, fits: Callable[[str], bool], now: float) -> Waiter | None:
        """The next waiter to serve among those whose model ``fits``; None if none can go."""
        if not self.size:
            return None
        chosen: Waiter | None = None
        if self.aging:
            chosen = self._oldest_aged(fits, now)
        if chosen is None:
            for cls in self._classes:
                chosen = _fairest(cls, fits, self._by_party)
                if chosen is not None:
                    break
        if chosen is None:
            return None
        cls = self._classes[chosen.priority]
        cls.virtual = max(cls.virtual, chosen.start)
        line = cls.parties[chosen.party]
        line.remove(chosen)  # almost always the head: O(1)
        self._forget(cls, chosen, line)
        return chosen

    def _oldest_aged(self, fits: Callable[[str], bool], now: float) -> Waiter | None:
        oldest: Waiter | None = None
        for cls in self._classes[1:]:  # high needs no aging: it goes first anyway
            for line in cls.parties.values():
                for waiter in line:  # a line is in arrival order: its first fitting waiter is its oldest
                    if fits(waiter.model):
                        if now - waiter.since >= self.aging and (
                                oldest is None or (waiter.since, waiter.seq) < (oldest.since, oldest.seq)):
                            oldest = waiter
                        break
        return oldest

    def _forget(self, cls: _Class, waiter: Waiter, line: collections.deque[Waiter]) -> None:
        self.size -= 1
        left = self._by_party[waiter.party] - 1
        if left:
            self._by_party[waiter.party] = left
        else:
            del self._by_party[waiter.party]
        if not line:
            # An idle party restarts at V (at most one quantum ahead of where it stood), and
            # nothing is kept for it: parties that come and go leave no trace.
            del cls.parties[waiter.party]
            del cls.last_finish[waiter.party]

    def counts(self) -> Iterator[tuple[str, str, int]]:
        """(priority, party, waiting) for every party with waiters, for the gauges."""
        for name, cls in zip(PRIORITIES, self._classes, strict=True):
            for party, line in cls.parties.items():
                yield name, party, len(line)


def _fairest(cls: _Class, fits: Callable[[str], bool], waiting: dict[str, int]) -> Waiter | None:
    """The fitting waiter with the smallest finish tag; on a tie, the party with less queued
    (a newcomer beside a backlog whose requests in flight took free slots untagged), then the
    older."""
    best: Waiter | None = None
    best_rank: tuple[float, int, int] = (0.0, 0, 0)
    for line in cls.parties.values():
        for waiter in line:
            if fits(waiter.model):
                rank = (waiter.finish, waiting[waiter.party], waiter.seq)
                if best is None or rank < best_rank:
                    best, best_rank = waiter, rank
                break  # within a party, order is kept: only its first fitting waiter may go
    return best
