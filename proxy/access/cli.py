"""``python -m proxy keys new|hash``: make a key and its ``[[auth.keys]]`` table, or hash one.

The key is printed once, on a line of its own (so ``| head -1`` captures it), then the TOML
table to paste into the config, which holds only the key's SHA-256. ``keys hash`` reads a key
on stdin (never from the command line, where it would land in the shell's history and ``ps``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

import orjson

from ..config import ConfigError, KeyConfig, build
from .keys import hash_key, new_key

__all__ = ["keys_main", "toml_block"]


def toml_block(key: KeyConfig) -> str:
    """The ``[[auth.keys]]`` table for ``key`` (only the settings that differ from defaults)."""
    lines = ["[[auth.keys]]", f"id = {_str(key.id)}", f"sha256 = {_str(key.sha256)}"]
    if key.models:
        lines.append(f"models = [{', '.join(map(_str, key.models))}]")
    for name in ("rpm", "tpm", "max_concurrent"):
        if value := getattr(key, name):
            lines.append(f"{name} = {value}")
    if key.expires_at:
        lines.append(f"expires_at = {_str(key.expires_at)}")
    if key.role != "user":
        lines.append(f"role = {_str(key.role)}")
    return "\n".join(lines)


def _str(value: str) -> str:
    return orjson.dumps(value).decode()  # a JSON string is a valid TOML basic string


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m proxy keys", description="Manage API keys.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="make a key; print it once, then its [[auth.keys]] table")
    new.add_argument("--id", required=True, help="the key's name in logs, metrics and usage")
    new.add_argument("--models", nargs="+", default=[], metavar="GLOB", help="models the key may use")
    new.add_argument("--rpm", type=int, default=0, help="requests per minute (0: no limit)")
    new.add_argument("--tpm", type=int, default=0, help="tokens per minute (0: no limit)")
    new.add_argument("--max-concurrent", type=int, default=0, help="requests in flight (0: no limit)")
    new.add_argument("--expires-at", help="RFC 3339 time the key stops working")
    new.add_argument("--role", choices=["user", "admin"], default="user")
    sub.add_parser("hash", help="read a key on stdin, print its sha256 for [[auth.keys]]")
    return parser


def keys_main(argv: Sequence[str], stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(argv)
    if args.command == "hash":
        key = stdin.readline().strip()
        if not key:
            print("ollama-openai-proxy: keys hash: no key on stdin", file=sys.stderr)
            return 2
        print(hash_key(key), file=stdout)
        return 0
    key = new_key()
    table = {"id": args.id, "sha256": hash_key(key), "models": args.models, "rpm": args.rpm,
             "tpm": args.tpm, "max_concurrent": args.max_concurrent, "role": args.role}
    if args.expires_at:
        table["expires_at"] = args.expires_at
    try:  # the same checks as the config file, so the printed table always loads
        config = build(KeyConfig, table, "keys new --")
    except ConfigError as exc:
        name, _, why = str(exc).partition(": ")
        print(f"ollama-openai-proxy: {name.replace('--.', '--').replace('_', '-')}: {why}", file=sys.stderr)
        return 2
    print(key, file=stdout)
    print(f"\n# {args.id}: only this hash is kept; the key above is not shown again.", file=stdout)
    print(toml_block(config), file=stdout)
    return 0
