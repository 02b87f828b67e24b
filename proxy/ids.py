"""Ids for requests, completions and tool calls: unique within a deployment, not secrets.

They only have to tell answers apart (like OpenAI's ``chatcmpl-…``), so 96 bits from the
stdlib's Mersenne Twister (seeded from the OS at start-up, per process) serve, at a fraction of
``secrets``' system call per id: two of these are made for every request.
"""

from __future__ import annotations

import random

__all__ = ["new_id"]


def new_id(prefix: str) -> str:
    """``prefix`` followed by 24 hex digits, e.g. ``chatcmpl-9f0c…``."""
    return f"{prefix}{random.getrandbits(96):024x}"
