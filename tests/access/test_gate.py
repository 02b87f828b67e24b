"""proxy/gates/access.py: what a finished request is charged, from its outcomes."""

from __future__ import annotations

import pytest

from proxy.gates.access import used_tokens
from proxy.upstream.outcome import Outcome


def outcome(prompt: int = 0, completion: int = 0, error: str | None = None, first_byte: float | None = 1.0) -> Outcome:
    o = Outcome("chat.completions", "m", "k", first_byte=first_byte, error=error)
    o.prompt_tokens, o.completion_tokens = prompt, completion
    return o


@pytest.mark.parametrize("outcomes, charged", [
    ([outcome(11, 5)], 16),
    ([outcome(0, 7)], 7),
    ([outcome(0, 3, error="client_disconnect")], 40 + 3),
    ([outcome(0, 0, error="upstream_unreachable", first_byte=None)], 0),
    ([outcome(12, 4, error="mid_stream")], 16),
    ([outcome(10, 2), outcome(10, 3)], 25),
    ([], 0),
], ids=[
    "Ollama's counts", "a cached prompt counts only the answer", "a stream cut short: the prompt estimate + what was relayed",
    "Ollama never answered: nothing", "a fault after the final counts: the counts", "several upstream calls add up",
    "refused before Ollama: nothing",
])
def test_what_a_request_is_charged(outcomes: list[Outcome], charged: int) -> None:
    assert used_tokens(outcomes, prompt_estimate=40) == charged
