"""Anthropic's Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``."""

from .messages import count_tokens, create_message

__all__ = ["count_tokens", "create_message"]
