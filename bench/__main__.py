"""``python -m bench``: the one command that measures the proxy and the references together."""

from __future__ import annotations

from bench.run import main

if __name__ == "__main__":
    raise SystemExit(main())
