"""Pure translation between each client API family (``openai/``, ``anthropic/``) and Ollama's
API: no I/O, no clock, no randomness."""
