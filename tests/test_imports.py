"""The import graph of ``proxy/``, read from the modules' own ``import`` statements with ``ast``:
every arrow points down a floor (or along one), and nothing imports in a circle, neither
between modules nor between packages. Lazy imports inside functions and ``TYPE_CHECKING``
imports count too: a circle that only type checkers see is still a circle a reader follows.

The floors, bottom up (``FLOORS``; the longest prefix of a module's dotted name decides):

0. ground: config, errors, ids, the log format, small helpers that know nothing of HTTP;
1. pure: translations, limits and option checks, the model globs;
2. services: the Ollama client and pool, the catalog, admission, store, access backends;
3. the app's typed keys (``appkeys``) naming those services;
4. gates: what a request passes before a handler (error envelope, body, access, pipeline);
5. observe: metrics, traces, the access record (they wrap the gates);
6. handlers and the console's routes;
7. the app factory;
8. entry points: the server, the CLIs.

A module no prefix covers fails the test with its name: say where it lives by adding it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "proxy"

FLOORS: dict[str, int] = {
    # Each module that moves in the layout is named on its own (tests/../moves/move.py renames
    # these strings with the imports), packages that stay by their prefix.
    # 0 ground
    "proxy.config": 0,
    "proxy.errors": 0,
    "proxy.ids": 0,
    "proxy.logs": 0,
    "proxy.upstream.waits": 0,
    "proxy.caller": 0,
    "proxy.modelglob": 0,
    "proxy.durations": 0,
    # 1 pure
    "proxy.translate": 1,
    "proxy.models": 1,
    "proxy.gates.resolve": 4,  # a request's model resolved (app keys, the outcome)
    "proxy.models.aliases": 1,
    "proxy.models.defaults": 1,
    "proxy.models.table": 1,
    "proxy.upstream.fairqueue": 1,
    "proxy.jobs.lines": 1,
    "proxy.models.limits": 1,
    "proxy.models.options": 1,
    "proxy.upstream.native": 1,
    "proxy.gates.decompress": 1,  # compressed request bodies, decoded within bounds (pure)
    # 2 services
    "proxy.upstream.client": 2,
    "proxy.upstream.pool": 2,
    "proxy.upstream.routing": 2,
    "proxy.upstream.health": 2,
    "proxy.upstream.discovery": 2,
    "proxy.upstream.probe": 2,
    "proxy.upstream.catalog": 2,
    "proxy.upstream.admission": 2,
    "proxy.upstream.outcome": 2,
    "proxy.gates.outbound": 2,
    "proxy.store.records": 2,
    "proxy.store.reasoning_key": 2,  # the key that seals reasoning, read or made at first use
    "proxy.store": 2,
    "proxy.access": 2,
    "proxy.gates.policy": 2,
    "proxy.jobs.secret": 2,
    "proxy.jobs.records": 2,
    "proxy.gates.drain": 2,  # the app's draining flag (SIGUSR1 before a stop)
    # 3 the app's keys
    "proxy.appkeys": 3,
    # 4 gates
    "proxy.gates": 4,
    "proxy.gates.errors": 4,
    "proxy.gates.body": 4,
    "proxy.gates.pipeline": 4,
    "proxy.gates.access": 4,
    "proxy.gates.reload": 4,
    "proxy.handlers.sse": 4,
    # 5 observe
    "proxy.observe": 5,
    "proxy.jobs": 5,  # the batch runner: the store, the app's config, its own app over loopback
    # 6 handlers
    "proxy.handlers": 6,
    "proxy.console": 6,
    # 7 the app
    "proxy.app": 7,
    # 8 entry points
    "proxy": 8,  # the package's face (``proxy/__init__.py``) and ``python -m proxy``
    "proxy.__main__": 8,
    "proxy.server": 8,
    "proxy.checkconfig": 8,
    "proxy.access.cli": 8,
    "proxy.store.cli": 8,
}
FLOORS["proxy.upstream.pool"] = 2  # the pool package's face, until the moves take it away


def modules(package: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Every module of ``package`` by dotted name, with whether it is a package's ``__init__``."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_init else parts)] = (path, is_init)
    return found


def _targets(name: str, is_init: bool, node: ast.AST, known: dict[str, tuple[Path, bool]]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = name.split(".") if is_init else name.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        for alias in node.names:  # ``from . import x`` names a module; ``from .m import f`` a thing in m
            sub = f"{target}.{alias.name}"
            yield sub if sub in known else target


def imports(known: dict[str, tuple[Path, bool]] | None = None) -> dict[str, set[str]]:
    """module → the modules of ``proxy`` it imports (anywhere in its text)."""
    known = modules() if known is None else known
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, (path, is_init) in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(name, is_init, node, known):
                if target != "proxy" and not target.startswith("proxy."):
                    continue
                while target not in known:  # ``import proxy.x.y`` of a name inside a module
                    target = target.rpartition(".")[0]
                if target != name:
                    graph[name].add(target)
    return graph


def floor_of(name: str) -> int | None:
    prefix = name
    while prefix:
        if prefix in FLOORS:
            return FLOORS[prefix]
        prefix = prefix.rpartition(".")[0]
    return None


def package_of(name: str) -> str:
    """The unit cycles are counted between: ``proxy.x`` for ``proxy.x`` and everything in it."""
    parts = name.split(".")
    return ".".join(parts[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def collapse(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between packages: an arrow wherever a module of one imports a module of another."""
    packages: dict[str, set[str]] = {}
    for name, targets in graph.items():
        edges = packages.setdefault(package_of(name), set())
        edges.update(package_of(t) for t in targets if package_of(t) != package_of(name))
    return packages


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (floor {floor_of(a)}) imports {b} (floor {floor_of(b)})"
                  for a, targets in graph.items() for b in targets
                  if (fa := floor_of(a)) is not None and (fb := floor_of(b)) is not None and fb > fa)


def _render(found: Iterable[list[str]]) -> str:
    return "; ".join(" <-> ".join(c) for c in found)


GRAPH = imports()


def test_every_module_has_a_floor() -> None:
    assert [m for m in GRAPH if floor_of(m) is None] == [], "add these modules to FLOORS in tests/test_imports.py"


def test_no_import_runs_upward() -> None:
    assert upward(GRAPH) == []


def test_no_modules_import_in_a_circle() -> None:
    found = cycles(GRAPH)
    assert not found, _render(found)


def test_no_packages_import_in_a_circle() -> None:
    found = cycles(collapse(GRAPH))
    assert not found, _render(found)


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
], ids=["a chain has no cycle", "two modules importing each other", "a circle of three"])
def test_cycles_finds_what_it_should(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_relative_and_lazy_imports_are_read(tmp_path: Path) -> None:
    pkg = tmp_path / "proxy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("X = 1\n")
    (pkg / "sub" / "__init__.py").write_text("from .mod import f\n")
    (pkg / "sub" / "mod.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import low\n"
                                        "def f():\n    from ..low import X\n    import proxy.low\n")
    graph = imports(modules(pkg))
    assert graph == {"proxy": set(), "proxy.low": set(), "proxy.sub": {"proxy.sub.mod"},
                     "proxy.sub.mod": {"proxy.low"}}
