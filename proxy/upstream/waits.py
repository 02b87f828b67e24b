"""A bound on every wait of a stream, at the cost of one timer per period, not one per wait.

Streams wait on the network thousands of times (each read of Ollama's body, each write to a
slow client). Re-arming a timer per wait, as ``asyncio.timeout`` would, costs a timer handle
each time; ``WaitWatch`` instead notes when the current wait began, and one timer per
``limit`` checks that note: it cancels the task once a wait has lasted ``limit``, and otherwise
moves itself to when the current wait would. The subclass turns that cancellation into its own
error (``_expired``); any other cancellation (the client left) goes on unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Self

__all__ = ["WaitWatch"]


class WaitWatch:
    """Bounds each wait between ``_begin()`` and ``_end()`` by ``limit`` seconds; a ``with`` block
    so no timer outlives the stream."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._since: float | None = None  # when the current wait began; None between waits
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _begin(self) -> None:
        now = self._loop.time()
        self._since = now
        if self._handle is None:
            self._handle = self._loop.call_at(now + self.limit, self._check)

    def _end(self) -> None:
        self._since = None

    def _cancelled(self) -> None:
        """In an ``except CancelledError``: our own cancellation becomes ``_expired()``."""
        if self._fired and self._task is not None and self._task.uncancel() == 0:
            raise self._expired() from None

    def _expired(self) -> Exception:
        raise NotImplementedError

    def _check(self) -> None:
        self._handle = None
        since = self._since
        if since is None:
            return  # not waiting: the next wait arms the timer again
        due = since + self.limit
        if self._loop.time() >= due - 0.001 and self._task is not None:  # handles may run a hair early
            self._fired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(due, self._check)
