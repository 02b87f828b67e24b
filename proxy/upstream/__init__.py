"""Ollama: the client, the pool of servers, their health, the catalog, admission."""
