"""The app's shared state, each under a typed ``web.AppKey`` (never module globals)."""

from __future__ import annotations

from aiohttp import web

from .admission import Admission
from .config import Config
from .metadata import ModelCatalog
from .probe import HealthProbe
from .store.service import StoreService
from .upstream import OllamaClient
from .validate import Validator

__all__ = ["ADMISSION", "CATALOG", "CLIENT", "CONFIG", "PROBE", "STORE", "VALIDATOR"]

CONFIG = web.AppKey("config", Config)
CLIENT = web.AppKey("client", OllamaClient)
PROBE = web.AppKey("health_probe", HealthProbe)
CATALOG = web.AppKey("model_catalog", ModelCatalog)
VALIDATOR = web.AppKey("validator", Validator)
ADMISSION = web.AppKey("admission", Admission)
# The store's background service (``[store] enabled``); absent when the store is off.
# ``app[STORE].store`` is the ``Store`` (e.g. ``put_response`` for the Responses API).
STORE = web.AppKey("store", StoreService)
