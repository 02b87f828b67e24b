"""Access: API keys, per-key rate limits (memory or Redis), CORS and allowed hosts.

The gates that apply them to a request are in ``gates/access.py``; this package knows nothing
of requests or handlers.
"""
