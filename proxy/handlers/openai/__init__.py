"""Thin handlers of OpenAI's API family: read, translate, call Ollama, answer."""
