"""OpenTelemetry: a SERVER span per request, a CLIENT span per call to Ollama with the GenAI
attributes, the caller's traceparent honoured and sent on. Checked with the SDK's in-memory
exporter on the real app, driven by the OpenAI SDK."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import openai
import pytest
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from proxy.app import create_app
from proxy.observe.tracing import SPAN_EXPORTER
from tests.conftest import make_config
from tests.fake_ollama import FakeOllama, Reply
from tests.integration.test_cli import ROOT

USER = [{"role": "user", "content": "hi"}]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
async def traced(fake_ollama: FakeOllama) -> AsyncIterator[tuple[str, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    app = create_app(make_config(fake_ollama.url, {"tracing": {"enabled": True}}))
    app[SPAN_EXPORTER] = exporter
    async with TestServer(app) as server:
        yield f"http://127.0.0.1:{server.port}", exporter


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == kind]


async def test_a_callers_trace_is_continued_and_sent_on_to_ollama(
    traced: tuple[str, InMemorySpanExporter], fake_ollama: FakeOllama
) -> None:
    url, exporter = traced
    fake_ollama.push(Reply(content="hello there", prompt_eval_count=7, eval_count=5, done_reason="length"))
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0,
                                  default_headers=headers) as sdk:
        await sdk.chat.completions.create(model="llama3.2", messages=USER)
    spans = exporter.get_finished_spans()
    [server] = by_kind(spans, SpanKind.SERVER)
    [client] = by_kind(spans, SpanKind.CLIENT)
    assert server.name == "POST /v1/chat/completions"
    assert f"{server.context.trace_id:032x}" == TRACE_ID and f"{server.parent.span_id:016x}" == PARENT_ID
    assert server.attributes["http.response.status_code"] == 200
    assert client.parent.span_id == server.context.span_id and client.context.trace_id == server.context.trace_id
    assert client.name == "chat llama3.2"
    assert {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "ollama", "gen_ai.request.model": "llama3.2",
        "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 5,
    }.items() <= dict(client.attributes).items()
    assert client.attributes["gen_ai.response.finish_reasons"] == ("length",)
    [sent] = [h for (path, _), h in zip(fake_ollama.requests, fake_ollama.headers) if path == "/api/chat"]
    assert sent["traceparent"] == f"00-{TRACE_ID}-{client.context.span_id:016x}-01"


async def test_a_stream_and_its_failure_are_spans_too(
    traced: tuple[str, InMemorySpanExporter], fake_ollama: FakeOllama
) -> None:
    url, exporter = traced
    fake_ollama.push(Reply(chunks=["a", "b", "c"], prompt_eval_count=3, eval_count=3),
                     Reply(status=500, error="boom"))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="llama3.2", messages=USER, stream=True)
        async for _ in stream:
            pass
        with pytest.raises(openai.InternalServerError):
            await sdk.completions.create(model="llama3.2", prompt="x")
    spans = exporter.get_finished_spans()
    servers = by_kind(spans, SpanKind.SERVER)
    streamed, failed = by_kind(spans, SpanKind.CLIENT)
    assert len({s.context.trace_id for s in servers}) == 2  # no traceparent: a new trace each
    assert streamed.name == "chat llama3.2" and streamed.attributes["gen_ai.usage.output_tokens"] == 3
    assert streamed.end_time is not None and streamed.end_time <= servers[0].end_time
    assert failed.status.status_code == StatusCode.ERROR and failed.attributes["http.response.status_code"] == 500
    assert failed.attributes["gen_ai.operation.name"] == "text_completion"
    assert servers[1].status.status_code == StatusCode.ERROR
    assert servers[1].attributes["http.response.status_code"] == 502


def test_off_by_default_and_not_even_imported() -> None:
    code = ("import sys; from proxy.app import create_app; from proxy.config import Config, build; "
            "create_app(Config()); assert 'opentelemetry' not in sys.modules, 'otel imported'; "
            "create_app(build(Config, {'metrics': {'enabled': False}}, '')); ")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    code = ("import sys; from proxy.app import create_app; from proxy.config import Config, build; "
            "create_app(build(Config, {'metrics': {'enabled': False}}, '')); "
            "assert 'prometheus_client' not in sys.modules, 'prometheus imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


async def test_spans_reach_an_otlp_collector(fake_ollama: FakeOllama) -> None:
    """The real exporter path: OTLP/HTTP protobuf to ``[tracing] endpoint``, flushed at shutdown."""
    from aiohttp import web
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[str] = []

    async def collect(request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        received.extend(span.name for rs in export.resource_spans for ss in rs.scope_spans for span in ss.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    collector = web.Application()
    collector.router.add_post("/v1/traces", collect)
    async with TestServer(collector) as otlp:
        config = {"tracing": {"enabled": True, "endpoint": f"http://127.0.0.1:{otlp.port}/v1/traces"}}
        app = create_app(make_config(fake_ollama.url, config))
        async with TestServer(app) as server:
            base = f"http://127.0.0.1:{server.port}/v1"
            async with openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as sdk:
                await sdk.chat.completions.create(model="llama3.2", messages=USER)
        # Leaving the proxy's server shut the provider down, which flushed the batch.
    assert sorted(received) == ["POST /v1/chat/completions", "chat llama3.2"]
