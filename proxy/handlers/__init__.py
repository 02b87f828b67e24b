"""HTTP handlers: thin functions that read, validate, translate, call Ollama and write."""
