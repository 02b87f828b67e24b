"""A throwaway PostgreSQL server for the store's tests, and the fixture that runs each store
test against both backends.

The server is Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl``) run in a temporary
directory, on a free port, listening on a unix socket in that directory only (no TCP), and
stopped at the end of the session. ``initdb`` refuses to run as root, and CI runs as root: then
the directory is given to the ``postgres`` system user and the commands run as that user
(``runuser``). Never the machine's own server on 5432.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["postgres_server", "reset_postgres", "start_postgres", "stop_postgres", "store_url"]

BACKENDS = ("sqlite", "postgres")


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(argv: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a fresh PostgreSQL server for this test session (skips when not installed;
    ``.ci/run`` installs it)."""
    bindir = _binaries()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    user = None
    root = Path(tempfile.mkdtemp(prefix="proxy-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: the directory goes to an unprivileged user
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, port = root / "data", _free_port()
    try:
        subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "proxy", "-A", "trust",
                                  "-E", "UTF8", "--no-sync"], user), check=True, capture_output=True, timeout=120)
        options = f"-p {port} -k {root} -c listen_addresses='' -F"
        # -l: the server's output goes to a file, so no pipe of ours is held open by the daemon
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                                  str(root / "log"), "-w", "start"], user), check=True, capture_output=True,
                       timeout=120)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr!r}") from exc
    try:
        yield f"postgresql://proxy@/postgres?host={root}&port={port}"
    finally:
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user),
                       check=False, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def reset_postgres(url: str) -> None:
    """An empty database for the next test: the schema and its tables dropped.

    Run on a thread with its own loop, so this fixture is synchronous: an async fixture that is
    parametrized would be torn down on pytest-asyncio's loop at a time the app fixtures
    depending on it do not expect."""
    import asyncpg  # type: ignore[import-untyped]

    async def reset() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, reset()).result(timeout=60)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL, once per backend: a SQLite file in a temp dir, then an empty PostgreSQL db."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'proxy.db'}"
    url: str = request.getfixturevalue("postgres_server")
    reset_postgres(url)
    return url


def _server_of(url: str) -> tuple[Path, Path, str | None, str]:
    """The binaries, data directory, owner and port of the server ``postgres_server`` started."""
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(url).query)
    root, port = Path(query["host"][0]), query["port"][0]
    bindir = _binaries()
    assert bindir is not None
    return bindir, root, "postgres" if os.geteuid() == 0 else None, port


def stop_postgres(url: str) -> None:
    """Stop the test server (fast shutdown: sessions are ended, their transactions rolled back)."""
    bindir, root, user, _ = _server_of(url)
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "stop"], user),
                   check=True, capture_output=True, timeout=120)


def start_postgres(url: str) -> None:
    """Start the test server again, on the same socket, port and data."""
    bindir, root, user, port = _server_of(url)
    options = f"-p {port} -k {root} -c listen_addresses='' -F"
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-o", options, "-l",
                              str(root / "log"), "-w", "start"], user), check=True, capture_output=True, timeout=120)
