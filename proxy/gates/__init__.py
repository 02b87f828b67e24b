"""Everything a request passes before a handler, in the one order of ``pipeline.py``."""
