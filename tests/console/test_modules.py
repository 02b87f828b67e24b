"""The console's pure JavaScript functions, run in the page they ship in (headless Chromium).

Each case imports the module the console serves and compares what a function returns with the
expected value, table-driven like the Python tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from tests.conftest import ProxyFactory

# (module, expression using `m`, expected JSON value)
CASES: list[tuple[str, str, Any]] = [
    # sse.js: events split anywhere, CRLF, multi-line data, comments, [DONE]
    ("sse.js", "(() => { const p = new m.SseParser(); return [...p.push('data: {\"a\"'), ...p.push(':1}\\n'), ...p.push('\\ndata: [DONE]\\n\\n')]; })()",
     ['{"a":1}', "[DONE]"]),
    ("sse.js", "new m.SseParser().push(': keep-alive\\r\\ndata: x\\r\\ndata: y\\r\\n\\r\\n')", ["x\ny"]),
    ("sse.js", "(() => { const p = new m.SseParser(); return [...p.push('data:z\\r'), ...p.push('\\n\\r\\n')]; })()", ["z"]),
    ("sse.js", "new m.SseParser().push('data: partial')", []),
    # format.js
    ("format.js", "[m.compact(0), m.compact(999), m.compact(1234), m.compact(2500000), m.compact(1e9)]",
     ["0", "999", "1.23k", "2.5M", "1G"]),
    ("format.js", "[m.bytes(512), m.bytes(2019393189), m.bytes(1536)]", ["512 B", "1.9 GiB", "1.5 KiB"]),
    ("format.js", "[m.until('2026-01-01T00:05:00Z', Date.parse('2026-01-01T00:00:00Z')), m.until('2025-01-01T00:00:00Z'), m.until('nope')]",
     ["in 5 min", "expired", "unknown"]),
    ("format.js", "m.toCsv([['a', 'b,c'], ['say \"hi\"', null], ['line\\nbreak', 3]])",
     'a,"b,c"\r\n"say ""hi""",\r\n"line\nbreak",3\r\n'),
    ("format.js", "[m.bucketLabel(1764460800, '1d'), m.bucketLabel(1764460800 + 14 * 3600, '1h'), m.dayStart('2025-11-30')]",
     ["2025-11-30", "11-30 14:00", 1764460800]),
    # chart.js: round tick steps
    ("chart.js", "[m.niceStep(0), m.niceStep(3), m.niceStep(300), m.niceStep(1234), m.niceStep(9e6)]",
     [1, 1, 100, 500, 5000000]),
    # usage.js: every bucket of the range, series per model and key, rows for CSV
    ("usage.js", """(() => {
        const d = 86400, s = 1764460800;
        const r = (model, key, i, o, n) => ({input_tokens: i, output_tokens: o, num_model_requests: n, model, api_key_id: key});
        const a = m.aggregate([
          {start_time: s, end_time: s + d, results: [r('a', 'k1', 10, 5, 1), r('b', 'k2', 1, 1, 2)]},
          {start_time: s + 2 * d, end_time: s + 3 * d, results: [r('a', 'k1', 100, 0, 3)]},
        ], s, s + 3 * d, '1d');
        return [a.labels, a.tokens, a.requests, a.keys, a.rows.length];
      })()""",
     [["2025-11-30", "2025-12-01", "2025-12-02"],
      [{"name": "a", "values": [15, 0, 100]}, {"name": "b", "values": [2, 0, 0]}],
      [{"name": "a", "values": [1, 0, 3]}, {"name": "b", "values": [2, 0, 0]}],
      [{"name": "k1", "values": [15, 0, 100]}, {"name": "k2", "values": [2, 0, 0]}], 3]),
    ("usage.js", "m.aggregate([{start_time: 0, results: [{input_tokens: 4, num_model_requests: 1, model: null, api_key_id: null}]}], 0, 86400, '1d').tokens",
     [{"name": "(all models)", "values": [4]}]),
    # health.js: today's single-server body, a pool, camelCase keys, a down server
    ("health.js", "m.serversOf({status: 'ok', ollama: {reachable: true, version: '0.12.6', latency_ms: 1.5}})",
     [{"name": "ollama", "url": None, "reachable": True, "version": "0.12.6", "latency": 1.5,
       "reason": None, "models": None, "inFlight": None, "ejectedFor": None, "modelCount": None, "failures": None}]),
    ("health.js", "m.serversOf({status: 'unavailable', reason: 'refused', ollama: {reachable: false, latencyMs: 2}})",
     [{"name": "ollama", "url": None, "reachable": False, "version": None, "latency": 2,
       "reason": "refused", "models": None, "inFlight": None, "ejectedFor": None, "modelCount": None, "failures": None}]),
    ("health.js", """m.serversOf({status: 'degraded', servers: [
        {name: 'gpu-a', url: 'http://a:11434', reachable: true, version: '0.12.6', latency_ms: 3,
         models: [{name: 'qwen3:8b', size: 100, size_vram: 80, expires_at: '2030-01-01T00:00:00Z'}]},
        {name: 'gpu-b', reachable: false, error: 'timeout', models: []}]})""",
     [{"name": "gpu-a", "url": "http://a:11434", "reachable": True, "version": "0.12.6", "latency": 3,
       "reason": None, "models": [{"name": "qwen3:8b", "size": 100, "vram": 80, "expires": "2030-01-01T00:00:00Z"}],
       "inFlight": None, "ejectedFor": None, "modelCount": None, "failures": None},
      {"name": "gpu-b", "url": None, "reachable": False, "version": None, "latency": None,
       "reason": "timeout", "models": [], "inFlight": None, "ejectedFor": None, "modelCount": None, "failures": None}]),
    # the pool's body as merged from issue 12 (upstreams, loaded, models as a count)
    ("health.js", """m.serversOf({status: 'ok', upstreams: [{name: 'http://gpu-a:11434', reachable: true,
        eligible: true, version: '0.12.6', latency_ms: 2.5, error: null, in_flight: 3,
        consecutive_failures: 0, ejected_for_s: null, models: 4,
        loaded: [{model: 'qwen3:8b', size: 6000, size_vram: 3000, expires_at: 'z'}]},
        {name: 'http://gpu-b:11434', reachable: false, eligible: false, version: null, latency_ms: null,
        error: 'connection refused', in_flight: 0, consecutive_failures: 4, ejected_for_s: 12.5, models: null,
        loaded: []}]})""",
     [{"name": "http://gpu-a:11434", "url": None, "reachable": True, "version": "0.12.6", "latency": 2.5,
       "reason": None, "models": [{"name": "qwen3:8b", "size": 6000, "vram": 3000, "expires": "z"}],
       "inFlight": 3, "ejectedFor": None, "modelCount": 4, "failures": 0},
      {"name": "http://gpu-b:11434", "url": None, "reachable": False, "version": None, "latency": None,
       "reason": "connection refused", "models": [], "inFlight": 0, "ejectedFor": 12.5, "modelCount": None, "failures": 4}]),
    ("health.js", "m.serversOf({servers: [{name: 'x', reachable: true, models: [{model: 'm', size: 4, sizeVram: 4, expiresAt: 'z'}]}]})[0].models",
     [{"name": "m", "size": 4, "vram": 4, "expires": "z"}]),
    # /metrics as prometheus-client writes it (values as floats, HELP and TYPE lines)
    ("health.js", """m.proxyLoad(m.parseMetrics([
        '# HELP ollama_proxy_requests_in_flight Requests holding an admission slot, by model.',
        '# TYPE ollama_proxy_requests_in_flight gauge',
        'ollama_proxy_requests_in_flight{model="qwen3:8b"} 2.0',
        'ollama_proxy_requests_in_flight{model="a\\\\"b"} 0.0',
        '# TYPE ollama_proxy_admission_waiting gauge',
        'ollama_proxy_admission_waiting 4.0', 'other_metric 9', ''].join('\\n')))""",
     {"inFlight": 2, "perModel": [["qwen3:8b", 2]], "waiting": 4}),
    # nothing in flight: the family is declared with no sample, which is 0, not unknown
    ("health.js", """m.proxyLoad(m.parseMetrics([
        '# HELP ollama_proxy_requests_in_flight Requests holding an admission slot, by model.',
        '# TYPE ollama_proxy_requests_in_flight gauge',
        '# HELP ollama_proxy_admission_waiting Requests queued for an admission slot.',
        '# TYPE ollama_proxy_admission_waiting gauge', 'ollama_proxy_admission_waiting 0.0', ''].join('\\n')))""",
     {"inFlight": 0, "perModel": [], "waiting": 0}),
    ("health.js", "m.parseMetrics('# TYPE x_total counter\\nx_total{a=\"q\\\\\\\"\\\\\\\\\"} 3 1700000000\\n')",
     {"declared": ["x_total"], "samples": [{"name": "x_total", "labels": {"a": 'q"\\'}, "value": 3}]}),
    ("health.js", "m.proxyLoad(m.parseMetrics('process_cpu_seconds_total 1\\n'))",
     {"inFlight": None, "perModel": [], "waiting": None}),
    # chat.js: the request body, tool-call deltas, the stats line
    ("chat.js", """m.requestBody({model: 'x', system: 'sys', temperature: 0.5, maxTokens: 64, tools: null, store: true},
        [{role: 'user', content: 'look', images: ['data:image/png;base64,AA==']}])""",
     {"model": "x", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": [
         {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}],
      "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.5,
      "max_completion_tokens": 64, "store": True}),
    ("chat.js", "m.requestBody({model: 'x', system: '', temperature: null, maxTokens: null, tools: null, store: false}, [{role: 'user', content: 'hi', images: []}])",
     {"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": True,
      "stream_options": {"include_usage": True}}),
    ("chat.js", "m.requestBody({model: 'x', system: '', temperature: null, maxTokens: null, tools: null, store: false}, [{role: 'user', content: 'a'}, {role: 'assistant', content: '', tool_calls: [], error: 'boom'}, {role: 'user', content: 'b'}]).messages",
     [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
    ("chat.js", """m.mergeToolCalls([], [
        {index: 0, id: 'call_1', type: 'function', function: {name: 'get_weather', arguments: '{"ci'}},
        {index: 0, function: {arguments: 'ty": "Paris"}'}}])""",
     [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]),
    ("chat.js", "m.statsLine({sentAt: 0, firstAt: 200, doneAt: 1200, usage: {prompt_tokens: 5, completion_tokens: 11, total_tokens: 16}, stopped: false})",
     "first token 200 ms · 10.0 tokens/s · 5 prompt + 11 completion = 16 tokens"),
]


@pytest.fixture
async def blank(proxy_factory: ProxyFactory, page: Page) -> Page:
    """A page on the console's origin that has not started the console (no app.js)."""
    base = await proxy_factory()
    await page.goto(base + "/console/favicon.svg")
    return page


async def test_module_functions(blank: Page) -> None:
    failures = []
    for module, expression, expected in CASES:
        got = await blank.evaluate(
            f"async () => {{ const m = await import('/console/{module}'); return {expression}; }}")
        if got != expected:
            failures.append(f"{module}: {expression[:60]}…\n  got      {got!r}\n  expected {expected!r}")
    assert not failures, "\n".join(failures)
