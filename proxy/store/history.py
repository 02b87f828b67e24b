"""Stored chat completions: whether to keep an answer (the ``[store]`` policy against the
client's ``store``), and the bounded queue of answers waiting for the background writer."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Literal

from ..errors import UnsupportedParameter
from .base import ChatRecord

__all__ = ["HistoryQueue", "should_store"]

log = logging.getLogger("proxy.store")

Policy = Literal["on_request", "always", "never"]


def should_store(requested: bool | None, policy: Policy | None) -> bool:
    """Keep this answer? ``policy`` is None when the store is off.

    ``store: true`` that cannot be honoured is a 400 naming it, never silently dropped;
    ``always`` keeps every answer whatever the client said (an operator's audit choice).
    """
    if policy is None or policy == "never":
        if requested:
            why = "storing is off on this proxy ([store] enabled = false)" if policy is None else (
                "this proxy does not store chat completions ([store] chat_completions = \"never\")")
            raise UnsupportedParameter(f"'store' must be false: {why}.", param="store")
        return False
    return policy == "always" or bool(requested)


class HistoryQueue:
    """Completions to write, oldest first; past ``max_items`` the oldest are dropped, counted."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.dropped = 0
        self._items: deque[ChatRecord] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def push(self, record: ChatRecord) -> None:
        self._items.append(record)
        self._trim()

    def take(self) -> list[ChatRecord]:
        items = list(self._items)
        self._items.clear()
        return items

    def give_back(self, records: Iterable[ChatRecord]) -> None:
        """A failed batch goes back in front of what arrived since, then the bound applies."""
        self._items.extendleft(reversed(list(records)))
        self._trim()

    def _trim(self) -> None:
        while len(self._items) > self.max_items:
            self._items.popleft()
            self.dropped += 1
            log.warning("history: store unreachable and %d completions pending; dropped the oldest "
                        "(%d dropped so far)", self.max_items, self.dropped)
