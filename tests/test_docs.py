"""The documentation site (``mkdocs.yml`` over ``docs/``): it builds with ``--strict`` (no broken
link or anchor, no page left out of the nav), builds and reads offline, and its configuration
reference (``docs/reference.md``) names exactly the keys ``config.toml`` has.

Which keys ``config.toml`` has: the ones ``tomllib`` reads from it, plus the keys of the tables it
shows as commented-out examples (``[[upstreams]]``, ``[[auth.keys]]``, ``[limits.models."…"]``,
``[admission.models]``), since those are keys a user writes too. Names follow the dataclass tree
of ``proxy/config.py``: ``a.b`` for a key of ``[a]``, ``upstreams[].name`` for a key of each table
of an array, and ``limits.models."<name>"`` for a table whose names the user chooses (one entry
for the table: its keys are those of its parent section, listed in its row).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import Config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"
CONFIG_TOML = ROOT / "config.toml"
REFERENCE = DOCS / "reference.md"


def nav_pages(nav: Any) -> list[str]:
    """Every page file named in a MkDocs nav (nested lists of ``{title: page or section}``)."""
    if isinstance(nav, str):
        return [nav] if nav.endswith(".md") else []
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def test_every_page_in_docs_is_in_the_nav_and_every_nav_entry_exists() -> None:
    pages = nav_pages(yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))["nav"])
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert sorted(on_disk - set(pages)) == [], "pages missing from mkdocs.yml's nav (orphans)"
    assert sorted(set(pages) - on_disk) == [], "nav entries with no page in docs/"
    assert len(pages) == len(set(pages)), "a page listed twice in the nav"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="the docs extra is not installed")
def test_the_site_builds_strictly_and_loads_nothing_from_other_hosts(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(MKDOCS_YML),
         "--site-dir", str(site)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (site / "index.html").is_file() and (site / "reference" / "index.html").is_file()
    # Offline: no web fonts, scripts or styles from a CDN (Material's theme.font: false).
    remote = re.compile(r"""<(?:link|script)\b[^>]*\b(?:href|src)=["']?(?:https?:)?//""", re.IGNORECASE)
    for page in site.rglob("*.html"):
        found = remote.search(page.read_text(encoding="utf-8"))
        assert found is None, f"{page.relative_to(site)} loads {found.group(0)!r}"


# --- The README, the front door ----------------------------------------------------------------

README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_a_front_page() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250, "the reference belongs in docs/"


def test_the_readmes_links_inside_the_repository_lead_to_files() -> None:
    targets = LINK.findall(README.read_text(encoding="utf-8"))
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert local, "the README links to the docs pages"
    assert [t for t in local if not (ROOT / t).exists()] == []


def test_the_readme_writes_the_test_command_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = [line for line in ci.splitlines() if "pytest" in line and not line.startswith("#")][-1]
    assert command.strip() in README.read_text(encoding="utf-8")
    assert command.strip() in (DOCS / "getting-started.md").read_text(encoding="utf-8")


# --- The configuration reference -------------------------------------------------------------


def commented_example_tables(text: str) -> list[str]:
    """The TOML of each commented-out example table: a run of comment lines that starts with a
    table header (``#   [[upstreams]]``) and goes on while each line is TOML on its own."""
    blocks: list[str] = []
    block: list[str] | None = None
    for line in text.splitlines():
        body = line.lstrip()[1:].strip() if line.lstrip().startswith("#") else None
        if block is not None and body is not None and _is_toml(body):
            block.append(body)
            continue
        if block:
            blocks.append("\n".join(block))
        block = [body] if body is not None and body.startswith("[") and _is_toml(body) else None
    if block:
        blocks.append("\n".join(block))
    return blocks


def _is_toml(line: str) -> bool:
    try:
        tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return False
    return True


def dotted_keys(cls: type, table: dict[str, Any], prefix: str = "") -> set[str]:
    """The reference's names of the keys in ``table``, a TOML table read for dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    keys: set[str] = set()
    for key, value in table.items():
        name = prefix + key
        assert key in hints, f"config.toml names {name!r}, which proxy/config.py does not have"
        keys |= _keys_of(hints[key], name, value)
    return keys


def _keys_of(hint: Any, name: str, value: Any) -> set[str]:
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a section
        return dotted_keys(hint, value, f"{name}.")
    if typing.get_origin(hint) is dict:  # names the user chooses: one entry for the table
        return {f'{name}."<name>"'}
    if typing.get_origin(hint) is tuple and dataclasses.is_dataclass(args[0]):  # array of tables
        return {name}.union(*(dotted_keys(args[0], item, f"{name}[].") for item in value))
    return {name}


def schema(cls: type, prefix: str = "") -> dict[str, type | None]:
    """The same names for every field of the dataclass tree ``cls``; a user-named table of
    tables (``limits.models."<name>"``) maps to the dataclass of its entries, any other to None."""
    hints = typing.get_type_hints(cls)
    keys: dict[str, type | None] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint, name = hints[f.name], prefix + f.name
        args = typing.get_args(hint)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            keys |= schema(hint, f"{name}.")
        elif typing.get_origin(hint) is dict:
            keys[f'{name}."<name>"'] = args[1] if dataclasses.is_dataclass(args[1]) else None
        elif typing.get_origin(hint) is tuple and dataclasses.is_dataclass(args[0]):
            keys |= {name: None} | schema(args[0], f"{name}[].")
        else:
            keys[name] = None
    return keys


def config_toml_keys() -> set[str]:
    text = CONFIG_TOML.read_text(encoding="utf-8")
    tables = [tomllib.loads(text), *map(tomllib.loads, commented_example_tables(text))]
    return set().union(*(dotted_keys(Config, table) for table in tables))


ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|[^|]*\|\s*([^|]*)\|")  # key | type | default |


def reference_rows() -> dict[str, str]:
    """Each row of the reference's tables: the key (first cell) and its default (third cell)."""
    rows: dict[str, str] = {}
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            key, default = match.groups()
            assert key not in rows, f"docs/reference.md has two rows for {key}"
            rows[key] = default.strip()
    return rows


def test_the_commented_examples_are_found() -> None:
    text = CONFIG_TOML.read_text(encoding="utf-8")
    examples = [tomllib.loads(block) for block in commented_example_tables(text)]
    assert any("upstreams" in e for e in examples) and any("auth" in e for e in examples)
    assert commented_example_tables("# For example:\n#   [a]\n#   b = 1  # why\n#\n# Prose [x].\nc = 2\n") == [
        "[a]\nb = 1  # why\n"
    ]


def test_config_toml_and_its_examples_name_every_field_of_proxy_config() -> None:
    assert sorted(schema(Config).keys() - config_toml_keys()) == [], "fields config.toml never shows"


def test_every_config_key_has_a_row_in_the_reference() -> None:
    assert sorted(config_toml_keys() - reference_rows().keys()) == [], "add a row to docs/reference.md"


def test_every_row_of_the_reference_names_a_config_key() -> None:
    assert sorted(reference_rows().keys() - config_toml_keys()) == [], "keys config.toml does not have"


def test_a_user_named_tables_row_lists_every_key_it_takes() -> None:
    lines = {m.group(1): line for line in REFERENCE.read_text(encoding="utf-8").splitlines()
             if (m := ROW.match(line))}  # fmt: skip
    tables = {key: entry for key, entry in schema(Config).items() if entry is not None}
    assert tables, "limits.models and auth.keys[].model_limits are such tables"
    for key, entry in tables.items():
        missing = [f.name for f in dataclasses.fields(entry) if f"`{f.name}`" not in lines[key]]  # type: ignore[arg-type]
        assert missing == [], f"docs/reference.md: the row of {key} does not name {missing}"


def _leaves(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def test_the_defaults_in_the_reference_are_config_tomls() -> None:
    rows = reference_rows()
    written = _leaves(tomllib.loads(CONFIG_TOML.read_text(encoding="utf-8")))
    for key in written.keys() & rows.keys():  # a key without a row fails the test above
        value, literal = written[key], re.match(r"`([^`]+)`", rows[key])
        assert literal, f"docs/reference.md: {key}'s default should be a TOML value in backticks"
        assert tomllib.loads(f"v = {literal.group(1)}")["v"] == value, f"{key}: config.toml says {value!r}"
