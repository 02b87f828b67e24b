"""SIGHUP: take the keys and limits from the config file again, in this process.

Only ``[auth]`` (keys, their limits and models, ``allow_anonymous``) and the operator's model
names (``[models] aliases`` and ``defaults``, ``proxy/models/``) are reloaded; the
connections and requests in flight are untouched (each request keeps the key it found). A
file that no longer loads leaves everything as it was and says why in the log. Other
sections, including ``[ratelimit]`` and ``[cors]``, take a restart; a change to them is logged.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from ..appkeys import CONFIG
from ..config import ConfigError, load_config
from .access import ACCESS
from .resolve import MODELS

__all__ = ["ON_RELOAD", "reload_access", "reload_on_sighup"]

# Called with the app once new keys are in force (the pipeline recomposes its chains).
ON_RELOAD: web.AppKey[list[Callable[[web.Application], None]]] = web.AppKey("on_access_reload")

log = logging.getLogger("proxy.access")


def reload_access(app: web.Application, source: str | None) -> bool:
    """Reload ``[auth]`` from ``source``; False (and the old keys kept) if it fails to load."""
    try:
        config = load_config(source)
    except ConfigError as exc:
        log.error("reload failed, keeping the keys in force: %s", exc)
        return False
    started = app[CONFIG]
    for section in ("ratelimit", "cors", "server"):
        if getattr(config, section) != getattr(started, section):
            log.warning("reload: [%s] changed; it takes effect on restart", section)
    app[ACCESS].reload(config)
    app[MODELS].reload(config.models)
    if config.limits != started.limits:  # the defaults were checked against the new limits
        log.warning("reload: [limits] changed; it takes effect on restart")
    for listener in app.get(ON_RELOAD, ()):
        listener(app)  # the pipeline: a key with limits may now need the meter, or none any more
    log.info("reloaded %d API key(s) and %d model alias(es) from %s", len(config.auth.keys),
             len(config.models.aliases), source or "the defaults")
    return True


def reload_on_sighup(source: str | None) -> Callable[[web.Application], Coroutine[Any, Any, None]]:
    """An ``on_startup`` hook: SIGHUP reloads the keys (instead of ending the process)."""

    async def install(app: web.Application) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload_access, app, source)
        log.info("%d API key(s) in force; SIGHUP reloads them from %s", len(app[ACCESS].keys),
                 source or "the defaults")

    return install
