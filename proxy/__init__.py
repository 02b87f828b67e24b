"""ollama-openai-proxy: a low-overhead OpenAI-compatible gateway in front of Ollama."""

__version__ = "0.1.0"
