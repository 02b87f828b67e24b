"""What one request to Ollama came to, told once at its end to whoever keeps account.

Rate-limit settlement, usage accounting and metrics all need the same few facts about a
finished request: who asked, for which model, how many tokens Ollama counted, how long it took
and how it ended. Rather than each reaching into every handler, a handler holds one
``Outcome`` for the life of its upstream call (``async with account(request, …) as outcome``),
fills in what it learns (tokens from Ollama's final line, the time the first byte went out),
and on exit the outcome goes to every listener in ``app[OUTCOME_LISTENERS]``: plain,
non-blocking callables that add to in-memory state. With no listeners this costs one object
and two clock reads per request, and nothing per streamed chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..caller import caller
from ..errors import ProxyError
from .pool import SERVED_BY

__all__ = [
    "CLIENT_CLOSED", "OUTCOME", "OUTCOME_LISTENERS", "REQUESTED_MODEL", "REQUEST_OUTCOMES", "Accounting",
    "Listener", "Outcome",
    "account", "ollama_timings",
]

log = logging.getLogger("proxy.outcome")

# Ollama's final-line durations (nanoseconds), kept as seconds for the listeners.
_TIMINGS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")

# Set when the client went away before the answer was complete (nginx's 499).
CLIENT_CLOSED = 499


@dataclass(slots=True, eq=False)
class Outcome:
    """One request to Ollama, from admission to its end."""

    endpoint: str  # "chat.completions", "completions", "embeddings", "responses", "passthrough"
    model: str  # the Ollama model that served it
    key_id: str
    stream: bool = False
    requested: str = ""  # the model the client asked for ([models.aliases]); "" = the same as model
    started: float = field(default_factory=time.monotonic)
    first_byte: float | None = None  # monotonic time the first answer byte was written
    ended: float | None = None
    status: int = 200  # the HTTP status the client got (499: it went away first)
    error: str | None = None  # None, or the error code / kind that ended it
    prompt_tokens: int = 0
    completion_tokens: int = 0  # Ollama's count; for a cut-short stream, the lines relayed
    final: dict[str, Any] | None = None  # Ollama's final line (the first, for n > 1): its durations
    extra: dict[str, Any] = field(default_factory=dict)  # what one listener hands another

    @property
    def requested_model(self) -> str:
        """The model the client asked for: an alias's name, else the served model."""
        return self.requested or self.model

    @property
    def duration(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def time_to_first_byte(self) -> float | None:
        return None if self.first_byte is None else self.first_byte - self.started

    def count_tokens(self, *ollama_finals: dict[str, Any]) -> None:
        """Take the token counts and durations from Ollama's final line or whole answer (several
        for ``n`` > 1: their counts summed, the first one's durations)."""
        self.prompt_tokens = sum(int(final.get("prompt_eval_count") or 0) for final in ollama_finals)
        self.completion_tokens = sum(int(final.get("eval_count") or 0) for final in ollama_finals)
        if ollama_finals:
            self.final = ollama_finals[0]
            if isinstance(reason := self.final.get("done_reason"), str):
                self.extra["finish_reason"] = reason  # Ollama's ("stop", "length"), for traces

    @property
    def timings(self) -> dict[str, float]:
        """Ollama's durations in seconds, worked out only for a listener that asks."""
        return {} if self.final is None else ollama_timings(self.final)


Listener = Callable[[Outcome], None]
OUTCOME_LISTENERS = web.AppKey("outcome_listeners", list[Listener])
# The request's outcome, for middlewares that run around the handler (metrics, access log).
OUTCOME = web.RequestKey("outcome", Outcome)
# The model name the client sent, set by ``proxy.models.resolve.resolve_model`` (an alias's own name).
REQUESTED_MODEL = web.RequestKey("requested_model", str)
# Set by a gate that wants every outcome of one client request (the rate limiter settles a
# request's token reservation against the sum of its outcomes); absent otherwise.
REQUEST_OUTCOMES = web.RequestKey("request_outcomes", list[Outcome])


def ollama_timings(final: dict[str, Any]) -> dict[str, float]:
    """Ollama's durations in seconds, only those it sent."""
    return {name: value / 1e9 for name in _TIMINGS if isinstance(value := final.get(name), int | float)}


class Accounting:
    """``async with`` one request's outcome; on exit its end is recorded and it is told.

    A plain class rather than a generator context manager: it is entered on every request.
    """

    __slots__ = ("_listeners", "outcome")

    def __init__(self, listeners: list[Listener], outcome: Outcome) -> None:
        self._listeners = listeners
        self.outcome = outcome

    async def __aenter__(self) -> Outcome:
        return self.outcome

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        _tb: object) -> None:
        outcome = self.outcome
        outcome.ended = time.monotonic()
        upstream = SERVED_BY.get()
        if upstream is not None:  # which server of the pool answered, for per-server accounts
            outcome.extra.setdefault("upstream", upstream)
        if exc is not None:
            if isinstance(exc, ProxyError):
                outcome.status, outcome.error = exc.status, exc.code or exc.type
            elif isinstance(exc, asyncio.CancelledError | ConnectionResetError):
                outcome.status, outcome.error = CLIENT_CLOSED, "client_disconnect"
            else:
                outcome.status, outcome.error = 500, "internal"
        for listener in self._listeners:
            try:
                listener(outcome)
            except Exception:  # one broken account must not fail the request or the others
                log.exception("outcome listener %r failed", listener)


def account(request: web.Request, endpoint: str, model: str, *, stream: bool = False) -> Accounting:
    """The accounting context for one request to Ollama for ``model``."""
    requested = request.get(REQUESTED_MODEL)
    who = caller(request)
    outcome = Outcome("batch." + endpoint if who.batch else endpoint, model, who.key_id, stream,
                      requested if requested is not None and requested != model else "")
    request[OUTCOME] = outcome
    collected = request.get(REQUEST_OUTCOMES)
    if collected is not None:
        collected.append(outcome)
    return Accounting(request.app[OUTCOME_LISTENERS], outcome)
