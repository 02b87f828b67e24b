"""The structured access record: one ``proxy.access`` record per request, its fields as extras
(what a JSON log format writes as keys), untrusted text escaped."""

from __future__ import annotations

import dataclasses
import logging
from types import SimpleNamespace

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from proxy.app import create_app
from proxy.config import Config
from proxy.observe import structured_access
from tests.conftest import make_config
from tests.fake_ollama import FakeOllama, Reply

USER = [{"role": "user", "content": "hi"}]


def json_logs(config: Config) -> Config:
    """``[log] format = "json"`` with the access log on (the format key is the logging work's)."""
    log = SimpleNamespace(level="info", access=True, format="json")
    return dataclasses.replace(config, log=log)  # type: ignore[arg-type]


def test_text_logs_keep_aiohttps_access_line() -> None:
    access_on = dataclasses.replace(Config().log, access=True)
    assert not structured_access(dataclasses.replace(Config(), log=access_on))
    assert structured_access(json_logs(Config()))
    assert not structured_access(Config())


async def test_one_record_per_request_with_its_fields(
    fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(json_logs(make_config(fake_ollama.url, {"metrics": {"enabled": False}})))
    fake_ollama.push(Reply(chunks=["a", "b", "c"], prompt_eval_count=3, eval_count=3))
    caplog.set_level(logging.INFO, logger="proxy.access")
    async with TestServer(app) as server:
        url = f"http://127.0.0.1:{server.port}"
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
            stream = await sdk.chat.completions.create(model="llama3.2", messages=USER, stream=True,
                                                       extra_headers={"X-Request-Id": "req-1"})
            async for _ in stream:
                pass
        async with aiohttp.ClientSession() as session, session.get(url + "/v1/x%0d%0aforged%22") as response:
            assert response.status == 404
    streamed, unknown = [r for r in caplog.records if r.name == "proxy.access"]
    fields = vars(streamed)
    assert {k: fields[k] for k in ("request_id", "method", "route", "endpoint", "status", "model", "stream",
                                   "prompt_tokens", "completion_tokens", "key_id", "error")} == {
        "request_id": "req-1", "method": "POST", "route": "/v1/chat/completions", "endpoint": "chat.completions",
        "status": 200, "model": "llama3.2", "stream": True, "prompt_tokens": 3, "completion_tokens": 3,
        "key_id": "anonymous", "error": None,
    }
    assert 0 <= fields["ttfb"] <= fields["duration"]
    assert vars(unknown)["route"] is None and vars(unknown)["status"] == 404
    assert vars(unknown)["path"] == '/v1/x\\r\\nforged\\"'  # escaped: one line, whatever was sent
    assert "\n" not in unknown.getMessage() and "\r" not in unknown.getMessage()
