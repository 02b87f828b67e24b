"""A scriptable stand-in for the Ollama HTTP server, speaking Ollama's real wire format.

Ollama cannot run in CI, so the proxy is tested against this server on a real TCP port.
Shapes, status codes and error texts follow Ollama's ``docs/api.md``, ``api/types.go`` and
``server/routes.go``; faults (``Reply``) are injected per chat/generate request.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import math
import re
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

DEFAULT_MODELS = ["llama3.2:latest", "qwen3:8b", "hf.co/org/repo:Q4_K_M", "nomic-embed-text:latest"]
VERSION = "0.12.6"
GARBAGE_LINE = b"this is not json\n"
DEFAULT_STREAM_ERROR = "an error was encountered while running the model"
# Ollama's answer when its queue (OLLAMA_MAX_QUEUE) is full: 503 at once (server/sched.go).
BUSY_ERROR = "server busy, please try again.  maximum pending requests exceeded"
_HANG, _DIE = object(), object()  # plan sentinels
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BODY = web.RequestKey("fake_ollama_body", object)
_BODY_ERROR = web.RequestKey("fake_ollama_body_error", str)
_HTML = ("<html>\r\n<head><title>{s} Bad Gateway</title></head>\r\n<body>\r\n<center><h1>{s} "
         "Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None  # None -> "call_" + 8 hex chars, like Ollama's toolCallId()


@dataclass
class Reply:
    """What the next /api/chat or /api/generate request answers.

    Stream order: thinking lines, content lines (``huge_line_bytes`` adds one ``"x"*N`` line
    first), one tool-call line, the done line. ``*_after_lines`` count wire lines written.
    """

    content: str = "Hello from the stand-in."  # split at word boundaries, one piece per line
    chunks: list[str] | None = None  # explicit per-line content pieces (overrides content)
    thinking: str | None = None  # dropped when the request says "think": false
    tool_calls: list[ToolCall] = field(default_factory=list)  # dropped on a num_predict cut
    done_reason: str = "stop"
    prompt_eval_count: int = 11
    eval_count: int | None = None  # None -> number of generated (non-final) lines
    logprobs: bool = False  # also on when the request has "logprobs": true
    status: int = 200  # != 200 (or error set, without error_after_lines) -> {"error"} answer
    error: str | None = None
    html_error: bool = False  # HTML page with `status` (502 if 200), like nginx in front
    error_after_lines: int | None = None  # 0 -> a 500 status, as Ollama does before any line
    die_after_lines: int | None = None  # close the socket without the terminating chunk
    garbage_after_lines: int | None = None  # inserts GARBAGE_LINE, then continues
    huge_line_bytes: int | None = None
    first_byte_delay: float = 0.0
    line_delay: float = 0.0
    hang: bool = False  # first line, then nothing until the client goes away
    hang_before_headers: bool = False
    # A JSON-schema ``format`` makes the content a schema-valid instance (constrained decoding,
    # streamed in small pieces like tokens); this plays a server or model that breaks it.
    ignore_format: bool = False


@dataclass
class _Model:
    name: str  # shortest display name, e.g. "llama3.2:latest"
    family: str
    parameter_size: str
    quantization: str
    size: int
    capabilities: list[str]
    context_length: int
    embedding_length: int
    parameter_count: int
    digest: str = ""


# family, parameter_size, quantization, size, capabilities, ctx, embedding length, params
_C, _T = "completion", "tools"
_PROFILES: dict[str, tuple[str, str, str, int, list[str], int, int, int]] = {
    "llama": ("llama", "3.2B", "Q4_K_M", 2019393189, [_C, _T], 131072, 3072, 3212749888),
    "qwen3": ("qwen3", "8.2B", "Q4_K_M", 5225388164, [_C, _T, "thinking"], 40960, 4096, 8190735360),
    "hf.co": ("gemma3", "4.3B", "Q4_K_M", 3338801804, [_C, "vision"], 131072, 2560, 4300079472),
    "embed": ("nomic-bert", "137M", "F16", 274302450, ["embedding"], 2048, 768, 136727040),
}


class _Fail(Exception):
    """Short-circuits a handler with Ollama's ``{"error": ...}`` answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _dumps(obj: Any) -> bytes:
    """JSON like Go's encoding/json: HTML-significant characters are \\u-escaped."""
    raw = orjson.dumps(obj)
    for a, b in ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"),
                 ("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029")):
        raw = raw.replace(a, b)
    return raw


def _now() -> str:
    """RFC3339Nano in UTC as Go prints it (trailing zeros of the fraction trimmed)."""
    ns = time.time_ns()
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def _display(name: str) -> str:
    """Ollama's Name.DisplayShortest(): default host/namespace dropped, tag defaults to latest."""
    head, _, last = name.strip().rpartition("/")
    parts = [p for p in head.split("/") if p]
    if parts[:1] and parts[0].lower() == "registry.ollama.ai":
        parts = parts[1:]
    if len(parts) == 1 and parts[0].lower() == "library":
        parts = []
    return "/".join([*parts, last if ":" in last else f"{last}:latest"])


def _full_name(display: str) -> str:
    """Fully-qualified name, as used in Ollama's capability errors."""
    slashes = display.count("/")
    return display if slashes >= 2 else ("registry.ollama.ai/" if slashes else
                                         "registry.ollama.ai/library/") + display


def _split(text: str) -> list[str]:
    """Word-ish pieces, whitespace kept, so joining them restores the text."""
    return re.findall(r"\S+\s*|\s+", text)


def _pieces(text: str) -> list[str]:
    """Token-sized pieces (up to 4 characters) of constrained output."""
    return [text[i:i + 4] for i in range(0, len(text), 4)]


def schema_instance(schema: dict[str, Any], *, seed: int = 0) -> Any:
    """A value valid against ``schema``, as constrained decoding (llama.cpp's grammar from a
    JSON schema) would let a model produce: objects with their properties in order, strings,
    numbers and integers within their bounds, booleans, arrays within their item counts, enums
    and consts, ``anyOf``/``oneOf`` (the branch ``seed`` picks), ``allOf`` and ``$ref`` into
    ``$defs``/``definitions``, as pydantic emits them."""
    return _instance(schema, schema, seed, "value", 0)


def _instance(node: Any, root: dict[str, Any], seed: int, key: str, depth: int) -> Any:
    if not isinstance(node, dict) or depth > 32:
        return key
    ref = node.get("$ref")
    if isinstance(ref, str):
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return _instance(target, root, seed, key, depth + 1)
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][seed % len(node["enum"])]
    for combinator in ("anyOf", "oneOf"):
        if node.get(combinator):
            branches = node[combinator]
            return _instance(branches[seed % len(branches)], root, seed, key, depth + 1)
    if node.get("allOf"):
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            merged.update(part)
        return _instance({**merged, **{k: v for k, v in node.items() if k != "allOf"}}, root, seed,
                         key, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in node else "array" if "items" in node else "string"
    if kind == "object":
        props = node.get("properties") or {}
        return {k: _instance(v, root, seed, k, depth + 1) for k, v in props.items()}
    if kind == "array":
        prefix = node.get("prefixItems") or []
        count = max(len(prefix), node.get("minItems", 1))
        if "maxItems" in node:
            count = min(count, node["maxItems"])
        items = [_instance(prefix[i] if i < len(prefix) else node.get("items", {}), root, seed, key,
                           depth + 1) for i in range(count)]
        return items
    if kind in ("integer", "number"):
        step = 1 if kind == "integer" else 0.001  # past an exclusive bound
        low = node.get("minimum", node.get("exclusiveMinimum", -step) + step)
        high = node.get("maximum", node.get("exclusiveMaximum", (1 << 30) + step) - step)
        value = min(max(low, 1 + seed), high)
        return int(value) if kind == "integer" else float(value) + (0.5 if value + 0.5 <= high else 0)
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "null":
        return None
    fmt = node.get("format")
    text = {"date-time": "2025-06-01T12:00:00Z", "date": "2025-06-01", "time": "12:00:00",
            "email": "someone@example.com", "uri": "https://example.com/"}.get(fmt, key)
    text = text.ljust(node.get("minLength", 0), "x")
    return text[:node["maxLength"]] if "maxLength" in node else text


def _f32(x: float) -> float:
    """Shortest decimal that round-trips as float32, as Go marshals []float32."""
    x32 = struct.unpack("f", struct.pack("f", x))[0]
    for digits in range(1, 10):
        if struct.unpack("f", struct.pack("f", y := float(f"{x32:.{digits}g}")))[0] == x32:
            return y
    return float(x32)


def _go_json_error(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """Approximates Go's decoder messages ("invalid character 'x' ...", "unexpected EOF")."""
    text = raw.decode("utf-8", "replace")
    if exc.pos >= len(text.rstrip()):
        return "unexpected EOF"
    return f"invalid character {text[exc.pos]!r} looking for beginning of value"


def _go_kind(v: Any) -> str:
    return {bool: "bool", str: "string", list: "array", int: "number", float: "number"}.get(
        type(v), "object")


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=_dumps({"error": message}),
                        content_type="application/json", charset="utf-8")


def _json(obj: Any) -> web.Response:
    return web.Response(body=_dumps(obj), content_type="application/json", charset="utf-8")


class FakeOllama:
    """In-process Ollama on 127.0.0.1 with a queue of scripted chat/generate replies."""

    def __init__(self, models: list[str] | None = None) -> None:
        self.models: dict[str, _Model] = {}
        for name in DEFAULT_MODELS if models is None else models:
            self.add_model(name)
        self.url = ""
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []  # each request's headers, in the order received
        self.targets: list[tuple[str, str]] = []  # (method, request target exactly as received)
        self.raw_bodies: list[bytes] = []
        self.request_headers: list[dict[str, str]] = []  # every request's headers, in order
        self.counts: collections.Counter[str] = collections.Counter()
        self.open_streams = 0
        self.client_disconnects = 0
        self.stream_closed = asyncio.Event()
        self.stream_started = asyncio.Event()  # extra: set when a chat/generate reply begins
        self.loaded: dict[str, float] = {}  # model -> last use, for /api/ps
        self.ps_fails = False  # /api/ps answers 500
        self.vram: dict[str, int] = {}  # model -> size_vram when only part is in VRAM
        self.busy = False  # chat/generate/embed answer 503 at once (Ollama's full queue)
        self.nil_models = False  # an empty /api/tags as {"models": null}, like older Ollama
        self._replies: collections.deque[Reply] = collections.deque()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._live: set[asyncio.Transport] = set()
        self._stopping = False
        self._calls = 0

    # ------------------------------------------------------------------ control
    def add_model(self, name: str, capabilities: list[str] | None = None) -> None:
        """Registers a model; the profile is guessed from the name (embed/qwen3/hf.co/llama)."""
        disp = _display(name)
        low = disp.lower()
        key = next((k for k in ("embed", "qwen3", "hf.co") if k in low), "llama")
        fam, psize, quant, size, caps, ctx, emb, params = _PROFILES[key]
        self.models[low] = _Model(disp, fam, psize, quant, size, list(capabilities or caps), ctx,
                                  emb, params, hashlib.sha256(low.encode()).hexdigest())

    def load(self, name: str, size_vram: int | None = None) -> None:
        """Marks a model loaded for /api/ps; ``size_vram`` below its size: partly in VRAM."""
        key = _display(name).lower()
        self.loaded[key] = time.time()
        if size_vram is None:
            self.vram.pop(key, None)
        else:
            self.vram[key] = size_vram

    def remove_model(self, name: str) -> None:
        self.models.pop(_display(name).lower(), None)

    def set_digest(self, name: str, digest: str) -> None:
        self.models[_display(name).lower()].digest = digest

    def push(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    def reset_events(self) -> None:
        self.stream_closed.clear()
        self.stream_started.clear()

    async def start(self) -> str:
        """Binds 127.0.0.1 (the previous port again after a stop(), if still free)."""
        @web.middleware
        async def record(request: web.Request, handler: _Handler) -> web.StreamResponse:
            return await self._record(request, handler)

        app = web.Application(middlewares=[record], client_max_size=1 << 30)
        r = app.router
        r.add_get("/", self._root)
        r.add_get("/api/version", self._version)
        r.add_get("/api/tags", self._tags)
        r.add_get("/api/ps", self._ps)
        r.add_post("/api/show", self._show)
        r.add_post("/api/embed", self._embed)
        r.add_post("/api/chat", self._complete)
        r.add_post("/api/generate", self._complete)
        r.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5,
                                     access_log=None)
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True)
            await site.start()
        except OSError:
            site = web.TCPSite(self._runner, "127.0.0.1", 0, reuse_address=True)
            await site.start()
        self._port = self._runner.addresses[0][1]
        self._stopping = False
        self.url = f"http://127.0.0.1:{self._port}"
        return self.url

    async def stop(self) -> None:
        """Drops in-flight streams abruptly (like a killed server), then stops listening."""
        self._stopping = True
        for transport in list(self._live):
            transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -------------------------------------------------------------- plumbing
    async def _record(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Records every request and parses POST bodies the way gin's ShouldBindJSON fails."""
        self.targets.append((request.method, request.raw_path))
        raw = await request.read() if request.body_exists else b""
        self.raw_bodies.append(raw)
        body: Any = None
        error: str | None = None
        if request.method == "POST":
            if not raw.strip():
                error = "missing request body"
            else:
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    error = _go_json_error(raw, exc)
        request[_BODY] = body
        if error is not None:
            request[_BODY_ERROR] = error
        self.requests.append((request.path, body if isinstance(body, dict) else {}))
        self.headers.append(dict(request.headers))
        self.request_headers.append(dict(request.headers))
        self.counts[request.path] += 1
        if self.busy and request.path in ("/api/chat", "/api/generate", "/api/embed"):
            return _error(503, BUSY_ERROR)
        try:
            return await handler(request)
        except _Fail as fail:
            return _error(fail.status, fail.message)

    @staticmethod
    def _body(request: web.Request, go_type: str) -> dict[str, Any]:
        if _BODY_ERROR in request:
            raise _Fail(400, request[_BODY_ERROR])
        body = request[_BODY]
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise _Fail(400, f"json: cannot unmarshal {_go_kind(body)} into Go value of type "
                             f"api.{go_type}")
        for key, typ, go in (("model", str, "string"), ("stream", bool, "bool"),
                             ("top_logprobs", int, "int")):
            value = body.get(key)
            if value is not None and not isinstance(value, typ):
                raise _Fail(400, f"json: cannot unmarshal {_go_kind(value)} into Go struct field "
                                 f"{go_type}.{key} of type {go}")
        return body

    def _find(self, name: str) -> _Model | None:
        return self.models.get(_display(name).lower()) if name else None

    def _details(self, m: _Model) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": m.family, "families": [m.family],
                "parameter_size": m.parameter_size, "quantization_level": m.quantization}

    # ---------------------------------------------------------- simple routes
    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running", content_type="text/plain", charset="utf-8")

    async def _not_found(self, request: web.Request) -> web.Response:
        """gin's default 404 for unknown routes (also used for wrong methods)."""
        return web.Response(status=404, text="404 page not found", content_type="text/plain")

    async def _version(self, request: web.Request) -> web.Response:
        return _json({"version": VERSION})

    async def _tags(self, request: web.Request) -> web.Response:
        if not self.models and self.nil_models:
            return _json({"models": None})  # Go's nil slice, as older servers send "no models"
        return _json({"models": [
            {"name": m.name, "model": m.name, "modified_at": "2025-05-04T17:37:44.706015396-07:00",
             "size": m.size, "digest": m.digest, "details": self._details(m)}
            for m in self.models.values()]})

    async def _ps(self, request: web.Request) -> web.Response:
        if self.ps_fails:
            raise _Fail(500, "failed to list running models")
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300))
        return _json({"models": [
            {"name": m.name, "model": m.name, "size": m.size, "digest": m.digest,
             "details": self._details(m), "expires_at": expires, "size_vram": self.vram.get(key, m.size),
             "context_length": 4096}
            for key, m in self.models.items() if key in self.loaded]})

    async def _show(self, request: web.Request) -> web.Response:
        body = self._body(request, "ShowRequest")
        name = body.get("model") or body.get("name") or ""
        if not name:
            raise _Fail(400, "model is required")
        m = self._find(name)
        if m is None:
            raise _Fail(404, f"model '{_display(name)}' not found")
        arch = m.family
        info = {"general.architecture": arch, "general.file_type": 15,
                "general.parameter_count": m.parameter_count, "general.quantization_version": 2,
                f"{arch}.context_length": m.context_length,
                f"{arch}.embedding_length": m.embedding_length,
                "tokenizer.ggml.model": "gpt2"}
        template = "{{ .System }}<|user|>{{ .Prompt }}<|assistant|>{{ .Response }}"
        return _json({
            "license": "FAKE LICENSE AGREEMENT",
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {m.name}\n"
                         f'TEMPLATE """{template}"""\nPARAMETER stop "<|user|>"\n',
            "parameters": 'stop                           "<|user|>"',
            "template": template, "details": self._details(m),
            "model_info": dict(sorted(info.items())),  # a Go map: keys sorted
            "capabilities": m.capabilities, "modified_at": "2025-05-04T17:37:44.706015396-07:00"})

    async def _embed(self, request: web.Request) -> web.Response:
        body = self._body(request, "EmbedRequest")
        name = body.get("model") or ""
        inp = body.get("input")
        if isinstance(inp, str):
            texts = [inp] if inp else []
        elif isinstance(inp, list) and all(isinstance(t, str) for t in inp):
            texts = list(inp)
        elif inp is None:
            texts = []
        else:
            raise _Fail(400, "invalid input type")
        m = self._find(name)
        if m is None:
            raise _Fail(404, f"model '{name}' not found")
        self.loaded[m.name.lower()] = time.time()
        if not texts:
            return _json({"model": name, "embeddings": []})
        tokens = [max(1, len(t.split())) for t in texts]
        if body.get("truncate") is False and max(tokens) > m.context_length:
            raise _Fail(400, "the input length exceeds the context length")
        dims = body.get("dimensions") or 8
        vectors = []
        for text in texts:
            seed, raw = text.encode(), b""
            while len(raw) < dims:
                seed = hashlib.sha256(seed).digest()
                raw += seed
            vec = [(b - 127.5) / 127.5 for b in raw[:dims]]
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            vectors.append([_f32(v / norm) for v in vec])
        return _json({"model": name, "embeddings": vectors, "total_duration": 14_143_917,
                      "load_duration": 1_019_500, "prompt_eval_count": sum(tokens)})

    # ------------------------------------------------------- chat / generate
    async def _complete(self, request: web.Request) -> web.StreamResponse:
        """/api/chat and /api/generate: validation in Ollama's order, then the next Reply."""
        chat = request.path == "/api/chat"
        body = self._body(request, "ChatRequest" if chat else "GenerateRequest")
        name = body.get("model") or ""
        think = body.get("think")
        if think is not None and not isinstance(think, bool) and think not in ("high", "medium", "low", "max"):
            raise _Fail(400, f'invalid think value: "{think}" (must be "high", "medium", '
                             f'"low", "max", true, or false)')
        if not 0 <= (body.get("top_logprobs") or 0) <= 20:
            raise _Fail(400, "top_logprobs must be between 0 and 20")
        if not name and chat:
            raise _Fail(400, "model is required")
        m = self._find(name)
        if m is None:
            raise _Fail(404, f"model '{name}' not found")
        if think and "thinking" not in m.capabilities:
            raise _Fail(400, f'"{name}" does not support thinking')
        if "completion" not in m.capabilities:
            raise _Fail(400, f'"{name}" does not support {"chat" if chat else "generate"}')
        if chat and body.get("tools") and "tools" not in m.capabilities:
            raise _Fail(400, f"{_full_name(m.name)} does not support tools")
        self.loaded[m.name.lower()] = time.time()
        if not (body.get("messages") if chat else body.get("prompt")):
            # load / unload request: answered directly, consumes no Reply
            reason = "unload" if body.get("keep_alive") in (0, "0", "0s", "0m") else "load"
            if reason == "unload":
                self.loaded.pop(m.name.lower(), None)
            head = {"model": name, "created_at": _now()}
            part = {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
            return _json({**head, **part, "done": True, "done_reason": reason})
        reply = self._replies.popleft() if self._replies else Reply()
        return await self._respond(request, body, reply, chat)

    def _objects(self, body: dict[str, Any], reply: Reply, chat: bool) -> list[dict[str, Any]]:
        """The full sequence of stream objects (last one is the done line)."""
        name = body["model"]
        pieces = list(reply.chunks) if reply.chunks is not None else _split(reply.content)
        schema = body.get("format")
        if isinstance(schema, dict) and not reply.ignore_format:
            options = body.get("options") or {}
            seed = options.get("seed") if isinstance(options, dict) else None
            pieces = _pieces(json.dumps(schema_instance(schema, seed=seed or 0)))
        if reply.huge_line_bytes:
            pieces.insert(0, "x" * reply.huge_line_bytes)
        tool_calls, done_reason = reply.tool_calls, reply.done_reason
        options = body.get("options") or {}
        limit = options.get("num_predict") if isinstance(options, dict) else None
        if isinstance(limit, int) and 0 < limit < len(pieces):
            pieces, tool_calls, done_reason = pieces[:limit], [], "length"
        thoughts = _split(reply.thinking or "") if body.get("think") is not False else []
        top_n = int(body.get("top_logprobs") or 0)
        want_lp = reply.logprobs or body.get("logprobs") is True

        def line(content: str = "", thinking: str = "", calls: list[Any] | None = None,
                 done: bool = False) -> dict[str, Any]:
            obj: dict[str, Any] = {"model": name, "created_at": ""}
            if chat:
                msg: dict[str, Any] = {"role": "assistant", "content": content}
                if thinking:
                    msg["thinking"] = thinking
                if calls:
                    msg["tool_calls"] = calls
                obj["message"] = msg
            else:
                obj["response"] = content
                if thinking:
                    obj["thinking"] = thinking
            obj["done"] = done
            token = content or thinking
            if want_lp and token and not done:
                lp: dict[str, Any] = {"token": token, "logprob": -0.25,
                                      "bytes": list(token.encode())}
                if top_n:
                    alts = [token, *(f"alt{i}" for i in range(1, top_n))]
                    lp["top_logprobs"] = [{"token": a, "logprob": -0.25 * (i + 1),
                                           "bytes": list(a.encode())} for i, a in enumerate(alts)]
                obj["logprobs"] = [lp]
            if calls and not chat:
                obj["tool_calls"] = calls
            return obj

        objs = [line(thinking=t) for t in thoughts] + [line(content=p) for p in pieces]
        if tool_calls:
            self._calls += 1
            ids = [tc.id or "call_" + hashlib.sha256(b"%d/%d" % (self._calls, i)).hexdigest()[:8]
                   for i, tc in enumerate(tool_calls)]
            objs.append(line(calls=[
                {"id": ids[i], "function": {"index": i, "name": tc.name, "arguments": tc.arguments}}
                for i, tc in enumerate(tool_calls)]))
        evals = len(objs) if reply.eval_count is None else reply.eval_count
        final = line(done=True)
        final["done_reason"] = done_reason
        if not chat and not body.get("raw"):
            final["context"] = list(range(1, reply.prompt_eval_count + evals + 1))
        metrics = {"total_duration": 2_000_000 + (reply.prompt_eval_count + evals) * 1_000_000,
                   "load_duration": 1_000_000, "prompt_eval_count": reply.prompt_eval_count,
                   "prompt_eval_duration": reply.prompt_eval_count * 100_000, "eval_count": evals,
                   "eval_duration": evals * 900_000}
        final.update({k: v for k, v in metrics.items() if v})  # Go omitempty drops zeros
        return [*objs, final]

    @staticmethod
    def _aggregate(objs: list[dict[str, Any]], chat: bool) -> dict[str, Any]:
        """The stream=false body: Ollama concatenates text, thinking, tool calls and logprobs."""
        final = objs[-1]
        parts = [o["message"] if chat else o for o in objs[:-1]]
        text = "".join(p["content" if chat else "response"] for p in parts)
        thinking = "".join(p.get("thinking", "") for p in parts)
        calls = [c for p in parts for c in p.get("tool_calls", [])]
        logprobs = [lp for o in objs for lp in o.get("logprobs", [])]
        out: dict[str, Any] = {"model": final["model"], "created_at": _now()}
        body: dict[str, Any] = {"role": "assistant", "content": text} if chat else {
            "response": text}
        if thinking:
            body["thinking"] = thinking
        if calls and chat:
            body["tool_calls"] = calls
        if chat:
            out["message"] = body
        else:
            out.update(body)
        out.update((k, v) for k, v in final.items() if k not in out and k != "message")
        if calls and not chat:
            out["tool_calls"] = calls
        if logprobs:
            out["logprobs"] = logprobs
        return out

    async def _respond(self, request: web.Request, body: dict[str, Any], reply: Reply,
                       chat: bool) -> web.StreamResponse:
        """Plays one Reply, including its faults; notes client disconnects."""
        transport = request.transport
        if transport is not None:
            self._live.add(transport)
        self.open_streams += 1
        self.stream_started.set()
        dying = False
        try:
            if reply.first_byte_delay:
                await asyncio.sleep(reply.first_byte_delay)
            if reply.hang_before_headers:
                await asyncio.get_running_loop().create_future()
            if reply.html_error:
                status = reply.status if reply.status != 200 else 502
                return web.Response(status=status, text=_HTML.format(s=status),
                                    content_type="text/html")
            status = reply.status if reply.status != 200 else 500
            message = reply.error or DEFAULT_STREAM_ERROR
            if reply.error_after_lines is None and (reply.status != 200 or reply.error):
                return _error(status, message)
            objs = self._objects(body, reply, chat)
            if body.get("stream") is False:
                if reply.hang or reply.die_after_lines is not None:
                    dying = reply.die_after_lines is not None
                    if dying and transport is not None:
                        transport.close()
                    await asyncio.get_running_loop().create_future()
                if reply.error_after_lines is not None:
                    return _error(status, message)
                await asyncio.sleep(reply.line_delay * len(objs))
                return _json(self._aggregate(objs, chat))
            plan: list[Any] = list(objs)
            if reply.error_after_lines is not None:
                plan = plan[:min(reply.error_after_lines, len(plan) - 1)] + [{"error": message}]
            if reply.garbage_after_lines is not None:
                plan.insert(reply.garbage_after_lines, GARBAGE_LINE)
            if reply.hang:
                plan = [*plan[:1], _HANG]
            if reply.die_after_lines is not None:
                plan = [*plan[:reply.die_after_lines], _DIE]
            if plan and isinstance(plan[0], dict) and "error" in plan[0]:
                return _error(status, message)  # nothing written yet: Ollama answers a status
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            for i, item in enumerate(plan):
                if item is _HANG:
                    await asyncio.get_running_loop().create_future()
                if item is _DIE:
                    dying = True
                    if transport is not None:
                        transport.close()  # flushes what was written; no terminating chunk
                    await asyncio.get_running_loop().create_future()
                if i and reply.line_delay:
                    await asyncio.sleep(reply.line_delay)
                if not resp.prepared:
                    await resp.prepare(request)  # headers leave with the first line
                if isinstance(item, dict):
                    if "created_at" in item:
                        item["created_at"] = _now()
                    item = _dumps(item) + b"\n"
                try:
                    await resp.write(item)
                except ConnectionResetError:
                    self._client_gone()
                    return resp
            try:
                if not resp.prepared:
                    await resp.prepare(request)
                await resp.write_eof()
            except ConnectionResetError:
                self._client_gone()
            return resp
        except asyncio.CancelledError:
            if not dying and not self._stopping:
                self._client_gone()
            raise
        finally:
            self.open_streams -= 1
            if transport is not None:
                self._live.discard(transport)

    def _client_gone(self) -> None:
        self.client_disconnects += 1
        self.stream_closed.set()
