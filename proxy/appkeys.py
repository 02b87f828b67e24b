"""The app's shared state, each under a typed ``web.AppKey`` (never module globals)."""

from __future__ import annotations

from aiohttp import web

from .config import Config
from .upstream import OllamaClient

__all__ = ["CLIENT", "CONFIG"]

CONFIG = web.AppKey("config", Config)
CLIENT = web.AppKey("client", OllamaClient)
