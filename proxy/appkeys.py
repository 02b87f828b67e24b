"""The app's shared state, each under a typed ``web.AppKey`` (never module globals)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from .config import Config
from .models.limits import Validator
from .store.base import Store
from .store.service import StoreService
from .upstream.admission import Admission
from .upstream.catalog import ModelCatalog
from .upstream.pool import Pool
from .upstream.probe import HealthProbe

# The keys of what only ``observe/`` knows (metrics, traces) live there, next to their types,
# so that nothing here imports prometheus_client or OpenTelemetry, nor anything above this floor.
__all__ = ["ADMISSION", "CATALOG", "CLIENT", "CONFIG", "PROBE", "STORE", "STORE_SERVICE", "UPSTREAM_TRACES",
           "VALIDATOR"]

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
# aiohttp client hooks for the Ollama client's session (tracing adds its own).
UPSTREAM_TRACES = web.AppKey("upstream_traces", list[aiohttp.TraceConfig])
