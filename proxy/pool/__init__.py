"""Several Ollama servers behind one proxy: residency-aware routing, failover, per-server health."""

from .pool import SERVED_BY, Pool, PoolCall, Server, expose_upstream, session_affinity

__all__ = ["SERVED_BY", "Pool", "PoolCall", "Server", "expose_upstream", "session_affinity"]
