"""The web console: a playground, usage charts and server health, as static files.

Everything it shows comes from the proxy's public APIs (``/v1/models``, ``/v1/chat/completions``,
the Usage API, ``/v1/health``, ``/metrics``), called by the browser; the server side only hands
out a fixed set of files (``routes.py``), so the console adds nothing to a request's path.
"""

from __future__ import annotations

from .routes import ASSETS, CSP, ROUTE_NAMES, add_console_routes, console_enabled, load_assets

__all__ = ["ASSETS", "CSP", "ROUTE_NAMES", "add_console_routes", "console_enabled", "load_assets"]
