"""``MemoryResponseRecords``: what the Responses handler relies on of any records."""

from __future__ import annotations

import pytest

from proxy.store.records import MemoryResponseRecords, ResponseRecords


async def test_a_record_is_visible_only_to_its_key() -> None:
    records: ResponseRecords = MemoryResponseRecords()
    await records.put_response("resp_1", "alice", 1, {"response": {"id": "resp_1"}})
    assert await records.get_response("resp_1", "alice") == {"response": {"id": "resp_1"}}
    copy = await records.get_response("resp_1", "alice")
    assert copy is not None
    copy["response"]["id"] = "changed"  # a copy: the record stays as kept
    assert await records.get_response("resp_1", "alice") == {"response": {"id": "resp_1"}}
    assert await records.get_response("resp_1", "bob") is None
    assert await records.delete_response("resp_1", "bob") is False
    assert await records.get_response("resp_1", "alice") is not None
    assert await records.delete_response("resp_1", "alice") is True
    assert await records.get_response("resp_1", "alice") is None
    assert await records.delete_response("resp_1", "alice") is False


async def test_the_oldest_are_forgotten_beyond_the_bound() -> None:
    records = MemoryResponseRecords(max_entries=2)
    for n in range(3):
        await records.put_response(f"resp_{n}", "k", n, {"n": n})
    assert len(records) == 2
    assert await records.get_response("resp_0", "k") is None
    assert await records.get_response("resp_2", "k") == {"n": 2}


def test_mode_and_bound_are_checked() -> None:
    assert MemoryResponseRecords(mode="always").mode == "always"
    with pytest.raises(ValueError):
        MemoryResponseRecords(max_entries=0)
