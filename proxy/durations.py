"""Ollama's ``keep_alive`` durations, read as Ollama reads them (pure, no imports of the proxy).

Its own module so the configuration (defaults of ``[models.defaults]``) and the request checks
(``proxy/models/options.py``) read a duration the same way.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["parse_duration"]

# Go's time.ParseDuration, which Ollama's api.Duration uses for strings ("5m", "1h30m", "-1s").
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")


def parse_duration(value: Any) -> float | None:
    """``keep_alive`` in seconds as Ollama reads it: a number is seconds, a string a Go
    duration; anything negative is "forever" (``math.inf``). ``None`` when Ollama would refuse it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return math.inf if value < 0 else float(value)
    if not isinstance(value, str):
        return None
    if value in ("0", "+0", "-0"):
        return 0.0
    if not _DURATION.fullmatch(value):
        return None
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    return math.inf if value.startswith("-") and seconds > 0 else seconds
