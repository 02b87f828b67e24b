"""Command line: ``python -m proxy [--config PATH] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from . import __version__
from .app import create_app
from .config import Config, ConfigError, load_config

__all__ = ["main"]

log = logging.getLogger("proxy")

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs rid=%{X-Request-Id}o'


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ollama-openai-proxy",
        description="Serve the OpenAI API in front of an Ollama server.",
    )
    parser.add_argument("--config", metavar="PATH", help="TOML config file (default: built-in defaults)")
    parser.add_argument("--host", help="address to listen on (overrides server.host)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides server.port)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def configure(args: argparse.Namespace) -> Config:
    """The effective config: file (or defaults), then env, then command-line flags."""
    config = load_config(args.config)
    server = config.server
    if args.host is not None:
        server = dataclasses.replace(server, host=args.host)
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port: must be a port number (0-65535), got {args.port}")
        server = dataclasses.replace(server, port=args.port)
    return dataclasses.replace(config, server=server)


def install_uvloop() -> bool:
    """Use uvloop when it is installed (the optional ``uvloop`` extra)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = configure(args)
    except ConfigError as exc:
        print(f"ollama-openai-proxy: config error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log.level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvloop = install_uvloop()
    log.info(
        "serving on http://%s:%d, upstream %s%s",
        config.server.host, config.server.port, config.upstream.base_url, " (uvloop)" if uvloop else "",
    )
    web.run_app(
        create_app(config),
        host=config.server.host,
        port=config.server.port,
        handler_cancellation=True,
        access_log_format=ACCESS_LOG_FORMAT,
        print=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
