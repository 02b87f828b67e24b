"""The app's shared state, each under a typed ``web.AppKey`` (never module globals)."""

from __future__ import annotations

from aiohttp import web

from .admission import Admission
from .config import Config
from .metadata import ModelCatalog
from .pool import Pool
from .probe import HealthProbe
from .store.base import Store
from .store.service import StoreService
from .validate import Validator

__all__ = ["ADMISSION", "CATALOG", "CLIENT", "CONFIG", "PROBE", "STORE", "STORE_SERVICE", "VALIDATOR"]

CONFIG = web.AppKey("config", Config)
CLIENT = web.AppKey("client", Pool)  # one server is a pool of one
PROBE = web.AppKey("health_probe", HealthProbe)
CATALOG = web.AppKey("model_catalog", ModelCatalog)
VALIDATOR = web.AppKey("validator", Validator)
ADMISSION = web.AppKey("admission", Admission)
# ``[store] enabled``: both absent when the store is off (use ``app.get(STORE)``).
# The database (``put_response``/``get_response``/``delete_response`` for the Responses API,
# written at once) and the background service (usage totals, the stored-completion queue).
STORE = web.AppKey("store", Store)
STORE_SERVICE = web.AppKey("store_service", StoreService)
