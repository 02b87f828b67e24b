"""Reasoning handed to a client and back: ``encrypted_content``, authenticated and bound to a key.

A client that keeps the conversation itself (``store: false``, ``include:
["reasoning.encrypted_content"]``; Codex does this on every turn) gets each reasoning item with
an opaque token and returns it in the next request's ``input``, so the model sees its earlier
thinking again. OpenAI encrypts the token; here the thinking is already in the item's summary in
clear, so secrecy buys nothing, but authenticity does: only a token this proxy made, for this
caller, is taken back. The token is

    "opx1." + base64url(kid[8] ‖ zlib(thinking) ‖ HMAC-SHA256(key, domain ‖ kid ‖ caller ‖ body))

``kid`` names the server key (a token made under another key fails verification, not decoding);
``caller`` is the API key id the request was authenticated as, so one key's token is worthless
under another's (replay into another context fails). The version prefix lets a later format live
beside this one. Pure functions: the key and the caller come in through ``Sealer``.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import zlib
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass, field

from ...errors import InvalidRequest

__all__ = ["PREFIX", "Sealer", "derive_key"]

PREFIX = "opx1."
_DOMAIN = b"ollama-openai-proxy reasoning.encrypted_content v1\x00"
_KID, _TAG = 8, 32
# The most thinking one token may unpack to: a token is client input, so a small token must not
# inflate into a large allocation (a compressed bomb) before its tag is even checked.
MAX_THINKING_BYTES = 4 * 1024 * 1024


def derive_key(secret: bytes) -> bytes:
    """The sealing key for a configured or generated secret (never the secret itself)."""
    return hmac.new(secret, b"seal-key" + _DOMAIN, hashlib.sha256).digest()


@dataclass(frozen=True)
class Sealer:
    """Seals and opens reasoning tokens for one caller with one server key."""

    key: bytes = field(repr=False)
    caller: str

    @property
    def kid(self) -> bytes:
        return hashlib.sha256(b"kid" + self.key).digest()[:_KID]

    def _tag(self, body: bytes) -> bytes:
        binding = hashlib.sha256(self.caller.encode()).digest()
        return hmac.new(self.key, _DOMAIN + binding + body, hashlib.sha256).digest()

    def seal(self, thinking: str) -> str:
        body = self.kid + zlib.compress(thinking.encode(), 1)
        return PREFIX + urlsafe_b64encode(body + self._tag(body)).decode().rstrip("=")

    def open(self, token: str, param: str) -> str:
        """The thinking a token holds; 400 naming ``param`` for any token this key did not make."""
        refused = InvalidRequest(
            "The encrypted reasoning could not be verified: it was not made by this proxy for this API key "
            "(or the proxy's [responses] reasoning key changed since).", param=param, code="invalid_encrypted_content")
        if not token.startswith(PREFIX):
            raise refused
        data = token[len(PREFIX):]
        try:
            raw = urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            raise refused from None
        body, tag = raw[:-_TAG], raw[-_TAG:]
        if len(raw) <= _KID + _TAG or not hmac.compare_digest(tag, self._tag(body)):
            raise refused
        inflater = zlib.decompressobj()
        try:
            text = inflater.decompress(body[_KID:], MAX_THINKING_BYTES)
        except zlib.error:
            raise refused from None
        if inflater.unconsumed_tail or not inflater.eof:
            raise refused
        return text.decode()
