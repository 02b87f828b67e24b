"""A throwaway ``redis-server`` for tests: a free port, a temporary directory, no persistence.

Never the machine's own Redis: tests start Debian's ``redis-server`` binary once per session
and empty it before each test that asks for ``redis_url``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

REDIS_SERVER = shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    def __init__(self) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (.ci/run installs the Debian package)")
        self.dir = tempfile.TemporaryDirectory(prefix="proxy-redis-")
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir.name,
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.process.stdout is not None
        for line in self.process.stdout:  # the server says when it is ready
            if b"Ready to accept connections" in line:
                return
        raise AssertionError("redis-server exited before it was ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


@pytest.fixture(scope="session")
def redis_process() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    yield server
    server.stop()
    server.dir.cleanup()


@pytest.fixture
def redis_url(redis_process: RedisProcess) -> str:
    """The URL of the test Redis, emptied (and started again if a test stopped it)."""
    import redis

    if redis_process.process is None:
        redis_process.start()
    with redis.Redis.from_url(redis_process.url) as r:
        r.flushall()
    return redis_process.url
