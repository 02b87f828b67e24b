"""Command line: ``python -m proxy [--config PATH] [--host H] [--port P] [--check-config]``,
``python -m proxy usage […]`` (``proxy/store/cli.py``) and ``python -m proxy keys new|hash`` for API
keys (``proxy/access/cli.py``)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .access.cors import is_loopback
from .config import Config, ConfigError, key_file_relative_to, load_config
from .server import serve, supervise

__all__ = ["main"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ollama-openai-proxy",
        description="Serve the OpenAI API in front of an Ollama server.",
        epilog="API keys: python -m proxy keys new --id NAME | python -m proxy keys hash < key",
    )
    parser.add_argument("--config", metavar="PATH", help="TOML config file (default: built-in defaults)")
    parser.add_argument("--host", help="address to listen on (overrides server.host)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides server.port)")
    parser.add_argument("--workers", type=int, help="processes sharing the port (overrides server.workers)")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop even if uvloop is installed")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the config, print the effective limits and exit")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def configure(args: argparse.Namespace) -> Config:
    """The effective config: file (or defaults), then env, then command-line flags."""
    config = load_config(args.config)
    if args.config is not None:
        config = key_file_relative_to(config, Path(args.config).resolve().parent)
    server = config.server
    if args.host is not None:
        server = dataclasses.replace(server, host=args.host)
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port: must be a port number (0-65535), got {args.port}")
        server = dataclasses.replace(server, port=args.port)
    if args.workers is not None:
        if not 1 <= args.workers <= 256:
            raise ConfigError(f"--workers: must be between 1 and 256, got {args.workers}")
        server = dataclasses.replace(server, workers=args.workers)
    if args.no_uvloop:
        server = dataclasses.replace(server, uvloop=False)
    if config.ratelimit.backend == "redis" and importlib.util.find_spec("redis") is None:
        raise ConfigError('ratelimit.backend: "redis" needs the redis package '
                          "(pip install 'ollama-openai-proxy[redis]')")
    if server.workers > 1 and server.port == 0:
        raise ConfigError("server.port: must be a fixed port when server.workers > 1")
    if config.tracing.enabled and not _installed("opentelemetry.sdk"):
        raise ConfigError("tracing.enabled: needs the tracing extra: pip install 'ollama-openai-proxy[tracing]'")
    return dataclasses.replace(config, server=server)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # its parent package is missing
        return False


def protected_mode_refusal(config: Config) -> str | None:
    """Why the proxy must not start: no keys while listening beyond loopback (Redis's
    protected mode), unless anonymous access was asked for."""
    if config.auth.keys or config.auth.allow_anonymous or is_loopback(config.server.host):
        return None
    return (f"ollama-openai-proxy: refusing to listen on {config.server.host} with no API keys: add one "
            "(python -m proxy keys new --id NAME, then paste its [[auth.keys]] table into the config) "
            "or set [auth] allow_anonymous = true")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["usage"]:  # python -m proxy usage …: read the store, serve nothing
        from .store.cli import main as usage_main

        return usage_main(argv[1:])
    if argv[:1] == ["keys"]:
        from .access.cli import keys_main

        return keys_main(argv[1:])
    args = parse_args(argv)
    try:
        config = configure(args)
    except ConfigError as exc:
        print(f"ollama-openai-proxy: config error: {exc}", file=sys.stderr)
        return 2
    refusal = protected_mode_refusal(config)
    if refusal is not None and not args.check_config:
        print(refusal, file=sys.stderr)
        return 2
    if args.check_config:
        from .checkconfig import describe  # only this path needs it

        print(describe(config, args.config))
        return 0
    if config.server.workers == 1:
        serve(config, args.config)
        return 0
    return supervise(config, args.config)


if __name__ == "__main__":
    sys.exit(main())
