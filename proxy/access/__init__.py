"""Access: API keys, per-key rate limits, and the browser-safety checks (CORS, Host, type)."""

from .gate import ACCESS, access_ctx, access_guard, decorate, key_allows, meter

__all__ = ["ACCESS", "access_ctx", "access_guard", "decorate", "key_allows", "meter"]
