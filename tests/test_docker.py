"""The Dockerfile's promises, checked statically (no Docker engine in CI): liveness health
check, a base image pinned by version, and dependencies from the committed constraints file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_the_healthcheck_probes_liveness_not_readiness() -> None:
    healthcheck = DOCKERFILE[DOCKERFILE.index("HEALTHCHECK"):].split("\n\n")[0]
    assert "/livez" in healthcheck
    assert "/v1/health" not in healthcheck and "/readyz" not in healthcheck  # Ollama down ≠ unhealthy


def test_the_base_image_is_pinned_by_version() -> None:
    base = re.search(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1)), base.group(1)


def test_dependencies_come_from_the_committed_constraints() -> None:
    assert "-c constraints.txt" in DOCKERFILE and "COPY pyproject.toml README.md constraints.txt" in DOCKERFILE
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[name.lower().replace("_", "-")] = version
    with open(ROOT / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["uvloop"], *extras["postgres"], *extras["redis"]]  # what the image installs
    for requirement in wanted:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        assert name in pins, f"{name} is not in constraints.txt"
