"""The Batch API end to end with the official SDK (``client.files.*``, ``client.batches.*``):
the real app on a real port (its runner sends each line back to it over loopback), the stand-in
Ollama behind it, the store in a SQLite file. Polling waits for a state the app signals no event
for (a batch's status); nothing asserts wall-clock time."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.access.keys import hash_key, new_key
from proxy.app import create_app
from proxy.jobs.secret import BATCH_HEADER
from tests.conftest import make_config
from tests.fake_ollama import FakeOllama, Reply
from tests.integration.test_cli import ROOT, free_port, wait_until_listening
from tests.integration.test_sharing import HeldOllama

A, B = new_key(), new_key()
KEYS = {"auth": {"keys": [{"id": "a", "sha256": hash_key(A)}, {"id": "b", "sha256": hash_key(B)}]}}
BOUND = 30.0
Start = Callable[..., Awaitable[tuple[str, web.Application]]]


def merged(*tables: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for table in tables:
        for key, value in table.items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


@pytest.fixture
async def batch_proxy(tmp_path: Path, fake_ollama: FakeOllama) -> AsyncIterator[Start]:
    """A proxy on a port it knows (its runner calls it back there), with a SQLite store."""
    servers: list[TestServer] = []

    async def start(toml: dict[str, Any] | None = None, upstream: str | None = None) -> tuple[str, web.Application]:
        port = free_port()
        base = {"server": {"port": port}, "store": {"enabled": True, "url": f"sqlite:///{tmp_path}/store.db"},
                "batches": {"poll_interval": 0.05, "concurrency": 1}}
        app = create_app(make_config(upstream or fake_ollama.url, merged(KEYS, base, toml or {})))
        server = TestServer(app, port=port)
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{port}", app

    yield start
    for server in servers:
        await server.close()


def jsonl(*items: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


def chat_line(custom_id: str, content: str = "hi", url: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": "llama3.2", "messages": [{"role": "user", "content": content}]}}


async def finished(client: openai.AsyncOpenAI, batch_id: str, *statuses: str) -> Any:
    """Poll the batch until it reaches one of ``statuses``."""
    async with asyncio.timeout(BOUND):
        while True:
            batch = await client.batches.retrieve(batch_id)
            if batch.status in (statuses or ("completed", "failed", "expired", "cancelled")):
                return batch
            await asyncio.sleep(0.05)


async def lines_of(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    content = await client.files.content(file_id)
    return [orjson.loads(line) for line in content.content.splitlines()]


async def test_a_batch_runs_to_completed_with_output_and_error_files(batch_proxy: Start,
                                                                    fake_ollama: FakeOllama) -> None:
    url, _ = await batch_proxy()
    fake_ollama.push(Reply(content="one"), Reply(status=500, error="boom"), Reply(content="three"))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=A, max_retries=0) as client:
        upload = await client.files.create(file=("input.jsonl", io.BytesIO(jsonl(
            chat_line("c1", "first"), chat_line("c2", "second"), chat_line("bad-url", url="/v1/embeddings"),
            chat_line("c3", "third")))), purpose="batch")
        assert (upload.object, upload.purpose, upload.filename) == ("file", "batch", "input.jsonl")
        batch = await client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                            completion_window="24h", metadata={"run": "nightly"})
        assert batch.status == "validating" and batch.metadata == {"run": "nightly"}
        done = await finished(client, batch.id)
        assert done.status == "completed" and done.completed_at and done.in_progress_at
        assert done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 2, 2)
        output = await lines_of(client, done.output_file_id)
        errors = await lines_of(client, done.error_file_id)
        listed = [f.id async for f in client.files.list()]
        page = await client.batches.list(limit=1)
        usage = {flag: (await client.get("/organization/usage/completions", cast_to=object, options={"params": {
            "start_time": done.created_at - 3600, "group_by": "batch", "batch": flag}}))["data"]  # type: ignore[index]
            for flag in ("true", "false")}
    batch_results = [r for bucket in usage["true"] for r in bucket["results"]]
    assert [r["batch"] for r in batch_results] == [True] and batch_results[0]["num_model_requests"] == 3
    assert [r for bucket in usage["false"] for r in bucket["results"]] == []  # no live request was sent
    assert {o["custom_id"]: o["response"]["body"]["choices"][0]["message"]["content"] for o in output} == {
        "c1": "one", "c3": "three"}
    assert all(o["response"]["status_code"] == 200 and o["id"].startswith("batch_req_") for o in output)
    assert {e["custom_id"]: e["response"]["status_code"] for e in errors} == {"bad-url": 400, "c2": 502}  # as live
    assert {upload.id, done.output_file_id, done.error_file_id} <= set(listed)
    assert [b.id for b in page.data] == [batch.id]


async def test_a_key_sees_only_its_own_files_and_batches(batch_proxy: Start) -> None:
    url, _ = await batch_proxy()
    async with (openai.AsyncOpenAI(base_url=url + "/v1", api_key=A, max_retries=0) as a,
                openai.AsyncOpenAI(base_url=url + "/v1", api_key=B, max_retries=0) as b):
        upload = await a.files.create(file=("in.jsonl", io.BytesIO(jsonl(chat_line("x")))), purpose="batch")
        batch = await a.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                       completion_window="24h")
        for call in (b.files.retrieve(upload.id), b.files.content(upload.id), b.files.delete(upload.id),
                     b.batches.retrieve(batch.id), b.batches.cancel(batch.id),
                     b.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")):
            with pytest.raises(openai.NotFoundError):
                await call
        assert [f async for f in b.files.list()] == [] and [x async for x in b.batches.list()] == []
        await finished(a, batch.id)
        assert (await a.files.delete(upload.id)).deleted


async def test_bad_uploads_and_batches_are_400s(batch_proxy: Start) -> None:
    url, _ = await batch_proxy()
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=A, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.files.create(file=("x.jsonl", io.BytesIO(b"{}")), purpose="assistants")
        assert caught.value.body["param"] == "purpose"  # type: ignore[index]
        upload = await client.files.create(file=("x.jsonl", io.BytesIO(b"not json\n")), purpose="batch")
        with pytest.raises(openai.BadRequestError):
            await client.batches.create(input_file_id=upload.id, endpoint="/v1/moderations",  # type: ignore[arg-type]
                                        completion_window="24h")
        failed = await client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                             completion_window="24h")
        assert failed.status == "failed" and failed.errors is not None and failed.errors.data
        assert failed.errors.data[0].code == "invalid_json_line" and failed.errors.data[0].line == 1


async def test_without_the_store_the_batch_api_says_so(app_factory: Any) -> None:
    url, _ = await app_factory({})
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        for call in (client.batches.list(), client.files.list()):
            with pytest.raises(openai.BadRequestError) as caught:
                await call
            assert "[store] enabled = true" in caught.value.message


async def test_a_forged_runner_header_is_refused(batch_proxy: Start) -> None:
    url, _ = await batch_proxy()
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0,
                                  default_headers={BATCH_HEADER: "guess batch_1 a"}) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "x"}])


@pytest.fixture
async def held() -> AsyncIterator[HeldOllama]:
    fake = HeldOllama()
    await fake.start()
    yield fake
    await fake.stop()


async def test_cancel_keeps_what_finished_and_reports_the_rest(batch_proxy: Start, held: HeldOllama) -> None:
    url, _ = await batch_proxy(upstream=held.url)
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=A, max_retries=0) as client:
        upload = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl(*(chat_line(f"c{i}", f"c{i}")
                                                                                for i in range(4))))), purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                            completion_window="24h")
        await asyncio.wait_for(held.changed.wait(), BOUND)
        held.changed.clear()
        held.release("c0")  # the first line finishes
        await asyncio.wait_for(held.changed.wait(), BOUND)  # the second is at Ollama
        cancelling = await client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
        done = await finished(client, batch.id)
        held.open = True
        for gate in held.held.values():
            gate.set()
        assert done.status == "cancelled" and done.cancelled_at
        output = await lines_of(client, done.output_file_id)
        errors = await lines_of(client, done.error_file_id)
        with pytest.raises(openai.BadRequestError):
            await (await _completed_batch(client)).cancel()
    assert [o["custom_id"] for o in output] == ["c0"]
    assert sorted(e["custom_id"] for e in errors) == ["c1", "c2", "c3"]
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}


async def _completed_batch(client: openai.AsyncOpenAI) -> Any:
    """A handle whose cancel() tries to cancel a finished batch (400)."""
    batches = [b async for b in client.batches.list()]
    done = next(b for b in batches if b.status == "cancelled")

    class Handle:
        async def cancel(self) -> Any:
            return await client.batches.cancel(done.id) if done.status != "cancelled" else await _refuse(client)

    return Handle()


async def _refuse(client: openai.AsyncOpenAI) -> Any:
    upload = await client.files.create(file=("in.jsonl", io.BytesIO(b"bad\n")), purpose="batch")
    failed = await client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                         completion_window="24h")
    return await client.batches.cancel(failed.id)  # failed: not cancellable


async def test_past_its_window_a_batch_expires_with_the_rest_in_the_error_file(batch_proxy: Start,
                                                                               held: HeldOllama) -> None:
    url, _ = await batch_proxy({"batches": {"window": 1.0}}, upstream=held.url)
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=A, max_retries=0) as client:
        upload = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl(chat_line("c0", "c0"),
                                                                               chat_line("c1", "c1")))), purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                            completion_window="24h")
        await asyncio.wait_for(held.changed.wait(), BOUND)
        held.release("c0")
        done = await finished(client, batch.id)
        held.open = True
        for gate in held.held.values():
            gate.set()
        output = await lines_of(client, done.output_file_id)
        errors = await lines_of(client, done.error_file_id)
    assert done.status == "expired" and done.expired_at
    assert [o["custom_id"] for o in output] == ["c0"]
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [("c1", "batch_expired")]


async def test_batch_lines_wait_behind_live_requests(batch_proxy: Start, held: HeldOllama) -> None:
    """With the one slot busy, a batch line queued first still goes after a live request."""
    url, app = await batch_proxy({"admission": {"max_concurrent": 1}}, upstream=held.url)
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=A, max_retries=0) as client:
        blocker = asyncio.create_task(client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "blocker"}]))
        await asyncio.wait_for(held.changed.wait(), BOUND)
        upload = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl(chat_line("line", "line")))),
                                           purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                            completion_window="24h")
        from proxy.appkeys import ADMISSION

        admission = app[ADMISSION]
        async with asyncio.timeout(BOUND):
            while admission.waiting < 1:  # the batch line is queued (low)
                await asyncio.sleep(0.01)
        live = asyncio.create_task(client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "live"}]))
        async with asyncio.timeout(BOUND):
            while admission.waiting < 2:
                await asyncio.sleep(0.01)
        held.changed.clear()
        held.release("blocker")
        await asyncio.wait_for(held.changed.wait(), BOUND)
        assert held.arrived == ["blocker", "live"]
        held.open = True
        for gate in held.held.values():
            gate.set()
        await asyncio.gather(blocker, live)
        done = await finished(client, batch.id)
    assert done.status == "completed" and held.arrived == ["blocker", "live", "line"]


# ---- a real process, killed mid-batch -------------------------------------------------------------

class CountingOllama(FakeOllama):
    """Answers each chat with its prompt, after ``gate`` opens; counts runs per prompt."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, int] = {}
        self.gate = asyncio.Event()
        self.arrived = asyncio.Event()
        self.free = 0  # answers let through without waiting for the gate

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        tag = (await request.json())["messages"][-1]["content"]
        self.runs[tag] = self.runs.get(tag, 0) + 1
        self.arrived.set()
        if self.free > 0:
            self.free -= 1
        else:
            await self.gate.wait()
        self.push(Reply(content=f"answer {tag}"))
        return await super()._complete(request)


def write_config(path: Path, port: int, store: str, **batches: Any) -> None:
    keys = "".join(f'[[auth.keys]]\nid = "{i}"\nsha256 = "{hash_key(k)}"\n' for i, k in (("a", A), ("b", B)))
    extra = "".join(f"{k} = {v}\n" for k, v in batches.items())
    path.write_text(f'[server]\nport = {port}\n[store]\nenabled = true\nurl = "{store}"\n'
                    f'[batches]\npoll_interval = 0.05\nconcurrency = 2\n{extra}{keys}')


async def start_proxy(config: Path, port: int, upstream: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--config", str(config), cwd=ROOT,
        env={**os.environ, "OLLAMA_BASE_URL": upstream}, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    await wait_until_listening(port, process)
    return process


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


@pytest.fixture
async def counting() -> AsyncIterator[CountingOllama]:
    fake = CountingOllama()
    await fake.start()
    yield fake
    await fake.stop()


async def test_kill_9_mid_batch_resumes_and_every_custom_id_is_answered_once(tmp_path: Path,
                                                                             counting: CountingOllama) -> None:
    port = free_port()
    config = tmp_path / "proxy.toml"
    write_config(config, port, f"sqlite:///{tmp_path}/store.db", lease=1.0)
    ids = [f"c{i}" for i in range(12)]
    counting.free = 5  # five lines are answered, then two hang at Ollama when the proxy dies
    process = await start_proxy(config, port, counting.url)
    try:
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=A, max_retries=0) as client:
            upload = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl(*(chat_line(i, i) for i in ids)))),
                                               purpose="batch")
            batch = await client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                                completion_window="24h")
            async with asyncio.timeout(BOUND):
                while sum(counting.runs.values()) < 7:  # five answered, two in flight
                    await asyncio.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            in_flight = sum(counting.runs.values())
            counting.gate.set()  # Ollama now answers everything at once
            process = await start_proxy(config, port, counting.url)
            done = await finished(client, batch.id)
            output = await lines_of(client, done.output_file_id)
    finally:
        await stop(process)
    assert done.status == "completed" and done.request_counts is not None
    assert done.request_counts.completed == 12 and not done.error_file_id
    assert sorted(o["custom_id"] for o in output) == sorted(ids)  # each exactly once
    assert {o["custom_id"]: o["response"]["body"]["choices"][0]["message"]["content"] for o in output} == {
        i: f"answer {i}" for i in ids}
    assert in_flight == 7 and sum(counting.runs.values()) >= 12  # a line in flight at the kill may run twice


async def test_two_replicas_on_one_postgres_split_a_batch_with_no_line_done_twice(
        tmp_path: Path, counting: CountingOllama, postgres_server: str) -> None:
    from tests.pg import reset_postgres

    reset_postgres(postgres_server)
    ports = [free_port(), free_port()]
    configs = []
    for n, port in enumerate(ports):
        configs.append(tmp_path / f"replica{n}.toml")
        write_config(configs[-1], port, postgres_server, lease=30.0)
    ids = [f"c{i}" for i in range(40)]
    processes = [await start_proxy(c, p, counting.url) for c, p in zip(configs, ports, strict=True)]
    try:
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{ports[0]}/v1", api_key=A,
                                      max_retries=0) as client:
            upload = await client.files.create(file=("in.jsonl", io.BytesIO(jsonl(*(chat_line(i, i) for i in ids)))),
                                               purpose="batch")
            batch = await client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                                completion_window="24h")
            async with asyncio.timeout(BOUND):  # 4 at Ollama at once: each replica runs at most 2
                while sum(counting.runs.values()) < 4:
                    await asyncio.sleep(0.01)
            counting.gate.set()
            done = await finished(client, batch.id)
            output = await lines_of(client, done.output_file_id)
    finally:
        for process in processes:
            await stop(process)
    assert done.status == "completed"
    assert sorted(o["custom_id"] for o in output) == sorted(ids)
    assert counting.runs == dict.fromkeys(ids, 1)  # no line ran twice: each was claimed by one replica
