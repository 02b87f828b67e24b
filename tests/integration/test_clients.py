"""The popular client libraries on their default paths, against the proxy and the stand-in.

Each of these failed before forced tool calls, ``n`` and the reasoning fields: instructor's
default mode (TOOLS) sends a named ``tool_choice``, a pydantic-ai agent with a structured
``output_type`` sends ``tool_choice: "required"``, LangChain's
``with_structured_output(method="function_calling")`` a named choice with
``parallel_tool_calls: false``; LangChain reads thinking from ``reasoning_content`` only. The
stand-in decodes to the ``format`` schema as Ollama does, so every library gets a schema-valid
object and must validate it into its own type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import instructor
import openai
import pytest
from langchain_deepseek import ChatDeepSeek
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.fake_ollama import FakeOllama, Reply, schema_instance


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int
    address: Address  # a nested model: pydantic emits $defs and a $ref


def person() -> Person:
    return Person.model_validate(schema_instance(Person.model_json_schema()))


def chat_bodies(fake: FakeOllama) -> list[dict[str, Any]]:
    return [body for path, body in fake.requests if path == "/api/chat"]


@pytest.fixture
async def sdk(proxy_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=proxy_url + "/v1", api_key="unused", max_retries=0) as client:
        yield client


# ---- instructor ---------------------------------------------------------------------------------


async def test_instructor_default_tools_mode(sdk: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    client = instructor.from_openai(sdk)
    assert client.mode == instructor.Mode.TOOLS  # the default this test is about
    got = await client.chat.completions.create(
        model="llama3.2", response_model=Person, max_retries=0,
        messages=[{"role": "user", "content": "Ada Lovelace, 36, lives at 12 St James's Square, London."}],
    )
    assert got.model_dump() == person().model_dump()  # instructor returns a subclass of its own
    sent = chat_bodies(fake_ollama)[-1]
    assert "$defs" in sent["format"] and sent["format"]["properties"]["address"] == {"$ref": "#/$defs/Address"}


async def test_instructor_streams_partial_objects(sdk: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    client = instructor.from_openai(sdk)
    partials = [p async for p in client.chat.completions.create_partial(
        model="llama3.2", response_model=Person, max_retries=0,
        messages=[{"role": "user", "content": "Ada, 36, London."}],
    )]
    assert len(partials) > 2, "the arguments arrive in pieces, so instructor sees the object grow"
    assert Person.model_validate(partials[-1].model_dump()) == person()


# ---- pydantic-ai --------------------------------------------------------------------------------


def agent_model(sdk: openai.AsyncOpenAI, name: str = "llama3.2") -> OpenAIChatModel:
    return OpenAIChatModel(name, provider=OpenAIProvider(openai_client=sdk))


async def test_pydantic_ai_structured_output_type(sdk: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    agent = Agent(agent_model(sdk), output_type=Person)
    result = await agent.run("Who is Ada?")
    assert result.output == person()
    sent = chat_bodies(fake_ollama)[-1]
    assert "format" in sent and "tools" not in sent


async def test_pydantic_ai_streamed_structured_output(sdk: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    agent = Agent(agent_model(sdk), output_type=Person)
    async with agent.run_stream("Who is Ada?") as result:
        outputs = [output async for output in result.stream_output(debounce_by=None)]
    assert outputs[-1] == person()


async def test_pydantic_ai_sees_the_thinking(sdk: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    from pydantic_ai.messages import ThinkingPart

    fake_ollama.push(Reply(thinking="Ada was born in 1815.", content="Ada Lovelace."))
    result = await Agent(agent_model(sdk, "qwen3:8b")).run("Who is Ada?")
    parts = result.all_messages()[-1].parts
    assert [p.content for p in parts if isinstance(p, ThinkingPart)] == ["Ada was born in 1815."]
    assert result.output == "Ada Lovelace."


# ---- LangChain ----------------------------------------------------------------------------------


async def test_langchain_with_structured_output_function_calling(sdk: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    llm = ChatOpenAI(model="llama3.2", api_key="unused", async_client=sdk.chat.completions,  # type: ignore[arg-type]
                     root_async_client=sdk)
    structured = llm.with_structured_output(Person, method="function_calling")
    got = await structured.ainvoke("Ada Lovelace, 36, London.")
    assert got == person()
    async for last in structured.astream("Ada Lovelace, 36, London."):
        pass
    assert last == person()


async def test_langchain_reads_reasoning_content(sdk: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    """LangChain's Python reader of thinking is ChatDeepSeek (ChatOpenAI keeps to OpenAI's own
    fields); LangChain JS's ChatOpenAI reads the same ``reasoning_content``."""
    llm = ChatDeepSeek(model="qwen3:8b", api_key="unused", async_client=sdk.chat.completions,  # type: ignore[arg-type]
                       root_async_client=sdk)
    fake_ollama.push(Reply(thinking="Two and two make four.", content="4"),
                     Reply(thinking="Two and two make four.", content="4"))
    message = await llm.ainvoke("2+2?")
    assert message.additional_kwargs["reasoning_content"] == "Two and two make four."
    assert message.content == "4"
    thinking, text = "", ""
    async for chunk in llm.astream("2+2?"):
        thinking += chunk.additional_kwargs.get("reasoning_content", "")
        text += str(chunk.content)
    assert (thinking, text) == ("Two and two make four.", "4")


async def test_langchain_embeddings_need_text_input(sdk: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    embeddings = OpenAIEmbeddings(model="nomic-embed-text", api_key="unused",  # type: ignore[arg-type]
                                  check_embedding_ctx_length=False, async_client=sdk.embeddings)
    vectors = await embeddings.aembed_documents(["one", "two"])
    assert len(vectors) == 2 and len(vectors[0]) == 8
    # Its default splits the text with tiktoken and sends token ids, which Ollama cannot embed
    # (tiktoken's download is not possible offline, so the ids are sent here as LangChain would);
    # the 400 says which switch to turn.
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.embeddings.create(model="nomic-embed-text", input=[[1, 2, 3]])
    assert "check_embedding_ctx_length=False" in info.value.message


async def test_the_default_sends_thinking_under_both_names(sdk: openai.AsyncOpenAI, fake_ollama: FakeOllama) -> None:
    fake_ollama.push(Reply(thinking="Hmm.", content="4"))
    reply = await sdk.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "2+2?"}])
    extra = reply.choices[0].message.model_extra or {}
    assert (extra.get("reasoning"), extra.get("reasoning_content")) == ("Hmm.", "Hmm.")
