"""The multiprocess directory of a ``--workers N`` run: one per run, cleaned at start and stop.

prometheus-client's multiprocess mode keeps each worker's values in memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR``, and a scrape answered by any worker sums them all. The variable
must be set before a worker imports ``prometheus_client`` (it picks its value store at import),
so the supervisor sets it before spawning the workers, which inherit it. Files left by an earlier
run would be summed into this one's counters, hence the cleaning; a dead worker's live gauges
are removed when it exits, so they no longer count.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["MULTIPROC_ENV", "MultiprocDir"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class MultiprocDir:
    """The directory of one run: the operator's (``PROMETHEUS_MULTIPROC_DIR``, emptied of
    metric files) or a new temporary one (removed at the end)."""

    def __init__(self) -> None:
        given = os.environ.get(MULTIPROC_ENV)
        self.owned = not given
        self.path = Path(given) if given else Path(tempfile.mkdtemp(prefix="ollama-proxy-metrics-"))
        self.path.mkdir(parents=True, exist_ok=True)
        self.clean()
        os.environ[MULTIPROC_ENV] = str(self.path)  # inherited by the workers spawned next

    def clean(self) -> None:
        for file in self.path.glob("*.db"):
            file.unlink(missing_ok=True)

    def worker_exited(self, pid: int) -> None:
        """Drop a dead worker's live gauges (its counters stay: they happened)."""
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, str(self.path))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            self.clean()
