"""The console's static route: a fixed set of files, safe paths, strict headers, config."""

from __future__ import annotations

import asyncio
import fnmatch
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from proxy.config import Config, ConfigError, build
from proxy.console import ASSETS, CSP, ROUTE_NAMES, console_enabled, load_assets
from tests.conftest import AppFactory, ProxyFactory

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_DIR = ROOT / "proxy" / "console"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_page_is_served_with_a_strict_csp(proxy_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(proxy_url + "/console/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        csp = resp.headers["Content-Security-Policy"]
        assert csp == CSP
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        body = await resp.text()
    assert '<script type="module" src="app.js"></script>' in body
    assert "<script>" not in body and " on" + "click=" not in body  # no inline script


@pytest.mark.parametrize(("name", "content_type"), [
    ("app.js", "text/javascript; charset=utf-8"),
    ("console.css", "text/css; charset=utf-8"),
    ("favicon.svg", "image/svg+xml"),
    ("index.html", "text/html; charset=utf-8"),
], ids=["module", "stylesheet", "icon", "page by name"])
async def test_each_file_has_its_content_type(proxy_url: str, http: aiohttp.ClientSession,
                                              name: str, content_type: str) -> None:
    async with http.get(f"{proxy_url}/console/{name}") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == content_type
        assert "Content-Security-Policy" in resp.headers
        assert await resp.read() == (CONSOLE_DIR / name).read_bytes()


@pytest.mark.parametrize("path", [
    "/console/../pyproject.toml",
    "/console/%2e%2e/%2e%2e/pyproject.toml",
    "/console/..%2fconfig.py",
    "/console/%2e%2e%2fconfig.py",
    "/console/routes.py",
    "/console/__init__.py",
    "/console/..",
    "/console/.",
    "/console/app.js/",
    "/console/sub/app.js",
    "/console/%00",
    "/console/APP.JS",
    "/console/app.js%00.html",
    "/console/....//config.py",
], ids=["dot-dot", "encoded dot-dot", "encoded slash", "all encoded", "python source",
        "package init", "bare dot-dot", "bare dot", "trailing slash", "subfolder", "nul",
        "case", "nul suffix", "quad dots"])
async def test_anything_outside_the_fixed_set_is_404(proxy_url: str, http: aiohttp.ClientSession,
                                                     path: str) -> None:
    # The client may normalise "." and ".." first; the raw request line is tested below.
    async with http.get(proxy_url + path, allow_redirects=False) as resp:
        body = await resp.read()
        if resp.status == 200:  # ".." resolved by the client or server: still only a console file
            assert body in {(CONSOLE_DIR / n).read_bytes() for n in ASSETS}
        else:
            assert resp.status == 404
            assert b'"error"' in body and b"[tool" not in body and b"def " not in body


async def test_raw_traversal_bytes_never_reach_the_file_system(proxy_url: str) -> None:
    """The request line exactly as an attacker writes it, not as a client library cleans it."""
    host, port = proxy_url.removeprefix("http://").split(":")
    for target in ["/console/../pyproject.toml", "/console/..%2f..%2fpyproject.toml",
                   "/console/%2e%2e/proxy/config.py"]:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        status = answer.split(b" ", 2)[1]
        assert status == b"404", (target, answer[:200])
        assert b"[build-system]" not in answer and b"dataclass" not in answer


async def test_without_slash_redirects_and_etag_revalidates(proxy_url: str,
                                                           http: aiohttp.ClientSession) -> None:
    async with http.get(proxy_url + "/console", allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "/console/"
    async with http.get(proxy_url + "/console/app.js") as resp:
        etag = resp.headers["ETag"]
    async with http.get(proxy_url + "/console/app.js", headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
        assert await resp.read() == b""


async def test_configured_path_and_off_switch(proxy_factory: ProxyFactory,
                                              http: aiohttp.ClientSession) -> None:
    moved = await proxy_factory({"console": {"path": "/ui/"}})
    async with http.get(moved + "/ui/") as resp:
        assert resp.status == 200
    async with http.get(moved + "/console/") as resp:
        assert resp.status == 404
    off = await proxy_factory({"console": {"enabled": False}})
    async with http.get(off + "/console/") as resp:
        assert resp.status == 404


@pytest.mark.parametrize(("server", "console", "expected"), [
    ({}, {}, True),
    ({"host": "127.0.0.1"}, {}, True),
    ({"host": "::1"}, {}, True),
    ({"host": "localhost"}, {}, True),
    ({"host": "0.0.0.0"}, {}, False),
    ({"host": "192.168.1.5"}, {}, False),
    ({"host": "gpu-box.lan"}, {}, False),
    ({"host": "0.0.0.0"}, {"enabled": True}, True),
    ({"host": "127.0.0.1"}, {"enabled": False}, False),
    ({"host": "0.0.0.0"}, {"enabled": "auto"}, False),
], ids=["default host", "loopback v4", "loopback v6", "localhost", "all interfaces", "lan address",
        "host name", "explicitly on", "explicitly off", "auto spelled out"])
def test_on_by_default_only_on_loopback(server: dict[str, str], console: dict[str, object],
                                        expected: bool) -> None:
    assert console_enabled(build(Config, {"server": server, "console": console}, "")) is expected


@pytest.mark.parametrize("path", ["console/", "/console", "/v1/console/", "/api/x/", "/a/../b/",
                                  "/a b/", "/./", "/"],
                         ids=["relative", "no trailing slash", "under v1", "under api", "dot-dot",
                              "space", "dot", "root"])
def test_bad_paths_name_the_key(path: str) -> None:
    with pytest.raises(ConfigError, match=r"^console\.path: "):
        build(Config, {"console": {"path": path}}, "")


@pytest.mark.parametrize("value", ["yes", 1, "on"], ids=["word", "number", "other word"])
def test_enabled_is_true_false_or_auto(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^console\.enabled: "):
        build(Config, {"console": {"enabled": value}}, "")


def test_every_file_is_shipped_in_the_package() -> None:
    """Each served file exists and is covered by pyproject's package-data globs (wheel installs)."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["proxy"]
    assert set(load_assets()) == set(ASSETS)
    for name in ASSETS:
        assert (CONSOLE_DIR / name).is_file(), name
        assert any(fnmatch.fnmatch(f"console/{name}", g) for g in globs), name
    web_files = {p.name for p in CONSOLE_DIR.iterdir() if p.suffix in {".html", ".css", ".js", ".svg"}}
    assert web_files == set(ASSETS), "a console file that is not served (or served but missing)"


async def test_the_console_routes_carry_their_names(app_factory: AppFactory) -> None:
    """An access check recognises the console by route name, wherever [console] path puts it."""
    _, app = await app_factory({"console": {"path": "/ops/ui/"}})
    named = {r.name: r.resource.canonical for r in app.router.routes() if r.name in ROUTE_NAMES}
    assert named == {"console.file": "/ops/ui/{name}", "console.redirect": "/ops/ui"}


# Ways a string can become markup or code in a page; none of them has a place in the console,
# which builds every node with createElement and text (dom.js, markdown.js).
UNSAFE_JS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
             "setAttribute(\"on", "srcdoc")


@pytest.mark.parametrize("name", [n for n in ASSETS if n.endswith(".js")])
def test_no_script_builds_markup_from_strings(name: str) -> None:
    code = "\n".join(line for line in load_assets()[name].body.decode().splitlines()
                     if not line.lstrip().startswith("//"))  # the comments may name them
    assert [u for u in UNSAFE_JS if u in code] == []


def test_the_page_has_no_inline_handlers_or_scripts() -> None:
    html = load_assets()["index.html"].body.decode()
    assert re.findall(r"\son[a-z]+\s*=", html) == []
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "style=" not in html
