"""Codex itself through the proxy: the pinned ``codex exec`` (``tests/agents``) against the real
app (an API key, the store on) in front of the stand-in Ollama, which answers the task with a
call of Codex's own shell tool (``exec_command``) and, after the tool's output, a final text.
Codex runs the command, creates the file and exits 0 — with a plain model and with a thinking
one, whose thinking goes out sealed in ``encrypted_content`` and comes back to Ollama on the
second turn. The official SDK and a raw zstd body (what Codex sends behind some gateways) cover
the same items without the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import zstandard
from openai.types.responses import ResponseCustomToolCall, ResponseFunctionToolCall

from proxy.access.keys import hash_key, new_key
from tests.conftest import ProxyFactory
from tests.fake_ollama import FakeOllama, Reply, ToolCall

CODEX = Path(__file__).resolve().parents[1] / "agents" / "node_modules" / ".bin" / "codex"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codex"
KEY = new_key()


def proxy_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "auth": {"keys": [{"id": "codex-user", "sha256": hash_key(KEY)}]},
        "store": {"enabled": True, "url": f"sqlite:///{tmp_path / 'proxy.db'}"},
        "responses": {"reasoning_key_file": str(tmp_path / "reasoning.key")},
    }


def codex_home(tmp_path: Path, url: str) -> Path:
    """A ``CODEX_HOME`` as a new user writes it (docs/agents.md): one custom provider."""
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(f'''model_provider = "ollama-proxy"

[model_providers.ollama-proxy]
name = "Ollama through ollama-openai-proxy"
base_url = "{url}/v1"
env_key = "OLLAMA_PROXY_API_KEY"
wire_api = "responses"
''')
    return home


def model_catalog(home: Path, slug: str) -> None:
    """A ``model_catalog_json`` (Codex's own format) declaring ``slug`` with the freeform
    ``apply_patch``: Codex then offers it as a ``custom`` tool with its Lark grammar."""
    entry = {
        "slug": slug, "display_name": slug, "description": "An Ollama model", "base_instructions": "You are Codex.",
        "apply_patch_tool_type": "freeform", "shell_type": "shell_command", "context_window": 32000,
        "supports_reasoning_summaries": True, "reasoning_summary_format": "none", "default_reasoning_level": "medium",
        "supported_reasoning_levels": [{"effort": "medium", "description": "medium"}], "support_verbosity": False,
        "default_verbosity": None, "input_modalities": ["text"], "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": True, "visibility": "list", "minimal_client_version": "0.0.1",
        "supported_in_api": True, "upgrade": None, "priority": 0, "experimental_supported_tools": [],
    }
    (home / "models.json").write_text(json.dumps({"models": [entry]}))
    config = home / "config.toml"  # a top-level key: before the provider's table
    config.write_text(f'model_catalog_json = "{home / "models.json"}"\n' + config.read_text())


async def codex_exec(home: Path, workdir: Path, model: str, task: str) -> tuple[int, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home.parent), "CODEX_HOME": str(home),
           "OLLAMA_PROXY_API_KEY": KEY, "NO_COLOR": "1", "RUST_LOG": "error"}
    process = await asyncio.create_subprocess_exec(
        str(CODEX), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
        "--color", "never", "-m", model, "-C", str(workdir), task,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 180)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, output.decode(errors="replace")


def chat_bodies(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


@pytest.mark.skipif(not CODEX.exists(), reason="the Codex CLI is not installed (npm ci --prefix tests/agents)")
@pytest.mark.parametrize("model, thinking", [("llama3.2", None), ("qwen3:8b", "The user wants a file; one command.")],
                         ids=["plain model", "thinking model"])
async def test_codex_exec_creates_a_file_through_the_proxy(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, tmp_path: Path, model: str, thinking: str | None,
) -> None:
    url = await proxy_factory(proxy_config(tmp_path))
    workdir = tmp_path / "project"
    workdir.mkdir()
    fake_ollama.push(
        Reply(content="", thinking=thinking,
              tool_calls=[ToolCall("exec_command", {"cmd": "printf 'made by codex' > made.txt"})]),
        Reply(content="I created made.txt."),
    )
    code, output = await codex_exec(codex_home(tmp_path, url), workdir, model, "Create made.txt saying 'made by codex'.")
    assert code == 0, output
    assert (workdir / "made.txt").read_text() == "made by codex"
    assert "I created made.txt." in output
    first, second = chat_bodies(fake_ollama)[:2]
    offered = [tool["function"]["name"] for tool in first["tools"]]
    assert "exec_command" in offered and "multi_agent_v1__spawn_agent" in offered
    assert "web_search" not in offered  # Codex's hosted tool, left out
    call_turn, result = second["messages"][-2], second["messages"][-1]
    assert call_turn["tool_calls"][0]["function"]["name"] == "exec_command"
    assert result["role"] == "tool" and result["tool_name"] == "exec_command"
    if thinking:  # sealed in turn 1's encrypted_content, opened for Ollama in turn 2
        assert call_turn["thinking"] == thinking
        key_file = tmp_path / "reasoning.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    else:
        assert "thinking" not in call_turn


PATCH_TEXT = "*** Begin Patch\n*** Add File: made.txt\n+made by apply_patch\n*** End Patch\n"


@pytest.mark.skipif(not CODEX.exists(), reason="the Codex CLI is not installed (npm ci --prefix tests/agents)")
async def test_codex_exec_applies_a_patch_through_its_custom_tool(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, tmp_path: Path,
) -> None:
    """Codex's freeform ``apply_patch`` (a ``custom`` tool): offered to Ollama as a function with
    one ``input`` string, its call handed to Codex as a ``custom_tool_call``, which Codex applies."""
    url = await proxy_factory(proxy_config(tmp_path))
    workdir = tmp_path / "project"
    workdir.mkdir()
    home = codex_home(tmp_path, url)
    model_catalog(home, "qwen3:8b")
    fake_ollama.push(Reply(content="", thinking="A new file: one patch.",
                           tool_calls=[ToolCall("apply_patch", {"input": PATCH_TEXT})]),
                     Reply(content="Patched."))
    code, output = await codex_exec(home, workdir, "qwen3:8b", "Create made.txt with apply_patch.")
    assert code == 0, output
    assert (workdir / "made.txt").read_text() == "made by apply_patch\n"
    first, second = chat_bodies(fake_ollama)[:2]
    patch_tool = next(t["function"] for t in first["tools"] if t["function"]["name"] == "apply_patch")
    assert patch_tool["parameters"]["required"] == ["input"] and "lark grammar" in patch_tool["description"]
    call_turn, result = second["messages"][-2], second["messages"][-1]
    assert call_turn["tool_calls"][0]["function"] == {"name": "apply_patch", "arguments": {"input": PATCH_TEXT}}
    assert call_turn["thinking"] == "A new file: one patch."
    assert result["role"] == "tool" and result["tool_name"] == "apply_patch"


# ---- the same items through the official SDK and a raw zstd body -----------------------------

NAMESPACE = {"type": "namespace", "name": "crm", "description": "Customer records.", "tools": [
    {"type": "function", "name": "lookup", "description": "Find a customer.",
     "parameters": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]}}]}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
         "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch"'}}


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_sdk_reads_namespaced_and_custom_calls_and_the_dropped_tools_header(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture, stream: bool,
) -> None:
    caplog.set_level(logging.DEBUG, "proxy")
    url = await proxy_factory()
    fake_ollama.push(Reply(content="", tool_calls=[ToolCall("crm__lookup", {"email": "a@b.c"}),
                                                   ToolCall("apply_patch", {"input": "*** Begin Patch"})]))
    tools: list[Any] = [NAMESPACE, PATCH, {"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["v"]}]
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        raw = await sdk.responses.with_raw_response.create(model="llama3.2", input="go", tools=tools, stream=stream)
        assert raw.headers["X-Ollama-Proxy-Dropped-Tools"] == "web_search, file_search"
        parsed = raw.parse()
        if stream:
            events = [event async for event in parsed]  # type: ignore[union-attr]
            response = events[-1].response
            assert "response.custom_tool_call_input.done" in [e.type for e in events]
        else:
            response = parsed
    call, custom = response.output
    assert isinstance(call, ResponseFunctionToolCall) and (call.namespace, call.name) == ("crm", "lookup")
    assert json.loads(call.arguments) == {"email": "a@b.c"}
    assert isinstance(custom, ResponseCustomToolCall) and custom.input == "*** Begin Patch"
    assert [t["function"]["name"] for t in chat_bodies(fake_ollama)[0]["tools"]] == ["crm__lookup", "apply_patch"]
    assert "hosted tools left out of what the model sees: web_search, file_search" in caplog.text


async def test_hosted_tools_are_refused_when_the_config_says_so(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama,
) -> None:
    url = await proxy_factory({"responses": {"hosted_tools": "refuse"}})
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as info:
            await sdk.responses.create(model="llama3.2", input="go", tools=[NAMESPACE, {"type": "web_search"}])
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "tools[1].type"
    assert "web_search" in info.value.body["message"]
    assert not chat_bodies(fake_ollama)


async def test_codex_turns_as_captured_zstd_compressed_and_sealed_for_one_key_only(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, tmp_path: Path,
) -> None:
    """The captured requests, sent as Codex sends them behind a compressing gateway: zstd at
    level 3, one frame without a content size; turn 2 returns turn 1's sealed reasoning."""
    other = new_key()
    config = proxy_config(tmp_path)
    config["auth"]["keys"].append({"id": "someone-else", "sha256": hash_key(other)})
    url = await proxy_factory(config)
    turn1, turn2 = (json.loads((FIXTURES / f"{n}.json").read_text()) for n in ("turn1", "turn2"))
    fake_ollama.push(Reply(content="", thinking="Run one command.",
                           tool_calls=[ToolCall("exec_command", {"cmd": "echo hi > made.txt"}, id="call_1")]),
                     Reply(content="Done."))

    async def post(body: dict[str, Any], key: str) -> tuple[int, list[dict[str, Any]]]:
        body = {**body, "model": "qwen3:8b"}  # the captured "qwen3", as the stand-in names it
        packed = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(json.dumps(body).encode())
        headers = {**turn1["headers"], "Authorization": f"Bearer {key}", "Content-Encoding": "zstd"}
        async with aiohttp.ClientSession() as session, session.post(url + "/v1/responses", data=packed,
                                                                    headers=headers) as response:
            text = await response.text()
            if response.status != 200:
                return response.status, [json.loads(text)]
        return 200, [json.loads(block.split("\ndata: ", 1)[1]) for block in text.split("\n\n") if block]

    status, events = await post(turn1["body"], KEY)
    assert status == 200
    done = events[-1]["response"]
    assert events[-1]["type"] == "response.completed" and done["store"] is False
    reasoning, call = done["output"]
    assert reasoning["encrypted_content"].startswith("opx1.") and call["name"] == "exec_command"
    follow = turn2["body"]
    follow["input"][4] = reasoning
    status, _ = await post(follow, KEY)
    assert status == 200
    assert chat_bodies(fake_ollama)[1]["messages"][-2]["thinking"] == "Run one command."
    status, answer = await post(follow, other)  # another key cannot replay it
    assert status == 400 and answer[0]["error"]["param"] == "input[4].encrypted_content"


async def test_a_stored_namespaced_call_continues_with_previous_response_id(
    proxy_factory: ProxyFactory, fake_ollama: FakeOllama, tmp_path: Path,
) -> None:
    """Clients that keep state on the server (``store: true``, the Agents SDK): the stored
    history of a namespaced call maps to the same Ollama function when its output comes back."""
    url = await proxy_factory(proxy_config(tmp_path))
    fake_ollama.push(Reply(content="", tool_calls=[ToolCall("crm__lookup", {"email": "a@b.c"}, id="call_7")]),
                     Reply(content="Found Ada."))
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as sdk:
        first = await sdk.responses.create(model="llama3.2", input="who is a@b.c?", tools=[NAMESPACE])
        call = first.output[0]
        assert isinstance(call, ResponseFunctionToolCall) and call.namespace == "crm"
        second = await sdk.responses.create(
            model="llama3.2", previous_response_id=first.id, tools=[NAMESPACE],
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Ada Lovelace"}])
    assert second.output_text == "Found Ada."
    messages = chat_bodies(fake_ollama)[1]["messages"]
    assert messages[-2]["tool_calls"][0]["function"]["name"] == "crm__lookup"
    assert messages[-1] == {"role": "tool", "content": "Ada Lovelace", "tool_name": "crm__lookup",
                            "tool_call_id": "call_7"}
