"""Operator-side models: aliases and per-model defaults, compiled once (``table``), and their
use on a request (``resolve``: the one call every route with a model makes)."""
