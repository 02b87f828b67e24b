"""``proxy/upstream/admission.py``: bounds, the bounded queue and its time-out, fairness across models,
and that a slot always comes back — on success, on an exception, and on cancellation (even when
the cancellation lands in the same loop turn as the grant). Tasks are driven by events, never
by sleeping; a zero-delay ``settle`` only lets ready tasks run."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from proxy.config import AdmissionConfig
from proxy.errors import RateLimited
from proxy.upstream.admission import Admission


def admission(**kwargs: Any) -> Admission:
    return Admission(AdmissionConfig(**kwargs))


async def settle() -> None:
    """Let every ready task run until none is (no wall-clock waiting)."""
    for _ in range(20):
        await asyncio.sleep(0)


class Holder:
    """A request holding a slot until ``release`` is set; ``admitted`` once it holds one."""

    def __init__(self, gate: Admission, model: str, log: list[str] | None = None) -> None:
        self.admitted = asyncio.Event()
        self.release = asyncio.Event()
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run(gate, model, log))

    async def _run(self, gate: Admission, model: str, log: list[str] | None) -> None:
        try:
            async with gate.slot(model):
                if log is not None:
                    log.append(model)
                self.admitted.set()
                await self.release.wait()
        except RateLimited as exc:
            self.error = exc

    async def done(self) -> None:
        self.release.set()
        await self.task


async def test_a_free_slot_is_taken_at_once_and_given_back() -> None:
    gate = admission(max_concurrent=2)
    async with gate.slot("llama3"):
        assert (gate.active, gate.by_model) == (1, {"llama3:latest": 1})
    assert (gate.active, gate.by_model, gate.waiting) == (0, {}, 0)


async def test_beyond_the_global_bound_a_request_waits_for_a_release() -> None:
    gate = admission(max_concurrent=2)
    first, second = Holder(gate, "a"), Holder(gate, "b")
    await settle()
    third = Holder(gate, "c")
    await settle()
    assert not third.admitted.is_set() and gate.waiting == 1
    await first.done()
    await third.admitted.wait()
    assert gate.active == 2 and gate.waiting == 0
    await second.done()
    await third.done()
    assert gate.active == 0


async def test_a_full_queue_answers_429_with_retry_after() -> None:
    gate = admission(max_concurrent=1, max_queue=1, retry_after=7)
    holder, queued = Holder(gate, "a"), None
    await settle()
    queued = Holder(gate, "a")
    await settle()
    with pytest.raises(RateLimited) as caught:
        async with gate.slot("a"):
            pass
    assert caught.value.status == 429 and caught.value.retry_after == 7
    assert "queue of 1 is full" in caught.value.message
    await holder.done()
    await queued.done()
    assert (gate.active, gate.waiting) == (0, 0)


async def test_no_queue_means_429_at_once() -> None:
    gate = admission(max_concurrent=1, max_queue=0)
    holder = Holder(gate, "a")
    await settle()
    with pytest.raises(RateLimited):
        async with gate.slot("b"):
            pass
    await holder.done()


async def test_the_queue_time_out_answers_429_and_leaves_nothing_behind() -> None:
    gate = admission(max_concurrent=1, queue_timeout=0.01)
    holder = Holder(gate, "a")
    await settle()
    with pytest.raises(RateLimited) as caught:
        async with gate.slot("a"):
            pass
    assert "within 0.01 s" in caught.value.message and caught.value.retry_after == 1
    assert gate.waiting == 0
    await holder.done()
    assert gate.active == 0


async def test_a_model_at_its_bound_does_not_block_other_models() -> None:
    gate = admission(max_concurrent=10, max_concurrent_per_model=1)
    busy = Holder(gate, "qwen3:8b")
    await settle()
    blocked = Holder(gate, "qwen3:8b")
    await settle()
    other = Holder(gate, "llama3")
    await other.admitted.wait()  # no head-of-line blocking behind the queued qwen request
    assert not blocked.admitted.is_set()
    await busy.done()
    await blocked.admitted.wait()
    await blocked.done()
    await other.done()
    assert (gate.active, gate.by_model) == (0, {})


async def test_model_names_share_a_bound_in_their_canonical_form() -> None:
    gate = admission(max_concurrent_per_model=1)
    holder = Holder(gate, "llama3")
    await settle()
    same = Holder(gate, "LLaMA3:latest")
    await settle()
    assert not same.admitted.is_set()
    await holder.done()
    await same.done()


async def test_glob_bounds_take_the_first_matching_pattern() -> None:
    gate = admission(max_concurrent_per_model=5, models={"*:70b": 1, "llama3*": 3})
    assert [gate.bound(m) for m in ("llama3:70b", "llama3:8b", "qwen3:8b")] == [1, 3, 5]


async def test_waiters_are_served_first_come_first_served() -> None:
    gate = admission(max_concurrent=1)
    order: list[str] = []
    first = Holder(gate, "m0", order)
    await settle()
    waiters = [Holder(gate, f"m{i}", order) for i in range(1, 6)]
    await settle()
    await first.done()
    for waiter in waiters:
        await waiter.admitted.wait()
        await waiter.done()
    assert order == [f"m{i}" for i in range(6)]


async def test_an_exception_inside_the_block_gives_the_slot_back() -> None:
    gate = admission(max_concurrent=1)
    with pytest.raises(RuntimeError):
        async with gate.slot("a"):
            raise RuntimeError("the answer failed")
    assert gate.active == 0


async def test_a_waiter_cancelled_by_its_client_leaves_the_queue() -> None:
    gate = admission(max_concurrent=1)
    holder = Holder(gate, "a")
    await settle()
    waiter = Holder(gate, "a")
    await settle()
    assert gate.waiting == 1
    waiter.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter.task
    assert gate.waiting == 0
    await holder.done()
    assert (gate.active, gate.by_model) == (0, {})


async def test_a_cancellation_in_the_same_turn_as_the_grant_hands_the_slot_on() -> None:
    gate = admission(max_concurrent=1)
    holder = Holder(gate, "a")
    await settle()
    unlucky, next_in_line = Holder(gate, "a"), Holder(gate, "a")
    await settle()
    holder.release.set()
    await holder.task  # the release granted the slot to ``unlucky``, which has not run yet
    unlucky.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await unlucky.task
    await next_in_line.admitted.wait()
    await next_in_line.done()
    assert (gate.active, gate.waiting, gate.by_model) == (0, 0, {})


async def test_a_cancelled_holder_gives_its_slot_back() -> None:
    gate = admission(max_concurrent=1)
    holder = Holder(gate, "a")
    await holder.admitted.wait()
    holder.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder.task
    assert gate.active == 0


async def test_unbounded_by_default_per_model_and_zero_means_no_global_bound() -> None:
    gate = admission(max_concurrent=0)
    holders = [Holder(gate, "same") for _ in range(100)]
    await settle()
    assert all(h.admitted.is_set() for h in holders) and gate.active == 100
    for h in holders:
        await h.done()


@pytest.mark.parametrize("seed", range(5))
async def test_random_schedules_keep_every_bound_and_end_empty(seed: int) -> None:
    rng = random.Random(seed)
    gate = admission(max_concurrent=4, max_concurrent_per_model=2, max_queue=6, queue_timeout=5)
    models = ["a", "b", "c"]
    holders: list[Holder] = []
    everyone: list[Holder] = []
    for _ in range(60):
        if rng.random() < 0.6 or not holders:
            holders.append(Holder(gate, rng.choice(models)))
            everyone.append(holders[-1])
        else:
            victim = holders.pop(rng.randrange(len(holders)))
            if rng.random() < 0.3:
                victim.task.cancel()
            victim.release.set()
        await settle()
        assert gate.active <= 4 and all(n <= 2 for n in gate.by_model.values())
        assert gate.waiting <= 6
    for h in holders:
        h.release.set()
    await asyncio.gather(*(h.task for h in everyone), return_exceptions=True)
    await settle()
    assert (gate.active, gate.waiting, gate.by_model) == (0, 0, {})
