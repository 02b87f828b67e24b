"""Access: API keys, per-key rate limits, and the browser-safety checks (CORS, Host, type).

The gates that apply them to a request are in ``gate.py``; the rest knows nothing of handlers.
"""
