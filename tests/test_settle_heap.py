"""``server.settle_heap``: once started, start-up's objects leave the collector's sight and the
young threshold is raised (the measured reason is in docs/performance.md)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from aiohttp import web

from proxy.server import YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def test_start_up_objects_are_frozen_and_the_young_threshold_raised(restored_gc: None) -> None:
    built_at_start_up = [{"table": i} for i in range(100)]
    middle, old = gc.get_threshold()[1:]
    await settle_heap(web.Application())
    assert gc.get_freeze_count() >= len(built_at_start_up)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert YOUNG_THRESHOLD > 700  # CPython's default, which the change is about
