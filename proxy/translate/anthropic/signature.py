"""The ``signature`` of a thinking block: the thinking itself, authenticated by the proxy.

Anthropic's signature is an opaque blob that carries a thinking block's full reasoning, so a
client that was shown none of it (``thinking.display: "omitted"``, as Claude Code asks) can
still hand the block back in the next turn and the model gets its reasoning again. Here it is
``v1.<base64url thinking>.<base64url HMAC-SHA256>``, the MAC over the caller's key id and the
text: a client cannot forge reasoning into another key's context, and a signature the proxy
cannot verify (another key's, another process's secret, edited) is dropped, never an error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field

__all__ = ["Signer"]

_PREFIX = "v1."


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Signer:
    """Signs and opens thinking for one caller (``scope``: its key id) with ``secret``."""

    secret: bytes = field(repr=False)
    scope: str = ""

    def _mac(self, thinking: bytes) -> bytes:
        return hmac.new(self.secret, self.scope.encode() + b"\x00" + thinking, hashlib.sha256).digest()[:18]

    def sign(self, thinking: str) -> str:
        raw = thinking.encode()
        return f"{_PREFIX}{_b64(raw)}.{_b64(self._mac(raw))}"

    def open(self, signature: str) -> str | None:
        """The thinking ``signature`` carries, or None when it is not one of ours for this caller."""
        if not signature.startswith(_PREFIX):
            return None
        body, _, mac = signature[len(_PREFIX):].rpartition(".")
        try:
            raw, given = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(self._mac(raw), given):
            return None
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return None
