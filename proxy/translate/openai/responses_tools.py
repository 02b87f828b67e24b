"""Responses ``tools`` → the functions Ollama is offered, and Ollama's calls back → output items.

Ollama knows one kind of tool, a function with a JSON-schema ``parameters``. The Responses API
has more, and Codex sends most of them on every request:

* ``function``: offered as it is.
* ``namespace`` (a named group of functions and custom tools, Codex's ``multi_agent_v1``): each
  inner tool is offered as a function named ``<namespace>__<name>``, so two namespaces may hold
  the same name; a call of it comes back with ``name`` and ``namespace`` apart, as OpenAI
  reports it (``ResponseFunctionToolCall.namespace``), and an input item with a ``namespace``
  maps to the same function again. A flat name that two tools would share is a 400.
* ``custom`` (free-form text input, optionally held to a Lark or regex grammar; Codex's
  ``apply_patch``): offered as a function with one string argument ``input``; a call comes back
  as a ``custom_tool_call`` item with that ``input``. Ollama cannot hold generation to a
  grammar, so the grammar is not enforced: it is shown to the model in the function's
  description, and whatever the model writes is passed on (the client checks it, as Codex's
  patch parser does). A forced custom tool is refused like any forced choice on this route.
* hosted tools (``web_search``, ``file_search``, ``code_interpreter``, ``image_generation``,
  ``computer_use``, ``mcp``, ``tool_search``…) run on OpenAI's servers, never on Ollama. Offered
  beside the others they are left out of what the model sees and reported (``dropped``, which
  the handler sends as ``X-Ollama-Proxy-Dropped-Tools``), or refused with 400 when
  ``[responses] hosted_tools = "refuse"``. ``tool_choice`` naming one is always a 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ...errors import InvalidRequest, UnsupportedParameter
from ..fields import boolean, name_field, obj, require, string, type_name
from .chat import to_tools as chat_tools

__all__ = [
    "HOSTED_TOOLS",
    "SEPARATOR",
    "ToolNames",
    "Tools",
    "call_item",
    "flat_name",
    "from_tools",
    "is_hosted",
]

SEPARATOR = "__"
# OpenAI's hosted tools (and their dated aliases, by prefix): they run on OpenAI's servers.
HOSTED_TOOLS = (
    "web_search", "file_search", "computer", "code_interpreter", "image_generation", "mcp",
    "local_shell", "shell", "apply_patch", "tool_search",
)  # fmt: skip
_INPUT = "input"  # a custom tool's one argument, as Ollama's function sees it


def is_hosted(kind: Any) -> bool:
    return isinstance(kind, str) and kind.startswith(HOSTED_TOOLS)


def flat_name(namespace: str | None, name: str) -> str:
    """The function name Ollama knows a (namespaced) tool by."""
    return f"{namespace}{SEPARATOR}{name}" if namespace else name


@dataclass(frozen=True)
class ToolNames:
    """Ollama's flat function names → (namespace, name, kind) of the tool each stands for."""

    by_flat: dict[str, tuple[str | None, str, str]] = field(default_factory=dict)

    def lookup(self, flat: str) -> tuple[str | None, str, str]:
        """A name the model called; one it made up is reported as a plain function of that name."""
        return self.by_flat.get(flat) or (None, flat, "function")


@dataclass(frozen=True)
class Tools:
    """The translated ``tools``: for Ollama, for the response's echo, and the names between."""

    ollama: list[dict[str, Any]]
    echo: list[dict[str, Any]]
    choice: Any
    names: ToolNames
    dropped: tuple[str, ...]  # the hosted tool types left out, in request order, once each


def from_tools(body: dict[str, Any], refuse_hosted: bool = False) -> Tools:
    """``tools`` and ``tool_choice`` of a Responses request, checked with their paths."""
    tools = body.get("tools")
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise InvalidRequest(f"'tools' must be an array, got {type_name(tools)}.", param="tools")
    choice = _choice(body.get("tool_choice"))
    functions: list[dict[str, Any]] = []
    echo: list[dict[str, Any]] = []
    names: dict[str, tuple[str | None, str, str]] = {}
    dropped: list[str] = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"'{param}' must be an object.", param=param)
        kind = tool.get("type")
        if kind == "namespace":
            namespace = name_field(tool, "name", f"{param}.name")
            string(tool, "description", f"{param}.description")
            inner = tool.get("tools")
            if not isinstance(inner, list):
                raise InvalidRequest(f"'{param}.tools' must be an array.", param=f"{param}.tools")
            for j, member in enumerate(inner):
                functions.append(_function(member, f"{param}.tools[{j}]", namespace, names))
            echo.append(tool)
        elif kind in ("function", "custom"):
            functions.append(_function(tool, param, None, names))
            echo.append(_echo(tool) if kind == "function" else tool)
        elif is_hosted(kind):
            if refuse_hosted:
                raise UnsupportedParameter(
                    f"The hosted tool '{kind}' cannot run on Ollama (the proxy refuses hosted tools: "
                    "[responses] hosted_tools = \"refuse\").", param=f"{param}.type")
            if kind not in dropped:
                dropped.append(str(kind))
            echo.append(tool)
        else:
            raise InvalidRequest(f"'{param}.type' must be 'function', 'custom', 'namespace' or a hosted tool type.",
                                 param=f"{param}.type")
    ollama = chat_tools({"tools": functions, "tool_choice": choice})
    return Tools(ollama, echo, choice, ToolNames(names), tuple(dropped))


def _choice(choice: Any) -> Any:
    """``auto`` and ``none``; a forced choice is refused here (Ollama has no forced calls on
    this route yet), a hosted one naming the tool."""
    if choice is None:
        return "auto"
    if choice in ("auto", "none"):
        return choice
    if isinstance(choice, dict) and is_hosted(choice.get("type")):
        raise UnsupportedParameter(f"The hosted tool '{choice['type']}' cannot run on Ollama, so it cannot be forced.",
                                   param="tool_choice")
    if choice == "required" or isinstance(choice, dict):
        raise UnsupportedParameter("Ollama cannot force a tool call; 'tool_choice' must be 'auto' or 'none'.",
                                   param="tool_choice")
    raise InvalidRequest("'tool_choice' must be 'none', 'auto', 'required' or an object.", param="tool_choice")


def _function(tool: Any, param: str, namespace: str | None,
              names: dict[str, tuple[str | None, str, str]]) -> dict[str, Any]:
    """A function or custom tool → chat's function shape, its flat name recorded in ``names``."""
    if not isinstance(tool, dict):
        raise InvalidRequest(f"'{param}' must be an object.", param=param)
    kind = tool.get("type")
    if kind not in ("function", "custom"):
        raise InvalidRequest(f"'{param}.type' must be 'function' or 'custom'.", param=f"{param}.type")
    name = name_field(tool, "name", f"{param}.name")
    description = string(tool, "description", f"{param}.description")
    _plain(tool, param)
    if kind == "function":
        parameters = obj(tool, "parameters", f"{param}.parameters")
        # strict is echoed; Ollama does not constrain tool arguments to the schema (docs).
        boolean(tool, "strict", f"{param}.strict")
    else:
        parameters = {"type": "object", "properties": {_INPUT: {"type": "string"}}, "required": [_INPUT]}
        description = _custom_description(tool, param, description)
    flat = flat_name(namespace, name)
    if flat in names:
        raise InvalidRequest(f"Two tools would both be offered to the model as '{flat}'; rename one.",
                             param=f"{param}.name")
    names[flat] = (namespace, name, kind)
    function: dict[str, Any] = {"name": flat, "parameters": parameters}
    if description is not None:
        function["description"] = description
    return {"type": "function", "function": function}


def _custom_description(tool: dict[str, Any], param: str, description: str | None) -> str:
    """A custom tool's description, telling the model its one argument and any grammar."""
    fmt = obj(tool, "format", f"{param}.format")
    lines = [description] if description else []
    lines.append(f"Call it with one argument, '{_INPUT}': the tool's whole input as a string.")
    if fmt is not None and fmt.get("type") == "grammar":
        syntax = string(fmt, "syntax", f"{param}.format.syntax") or "lark"
        definition = require(string(fmt, "definition", f"{param}.format.definition"), f"{param}.format.definition")
        lines.append(f"The input must follow this {syntax} grammar:\n{definition}")
    elif fmt is not None and fmt.get("type") not in (None, "text"):
        raise InvalidRequest(f"'{param}.format.type' must be 'text' or 'grammar'.", param=f"{param}.format.type")
    return "\n".join(lines)


def _plain(tool: dict[str, Any], param: str) -> None:
    """Options only OpenAI's tool runtime has (tool search, programmatic or asynchronous calls,
    declared outputs): refused when set, never dropped."""
    if boolean(tool, "defer_loading", f"{param}.defer_loading"):
        raise UnsupportedParameter("Deferred tool loading (tool search) is not supported.", param=f"{param}.defer_loading")
    if boolean(tool, "async", f"{param}.async"):
        raise UnsupportedParameter("Asynchronous function calls are not supported.", param=f"{param}.async")
    callers = tool.get("allowed_callers")
    if callers is not None and callers != ["direct"]:
        raise UnsupportedParameter("Only the model may call functions here; 'allowed_callers' must be ['direct'].",
                                   param=f"{param}.allowed_callers")
    if tool.get("output_schema") is not None:
        raise UnsupportedParameter("Ollama's tools declare no output schema.", param=f"{param}.output_schema")


def _echo(tool: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "name": tool.get("name"), "description": tool.get("description"),
            "parameters": tool.get("parameters"), "strict": tool.get("strict")}


# ---- Ollama's calls → output items ---------------------------------------------------------


def call_item(item_id: str, call_id: str, flat: str, arguments: dict[str, Any] | None, names: ToolNames,
              status: str = "completed") -> dict[str, Any]:
    """One Ollama tool call as a ``function_call`` or ``custom_tool_call`` item."""
    namespace, name, kind = names.lookup(flat)
    args = arguments if isinstance(arguments, dict) else {}
    if kind == "custom":
        item: dict[str, Any] = {"id": item_id, "type": "custom_tool_call", "status": status, "call_id": call_id,
                                "name": name, "input": custom_input(args)}
    else:
        item = {"id": item_id, "type": "function_call", "status": status,
                "arguments": orjson.dumps(args).decode(), "call_id": call_id, "name": name}
    if namespace is not None:
        item["namespace"] = namespace
    return item


def custom_input(arguments: dict[str, Any]) -> str:
    """A custom tool's text from the arguments Ollama parsed: ``input``, or the one string the
    model wrote under another name, or (failing both) the arguments as JSON."""
    value = arguments.get(_INPUT)
    if isinstance(value, str):
        return value
    strings = [v for v in arguments.values() if isinstance(v, str)]
    if len(arguments) == 1 and strings:
        return strings[0]
    return orjson.dumps(arguments).decode() if arguments else ""
