"""The real Claude Code CLI (pinned in tests/agents) runs a task through the proxy: the scripted
stand-in model calls Claude Code's own Write or Bash tool, Claude Code makes the file and sends the
result back, and the model's final text ends the run with exit status 0. With an API key, the
store on, and a plain as well as a thinking model (whose reasoning must come back to Ollama in
the second turn, carried by the thinking block's signature)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from proxy.access.keys import hash_key, new_key
from tests.conftest import AppFactory
from tests.fake_ollama import FakeOllama, Reply, ToolCall

CLAUDE = Path(__file__).resolve().parents[1] / "agents" / "node_modules" / ".bin" / "claude"
pytestmark = pytest.mark.skipif(not CLAUDE.exists(), reason="the Claude Code CLI is not installed (tests/agents)")
KEY = new_key()


def claude_env(url: str, home: Path, model: str | None) -> dict[str, str]:
    """What a user sets (docs/agents.md's snippet), plus a throwaway home; no model: Claude
    Code's own ids, for the proxy's aliases to map."""
    named = {"ANTHROPIC_MODEL": model, "ANTHROPIC_DEFAULT_HAIKU_MODEL": model} if model else {}
    return {**named,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": KEY,
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "32768",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }


async def run_claude(url: str, tmp: Path, prompt: str, model: str | None, *, flag: bool) -> tuple[int, str, str]:
    """``claude -p``, the model named by ``--model`` (``flag``), by ``ANTHROPIC_MODEL``, or not."""
    work = tmp / "work"
    work.mkdir()
    process = await asyncio.create_subprocess_exec(
        str(CLAUDE), "-p", prompt, *(("--model", model) if flag and model else ()), "--allowedTools", "Write,Bash",
        cwd=work, env=claude_env(url, tmp / "home", model), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out.decode(), err.decode()


def chat_bodies(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


@pytest.mark.parametrize("thinking", [False, True], ids=["plain", "thinking"])
async def test_claude_p_writes_a_file_through_the_proxy(app_factory: AppFactory, fake_ollama: FakeOllama,
                                                         tmp_path: Path, thinking: bool) -> None:
    url, _ = await app_factory({"auth": {"keys": [{"id": "claude", "sha256": hash_key(KEY)}]},
                                "store": {"enabled": True, "url": "sqlite://"}})
    target = tmp_path / "work" / "hello.txt"
    reasoning = "The user wants a file; the Write tool makes it." if thinking else None
    # Claude Code's own tools: Write for the plain model, Bash for the thinking one
    call = (ToolCall("Bash", {"command": f"echo 'hello from ollama' > {target}", "description": "Write the file"})
            if thinking else ToolCall("Write", {"file_path": str(target), "content": "hello from ollama\n"}))
    fake_ollama.push(
        Reply(content="", thinking=reasoning, tool_calls=[call]),
        Reply(content="I created hello.txt.", thinking="It worked." if thinking else None),
    )
    model = "qwen3:8b" if thinking else "llama3.2"  # a model that can think, and one that cannot
    status, out, err = await run_claude(url, tmp_path, "Create hello.txt saying hello", model, flag=thinking)
    assert status == 0, (out, err)
    assert target.read_text() == "hello from ollama\n"
    assert "I created hello.txt." in out
    first, second = chat_bodies(fake_ollama)
    assert first["model"] == second["model"] == model
    # thinking adaptive at effort "high"; left out for a model that cannot think (Ollama's 400)
    assert first.get("think") == ("high" if thinking else None)
    assert {"Write", "Bash"} <= {tool["function"]["name"] for tool in first["tools"]}
    assert first["options"]["num_predict"] == 32000
    assert not any(m["content"].startswith("x-anthropic-billing-header") for m in first["messages"])
    tool_turn = next(m for m in second["messages"] if m["role"] == "tool")
    assert tool_turn["tool_name"] == call.name and (thinking or "hello.txt" in tool_turn["content"])
    assistant = next(m for m in second["messages"] if m["role"] == "assistant")
    assert assistant["tool_calls"][0]["function"] == {"name": call.name, "arguments": call.arguments}
    # Claude Code asks for thinking with display "omitted": the text came back in the signature.
    assert assistant.get("thinking") == reasoning


async def test_claude_codes_own_model_ids_reach_ollama_through_an_alias(app_factory: AppFactory,
                                                                       fake_ollama: FakeOllama, tmp_path: Path) -> None:
    url, _ = await app_factory({"auth": {"keys": [{"id": "claude", "sha256": hash_key(KEY)}]},
                                "models": {"aliases": {"claude-*": "llama3.2"},
                                           "defaults": {"*": {"options": {"num_ctx": 32768}}}}})
    target = tmp_path / "work" / "hello.txt"
    fake_ollama.push(Reply(content="", tool_calls=[ToolCall("Write", {"file_path": str(target), "content": "hi\n"})]),
                     Reply(content="Done."))
    status, out, err = await run_claude(url, tmp_path, "Create hello.txt", None, flag=False)
    assert status == 0, (out, err)
    assert target.read_text() == "hi\n" and "Done." in out
    bodies = chat_bodies(fake_ollama)
    assert [b["model"] for b in bodies] == ["llama3.2", "llama3.2"]  # from Claude Code's own claude-… id
    assert all(b["options"]["num_ctx"] == 32768 for b in bodies)
