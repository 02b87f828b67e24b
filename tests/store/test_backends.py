"""The store's interface, run against SQLite and PostgreSQL alike (``store_url`` is both)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from proxy.store import ChatRecord, Store, StoreError, UsageRow, open_store
from proxy.store.migrations import STEPS

H = 1_700_000_000 // 3600 * 3600


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(store_url)
    yield s
    await s.close()


def chat(chat_id: str, key: str = "k1", created: int = 100, model: str = "m", **metadata: str) -> ChatRecord:
    return ChatRecord(chat_id, key, created, model, [{"role": "user", "content": chat_id}],
                      {"id": chat_id, "object": "chat.completion"}, dict(metadata))


async def test_migrating_twice_and_at_once_leaves_one_current_schema(store_url: str) -> None:
    opened = await asyncio.gather(*(open_store(store_url) for _ in range(3)))  # three "processes" at once
    again = await open_store(store_url)
    try:
        for s in [*opened, again]:
            assert await s.version() == len(STEPS)  # type: ignore[attr-defined]
        assert await again.fetch("SELECT count(*) FROM schema_version") == [(1,)]
    finally:
        for s in [*opened, again]:
            await s.close()


async def test_usage_rows_add_up_per_hour_key_model_endpoint(store: Store) -> None:
    await store.add_usage([UsageRow(H, "k1", "m", "chat.completions", 2, 1, 10, 20, 1.5),
                           UsageRow(H, "k2", "m", "chat.completions", 1, 0, 5, 5, 0.5)])
    await store.add_usage([UsageRow(H, "k1", "m", "chat.completions", 3, 0, 1, 2, 0.25),
                           UsageRow(H + 3600, "k1", "m", "embeddings", 1, 0, 7, 0, 0.1)])
    rows = await store.usage(H, H + 7200)
    assert rows == [UsageRow(H, "k1", "m", "chat.completions", 5, 1, 11, 22, 1.75),
                    UsageRow(H, "k2", "m", "chat.completions", 1, 0, 5, 5, 0.5),
                    UsageRow(H + 3600, "k1", "m", "embeddings", 1, 0, 7, 0, pytest.approx(0.1))]
    assert [r.key_id for r in await store.usage(H, H + 7200, "k2")] == ["k2"]
    assert await store.usage(H + 3600, H + 7200) == [rows[2]]  # end exclusive, start inclusive
    assert await store.usage(H - 3600, H) == []


async def test_stored_chat_roundtrip_is_per_key(store: Store) -> None:
    record = chat("c1", topic="a")
    await store.put_chats([record])
    assert await store.get_chat("c1", "k1") == record
    assert await store.get_chat("c1", "k2") is None  # another key's id does not exist for it
    assert await store.list_chats("k2") == []
    assert not await store.delete_chat("c1", "k2")
    assert not await store.update_chat_metadata("c1", "k2", {"x": "y"})
    assert await store.get_chat("c1", "k1") == record


async def test_list_orders_pages_and_filters(store: Store) -> None:
    await store.put_chats([chat("a", created=1, topic="x"), chat("b", created=2, model="n"),
                           chat("c", created=2, topic="x", lang="fr"), chat("d", created=3),
                           chat("z", key="k2", created=1)])
    ids = lambda rs: [r.id for r in rs]
    assert ids(await store.list_chats("k1")) == ["a", "b", "c", "d"]
    assert ids(await store.list_chats("k1", order="desc")) == ["d", "c", "b", "a"]
    assert ids(await store.list_chats("k1", limit=2)) == ["a", "b"]
    assert ids(await store.list_chats("k1", after="b", limit=2)) == ["c", "d"]  # same created: by id
    assert ids(await store.list_chats("k1", after="c", order="desc")) == ["b", "a"]
    assert ids(await store.list_chats("k1", after="z")) == []  # another key's id is no cursor
    assert ids(await store.list_chats("k1", model="n")) == ["b"]
    assert ids(await store.list_chats("k1", metadata={"topic": "x"})) == ["a", "c"]
    assert ids(await store.list_chats("k1", metadata={"topic": "x", "lang": "fr"})) == ["c"]
    assert ids(await store.list_chats("k1", metadata={"topic": "y"})) == []


async def test_update_replaces_metadata_and_its_filter(store: Store) -> None:
    await store.put_chats([chat("a", topic="x")])
    assert await store.update_chat_metadata("a", "k1", {"topic": "y", "n": "1"})
    found = await store.get_chat("a", "k1")
    assert found is not None and found.metadata == {"topic": "y", "n": "1"}
    assert [r.id for r in await store.list_chats("k1", metadata={"topic": "y"})] == ["a"]
    assert await store.list_chats("k1", metadata={"topic": "x"}) == []


async def test_delete_removes_the_record_and_its_metadata(store: Store) -> None:
    await store.put_chats([chat("a", topic="x")])
    assert await store.delete_chat("a", "k1")
    assert await store.get_chat("a", "k1") is None
    assert not await store.delete_chat("a", "k1")
    assert await store.fetch("SELECT count(*) FROM chat_metadata") == [(0,)]


async def test_a_replayed_batch_does_not_duplicate(store: Store) -> None:
    await store.put_chats([chat("a", topic="x")])
    await store.put_chats([chat("a", topic="x"), chat("b")])  # a retried flush after a lost commit answer
    assert [r.id for r in await store.list_chats("k1")] == ["a", "b"]
    assert [r.id for r in await store.list_chats("k1", metadata={"topic": "x"})] == ["a"]


async def test_responses_are_written_at_once_and_per_key(store: Store) -> None:
    data = {"id": "resp_1", "output": [{"type": "message", "content": "hi"}], "n": 1.5, "none": None}
    await store.put_response("resp_1", "k1", 100, data)
    assert await store.get_response("resp_1", "k1") == data
    assert await store.get_response("resp_1", "k2") is None
    await store.put_response("resp_1", "k2", 200, {"stolen": True})  # another key cannot overwrite
    assert await store.get_response("resp_1", "k1") == data
    await store.put_response("resp_1", "k1", 300, {"status": "completed"})  # its own key replaces
    assert await store.get_response("resp_1", "k1") == {"status": "completed"}
    assert not await store.delete_response("resp_1", "k2")
    assert await store.delete_response("resp_1", "k1")
    assert await store.get_response("resp_1", "k1") is None
    assert not await store.delete_response("resp_1", "k1")


async def test_retention_deletes_only_older_records(store: Store) -> None:
    await store.put_chats([chat("old", created=H - 1), chat("new", created=H)])
    await store.put_response("r_old", "k1", H - 1, {})
    await store.put_response("r_new", "k1", H, {})
    await store.add_usage([UsageRow(H - 3600, "k1", "m", "e", 1), UsageRow(H, "k1", "m", "e", 1)])
    await store.delete_before(H)
    assert [r.id for r in await store.list_chats("k1")] == ["new"]
    assert await store.get_response("r_old", "k1") is None and await store.get_response("r_new", "k1") == {}
    assert [r.hour for r in await store.usage(0, H + 3600)] == [H]


async def test_failures_are_store_errors(store_url: str) -> None:
    s = await open_store(store_url)
    with pytest.raises(StoreError):
        await s.fetch("SELECT nope FROM nowhere")
    await s.close()
    with pytest.raises(StoreError):
        await s.add_usage([UsageRow(H, "k", "m", "e", 1)])


async def test_processes_starting_together_migrate_once(store_url: str) -> None:
    """Real processes (as --workers N or replicas start), not just connections."""
    code = ("import asyncio, sys\nfrom proxy.store import open_store\n"
            "async def main():\n    s = await open_store(sys.argv[1])\n    await s.close()\n"
            "asyncio.run(main())\n")
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", code, store_url,
                                                  stderr=asyncio.subprocess.PIPE) for _ in range(4)]
    results = [(await p.wait(), (await p.stderr.read()).decode()[-300:]) for p in procs if p.stderr]
    assert [rc for rc, _ in results] == [0, 0, 0, 0], results
    s = await open_store(store_url)
    try:
        assert await s.fetch("SELECT version FROM schema_version") == [(len(STEPS),)]
    finally:
        await s.close()


async def test_transactions_from_many_coroutines_at_once_each_commit_whole(store: Store) -> None:
    # The batch runner, the usage flusher and stored completions write at the same time; on
    # SQLite they share one connection, where a second BEGIN inside the first used to fail.
    await store.execute("CREATE TABLE t (n BIGINT NOT NULL, part BIGINT NOT NULL)")
    await asyncio.gather(*[
        store.transaction([("INSERT INTO t (n, part) VALUES (?, ?)", (n, part)) for part in range(3)])
        for n in range(20)
    ], *[store.execute("INSERT INTO t (n, part) VALUES (?, ?)", 100 + n, 0) for n in range(5)])
    rows = await store.fetch("SELECT n, count(*) FROM t GROUP BY n ORDER BY n")
    assert rows == [(n, 3) for n in range(20)] + [(100 + n, 1) for n in range(5)]
