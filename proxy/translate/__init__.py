"""Pure translation between the OpenAI API and Ollama's API: no I/O, no clock, no randomness."""
