"""Pure translations between OpenAI's API family and Ollama's."""
