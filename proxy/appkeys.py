"""The app's shared state, each under a typed ``web.AppKey`` (never module globals)."""

from __future__ import annotations

from aiohttp import web

from .admission import Admission
from .config import Config
from .metadata import ModelCatalog
from .pool import Pool
from .probe import HealthProbe
from .validate import Validator

__all__ = ["ADMISSION", "CATALOG", "CLIENT", "CONFIG", "PROBE", "VALIDATOR"]

CONFIG = web.AppKey("config", Config)
CLIENT = web.AppKey("client", Pool)  # one server is a pool of one
PROBE = web.AppKey("health_probe", HealthProbe)
CATALOG = web.AppKey("model_catalog", ModelCatalog)
VALIDATOR = web.AppKey("validator", Validator)
ADMISSION = web.AppKey("admission", Admission)
