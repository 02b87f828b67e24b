# A slim image running the proxy as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OLLAMA_BASE_URL=http://host.docker.internal:11434

WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip install --no-cache-dir '.[uvloop,postgres]' \
    && useradd --system --uid 10001 --no-create-home proxy
COPY config.toml ./config.toml

USER proxy
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/v1/health', timeout=2).status == 200 else 1)"

CMD ["python", "-m", "proxy", "--config", "/app/config.toml", "--host", "0.0.0.0", "--port", "8080"]
