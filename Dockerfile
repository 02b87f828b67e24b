# A slim image running the proxy as a non-root user.
#
# The base image is pinned by version so a rebuild next month starts from the same Python.
# To update: pick the newest 3.11 patch tag at https://hub.docker.com/_/python (e.g.
# python:3.11.<n>-slim-bookworm), rebuild, run the tests in it, commit. For a byte-exact
# base, pin the digest as well: `docker buildx imagetools inspect python:3.11.14-slim-bookworm`
# prints it; write FROM python:3.11.14-slim-bookworm@sha256:<digest>.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OLLAMA_BASE_URL=http://host.docker.internal:11434

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY proxy ./proxy
# Dependencies come from the committed constraints.txt (pip freeze of a clean venv), so an
# image built later resolves exactly the same versions (how to regenerate: see that file).
RUN pip install --no-cache-dir -c constraints.txt '.[uvloop,postgres,redis]' \
    && useradd --system --uid 10001 --no-create-home proxy
COPY config.toml ./config.toml

USER proxy
EXPOSE 8080
# Liveness, not readiness: /livez answers while the proxy runs, whatever Ollama's state, so an
# Ollama outage does not mark the container unhealthy (and get it restarted for nothing).
# /readyz (or /v1/health) is for a load balancer deciding where to send traffic.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=2).status == 200 else 1)"

CMD ["python", "-m", "proxy", "--config", "/app/config.toml", "--host", "0.0.0.0", "--port", "8080"]
