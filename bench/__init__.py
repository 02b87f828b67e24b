"""Benchmark harness for ollama-openai-proxy.

A fake Ollama, two reference proxies, a load generator and the runner.

Run everything with ``python -m bench`` from the repository root (see bench/README.md).
"""
