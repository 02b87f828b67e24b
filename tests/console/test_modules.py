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
    ("chat.js", "m.figures({sentAt: 0, firstAt: null, doneAt: 50, usage: null})",
     {"firstTokenMs": None, "tokensPerSecond": None, "usage": None}),
    # markdown.js: blocks, inline, links
    ("markdown.js", "m.parseBlocks('# Title\\n\\npara one\\nline two\\n\\n- a\\n- b\\n  - c\\n\\n3. x\\n4. y\\n---\\n> q').map((b) => b.type)",
     ["heading", "paragraph", "list", "list", "hr", "quote"]),
    ("markdown.js", "m.parseBlocks('- a\\n- b\\n  - c')[0].items.map((i) => i.map((b) => b.type))",
     [["paragraph"], ["paragraph", "list"]]),
    ("markdown.js", "(({ordered, first, loose}) => [ordered, first, loose])(m.parseBlocks('3. x\\n\\n4. y')[0])", [True, 3, True]),
    ("markdown.js", "m.parseBlocks('| a | b | c |\\n|:--|:-:|--:|\\n| 1 | `x\\\\|y` |\\n').map(({type, align, head, rows}) => ({type, align, head, rows}))",
     [{"type": "table", "align": ["left", "center", "right"], "head": ["a", "b", "c"], "rows": [["1", "`x|y`", ""]]}]),
    ("markdown.js", "m.parseBlocks('```python title\\nprint(1)\\n\\n  x\\n```\\nafter').map(({type, lang, code, closed, text}) => ({type, lang, code, closed, text}))",
     [{"type": "code", "lang": "python", "code": "print(1)\n\n  x", "closed": True, "text": None},
      {"type": "paragraph", "lang": None, "code": None, "closed": None, "text": "after"}]),
    ("markdown.js", "m.parseBlocks('~~~\\nopen fence').map(({code, closed}) => [code, closed])", [["open fence", False]]),
    ("markdown.js", "m.parseBlocks('a\\n2. not a list\\n1. a list').map((b) => b.type)", ["paragraph", "list"]),
    ("markdown.js", "m.parseBlocks('one\\n\\n\\ntwo\\n').map((b) => [b.start, b.src])", [[0, "one\n"], [6, "two\n"]]),
    ("markdown.js", "m.parseInline('a **b** _c_ snake_case_name `x` ~~d~~ ***e***')",
     ["a ", {"type": "strong", "children": ["b"]}, " ", {"type": "em", "children": ["c"]}, " snake_case_name ",
      {"type": "code", "text": "x"}, " ", {"type": "del", "children": ["d"]}, " ",
      {"type": "strong", "children": [{"type": "em", "children": ["e"]}]}]),
    ("markdown.js", "m.parseInline('[ok](https://e.com/a_(b)) [no](javascript:alert(1)) [rel](/x) <mailto:a@b.c> see https://x.org/a.')",
     [{"type": "link", "href": "https://e.com/a_(b)", "children": ["ok"]}, " ", "[no](javascript:alert(1))", " ",
      "[rel](/x)", " ", {"type": "link", "href": "mailto:a@b.c", "children": ["mailto:a@b.c"]}, " see ",
      {"type": "link", "href": "https://x.org/a", "children": ["https://x.org/a"]}, "."]),
    ("markdown.js", "m.parseInline('<img src=x onerror=alert(1)> \\\\*no\\\\* ``a`b`` line\\nbreak')",
     ["<img src=x onerror=alert(1)> *no* ", {"type": "code", "text": "a`b"}, " line", {"type": "br"}, "break"]),
    ("markdown.js", "['https://a.b/c', 'HTTP://A.B', 'mailto:x@y.z', 'javascript:alert(1)', ' JaVaScRiPt:x', 'data:text/html,x', 'vbscript:x', '/rel', 'file:///etc/passwd'].map(m.safeUrl)",
     ["https://a.b/c", "http://a.b/", "mailto:x@y.z", None, None, None, None, None, None]),
    # the DOM: only safe tags and attributes, whatever the text says
    ("markdown.js", """(() => { const box = document.createElement('div');
        box.append(...m.renderMarkdown('<script>x</script> [a](https://e.com "t") **b**\\n\\n```js\\ncode()\\n```'));
        return [box.querySelector('p').textContent, box.querySelector('a').getAttribute('rel'),
          box.querySelector('a').getAttribute('target'), box.querySelector('pre code').className,
          box.querySelector('.code-head .lang').textContent, box.querySelectorAll('script').length]; })()""",
     ["<script>x</script> a b", "noopener noreferrer", "_blank", "language-js", "js", 0]),
    # streaming: the same DOM as one render, the first blocks kept (not rebuilt)
    ("markdown.js", """(() => { const text = '# T\\n\\npara *one*\\n\\n- a\\n- b\\n\\n| x | y |\\n|---|---|\\n| 1 | 2 |\\n\\n```py\\nprint(1)\\n```\\nend';
        const box = document.createElement('div'); const s = new m.StreamingMarkdown(box);
        let first = null;
        for (let i = 1; i <= text.length; i += 3) { s.update(text.slice(0, i)); if (!first && s.frozen.length) first = box.firstChild; }
        s.finish(text);
        const once = document.createElement('div'); once.append(...m.renderMarkdown(text));
        return [box.innerHTML === once.innerHTML, box.firstChild === first, s.frozen.length > 0]; })()""",
     [True, True, True]),
    # models.js: aliases marked with their target
    ("models.js", "[m.modelLabel({id: 'fast', alias_for: 'llama3.2:latest'}), m.modelLabel({id: 'q', display_label: 'Qwen'}), m.modelLabel({id: 'x'})]",
     ["fast (alias of llama3.2:latest)", "q — Qwen", "x"]),
    ("models.js", "m.modelInfo({id: 'fast', alias_for: 'qwen3:8b', context_length: 40960, capabilities: ['completion']})",
     "alias for qwen3:8b · context 40,960 tokens · capabilities: completion"),
    ("models.js", "(o => [o.getAttribute('class'), o.getAttribute('data-alias-for'), o.getAttribute('value')])(m.modelOption({id: 'fast', alias_for: 't'}))", ["alias", "t", "fast"]),
    ("models.js", "m.chatModels([{id: 'e', capabilities: ['embedding']}, {id: 'c', capabilities: ['completion']}, {id: 'u'}]).map((x) => x.id)",
     ["c", "u"]),
    # compare.js
    ("compare.js", "m.picked(['a', 'b', 'a', ''])", ["a", "b"]),
    ("compare.js", "m.figuresRow('x', {sentAt: 0, firstAt: 120, doneAt: 1120, usage: {prompt_tokens: 3, completion_tokens: 21, total_tokens: 24}, stopped: false})",
     ["x", "120 ms", "20.0", "3", "21", "24", "done"]),
    # batches.js
    ("batches.js", "[m.progress({request_counts: {total: 20, completed: 11, failed: 1}}), m.progress({status: 'validating'})]",
     [{"done": 12, "total": 20, "failed": 1, "percent": 60}, {"done": 0, "total": 0, "failed": 0, "percent": 0}]),
    ("batches.js", "[m.progressText({request_counts: {total: 2000, completed: 1500, failed: 2}}), m.listUrl(null), m.listUrl('batch_9')]",
     ["1,502 of 2,000 requests · 2 failed", "/v1/batches?limit=20", "/v1/batches?limit=20&after=batch_9"]),
    # health.js: the queue per priority class and per key (fair queuing)
    ("health.js", """m.queueByPriority(m.parseMetrics([
        '# TYPE ollama_proxy_admission_waiting gauge',
        'ollama_proxy_admission_waiting{priority="low",key_id="batch"} 3.0',
        'ollama_proxy_admission_waiting{priority="high",key_id="ci"} 1.0',
        'ollama_proxy_admission_waiting{priority="default",key_id="ci"} 0.0',
        '# TYPE ollama_proxy_admission_wait_seconds histogram',
        'ollama_proxy_admission_wait_seconds_bucket{priority="high",le="0.1"} 4.0',
        'ollama_proxy_admission_wait_seconds_bucket{priority="high",le="1.0"} 5.0',
        'ollama_proxy_admission_wait_seconds_bucket{priority="high",le="+Inf"} 5.0',
        'ollama_proxy_admission_wait_seconds_count{priority="high"} 5.0',
        'ollama_proxy_admission_wait_seconds_sum{priority="high"} 1.5',
        'ollama_proxy_admission_wait_seconds_bucket{priority="low",le="0.1"} 0.0',
        'ollama_proxy_admission_wait_seconds_bucket{priority="low",le="+Inf"} 2.0',
        'ollama_proxy_admission_wait_seconds_count{priority="low"} 2.0',
        'ollama_proxy_admission_wait_seconds_sum{priority="low"} 40.0', ''].join('\\n')))""",
     {"classes": [
         {"priority": "high", "waiting": 1, "admitted": 5, "meanWait": 0.3, "p95Wait": 1},
         {"priority": "default", "waiting": 0, "admitted": 0, "meanWait": None, "p95Wait": None},
         {"priority": "low", "waiting": 3, "admitted": 2, "meanWait": 20, "p95Wait": float("inf")}],
      "keys": [{"key": "batch", "priority": "low", "waiting": 3}, {"key": "ci", "priority": "high", "waiting": 1},
               {"key": "ci", "priority": "default", "waiting": 0}]}),
    ("health.js", "m.queueByPriority(m.parseMetrics('ollama_proxy_admission_waiting 2.0\\n'))", None),
    ("health.js", "[m.quantileBound([[0.1, 1], [1, 10], [Infinity, 10]], 0.95), m.quantileBound([], 0.5)]", [1, None]),
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
