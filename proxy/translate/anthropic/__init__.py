"""Anthropic's Messages API ⇄ Ollama ``/api/chat``, as pure functions (request, answer, stream)."""

from .request import MessagesRequest, from_anthropic
from .response import AnswerShape, MessageContext, StopCollector, to_message
from .signature import Signer
from .stream import PING, MessagesStream, error_event, frames_for_read, new_stream

__all__ = [
    "PING", "AnswerShape", "MessageContext", "MessagesRequest", "MessagesStream", "Signer", "StopCollector",
    "error_event", "frames_for_read", "from_anthropic", "new_stream", "to_message",
]  # fmt: skip
