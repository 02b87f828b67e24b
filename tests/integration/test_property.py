"""Generated requests against the real proxy (hypothesis): whatever JSON — or bytes — arrives at
``/v1/chat/completions``, the answer is never a 5xx and never a traceback; every error is
OpenAI's envelope. The stand-in Ollama keeps answering, so a request the proxy accepts gets a
real answer rather than a documented upstream 502.

Hypothesis drives a plain function in a worker thread (it does not run coroutines itself);
each example hands its request to the test's event loop, where the servers live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fake_ollama import FakeOllama

CHAT = "/v1/chat/completions"
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCALAR = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
          | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
ANY = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                   | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)
MODEL = st.sampled_from(["llama3.2", "qwen3:8b", "hf.co/org/repo:Q4_K_M", "nomic-embed-text", "nope"]) | ANY
URL = st.sampled_from(["data:image/png;base64,QUJD", "data:image/png;base64,@@", "http://127.0.0.1:9/x.png",
                       "file:///etc/passwd", "data:,x"]) | ANY
PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "refusal", "file", "video"]) | ANY},
    optional={"text": st.text(max_size=20) | ANY, "refusal": ANY,
              "image_url": st.fixed_dictionaries({"url": URL}) | ANY})
CALL = st.fixed_dictionaries(
    {"id": st.sampled_from(["c1", "c2"]) | ANY, "type": st.just("function") | ANY,
     "function": st.fixed_dictionaries({"name": st.text(max_size=8) | ANY,
                                        "arguments": st.sampled_from(['{"a": 1}', "{", "[]", "[[[[1]]]]"]) | ANY})
     | ANY})
MESSAGE = st.fixed_dictionaries(
    {}, optional={"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]) | ANY,
                  "content": st.text(max_size=30) | st.lists(PART, max_size=3) | ANY,
                  "tool_calls": st.lists(CALL, max_size=2) | ANY, "tool_call_id": st.sampled_from(["c1", "x"]) | ANY,
                  "name": ANY, "reasoning_content": ANY})
TOOL = st.fixed_dictionaries(
    {"type": st.just("function") | ANY},
    optional={"function": st.fixed_dictionaries({"name": st.text(max_size=8)},
                                                optional={"parameters": ANY, "description": ANY}) | ANY})
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "stream": st.booleans(), "temperature": st.floats(-1, 3), "top_p": st.floats(-0.5, 1.5),
    "max_tokens": st.integers(-2, 10**6), "max_completion_tokens": st.integers(-2, 10**6),
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=20),
    "tools": st.lists(TOOL, max_size=3), "tool_choice": st.sampled_from(["auto", "none", "required"]),
    "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema"])},
                                             optional={"json_schema": ANY}),
    "seed": st.integers(-(2**63), 2**63 - 1), "n": st.integers(0, 3), "logprobs": st.booleans(), "top_logprobs": st.integers(-1, 30),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | ANY}),
    "frequency_penalty": st.floats(-3, 3), "presence_penalty": st.floats(-3, 3),
    "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh", "max"]),
    "options": st.dictionaries(st.sampled_from(["num_ctx", "num_predict", "temperature", "top_k", "stop"]),
                               st.integers(-5, 10**5) | ANY, max_size=3),
    "keep_alive": st.sampled_from(["5m", 0, -1, "forever"]) | ANY, "think": st.booleans() | ANY,
    "logit_bias": ANY, "parallel_tool_calls": ANY, "user": ANY, "metadata": ANY, "modalities": ANY,
    "store": ANY, "audio": ANY, "functions": ANY, "prediction": ANY,
}
BODY = st.fixed_dictionaries(
    {"model": MODEL, "messages": st.lists(MESSAGE, max_size=4) | ANY},
    optional={key: strategy | ANY for key, strategy in PLAUSIBLE.items()})
# Mostly well-formed: known models, ordinary messages, each optional field a plausible value.
NEARLY = st.fixed_dictionaries(
    {"model": st.sampled_from(["llama3.2", "qwen3:8b"]),
     "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user"]),
                                                 "content": st.text(max_size=30)}), min_size=1, max_size=3)},
    optional={key: PLAUSIBLE[key] for key in ("stream", "temperature", "top_p", "max_tokens", "stop", "seed",
                                              "stream_options", "frequency_penalty", "presence_penalty")})
REQUESTS = NEARLY | BODY | ANY  # from nearly right to not even an object

VALID = orjson.dumps({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]})
RAW = st.binary(max_size=64) | st.builds(
    lambda at, junk, cut: VALID[:at] + junk + VALID[at + cut:],
    st.integers(0, len(VALID)), st.binary(max_size=4), st.integers(0, 4))


def check_answer(status: int, content_type: str, raw: bytes) -> None:
    assert status < 500, raw[:500]
    assert b"Traceback" not in raw and b'File "/' not in raw
    if status >= 400:
        error = orjson.loads(raw)["error"]
        assert set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str)
    elif content_type == "text/event-stream":
        events = [e for e in raw.split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]", events[-3:]  # the stand-in never fails mid-stream
    else:
        assert orjson.loads(raw)["object"] == "chat.completion"


async def run_property(url: str, test: Callable[[Callable[[bytes], None]], None]) -> None:
    """Run the hypothesis ``test`` in a thread; each example posts through this loop."""
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:

        async def exchange(raw: bytes) -> None:
            async with session.post(url + CHAT, data=raw, headers={"Content-Type": "application/json"}) as r:
                check_answer(r.status, r.content_type, await r.read())

        def post(raw: bytes) -> None:
            asyncio.run_coroutine_threadsafe(exchange(raw), loop).result(timeout=60)

        await asyncio.to_thread(test, post)


async def test_generated_json_never_gets_a_5xx(proxy_url: str, fake_ollama: FakeOllama) -> None:
    @SETTINGS
    @given(REQUESTS)
    def test(post: Callable[[bytes], None], body: Any) -> None:
        post(orjson.dumps(body))

    await run_property(proxy_url, test)
    assert fake_ollama.counts["/api/chat"] > 0  # some generated requests were good enough to answer


async def test_generated_bytes_never_get_a_5xx(proxy_url: str) -> None:
    @SETTINGS
    @given(RAW)
    def test(post: Callable[[bytes], None], raw: bytes) -> None:
        post(raw)

    await run_property(proxy_url, test)
