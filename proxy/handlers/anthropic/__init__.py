"""Anthropic's Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``."""

from .messages import SIGNING_SECRET, count_tokens, create_message

__all__ = ["SIGNING_SECRET", "count_tokens", "create_message"]
