// One streamed chat answer, shared by the playground and compare: its view (reasoning, Markdown
// content, tool calls, stats) and the loop that folds the SSE frames into it.
//
// The text is kept as it arrives; the Markdown view is updated at most once per animation frame
// (requestAnimationFrame), however many tokens came in between, and only its changed blocks are
// rebuilt (markdown.js). A hidden tab renders nothing until the stream ends.

import { ApiError, call, readError } from "./api.js";
import { mergeToolCalls } from "./chat.js";
import { el } from "./dom.js";
import { StreamingMarkdown, renderMarkdown } from "./markdown.js";
import { sseJson } from "./sse.js";

export function toolBlock(call) {
  let args = call.function.arguments;
  try {
    args = JSON.stringify(JSON.parse(args), null, 2);
  } catch {
    // still streaming, or not JSON: shown as sent
  }
  return el("div", { class: "tool-call" },
    el("div", { class: "tool-head" }, el("span", { class: "pill" }, "tool call"),
      el("code", {}, call.function.name || "?"), call.id ? el("span", { class: "muted" }, call.id) : null),
    el("pre", {}, args));
}

/** A transcript entry; returns its live parts so a stream can fill them. User text stays text. */
export function messageView(m) {
  const markdown = m.role === "assistant";
  const reasoningText = el("div", { class: "reasoning-text md" }, markdown ? renderMarkdown(m.reasoning || "") : m.reasoning || "");
  const reasoning = el("details", { class: "reasoning", hidden: !m.reasoning }, el("summary", {}, "Reasoning"), reasoningText);
  const content = el("div", { class: markdown ? "content md" : "content" }, markdown ? renderMarkdown(m.content || "") : m.content || "");
  const tools = el("div", { class: "tools" }, (m.tool_calls || []).map(toolBlock));
  const images = el("div", { class: "images" }, (m.images || []).map((src) => el("img", { src, alt: "attached image" })));
  const stats = el("div", { class: "stats-line muted" }, m.stats || "");
  const node = el("div", { class: `message ${m.role}` },
    el("div", { class: "role" }, m.role), reasoning, content, tools, images,
    m.error ? el("p", { class: "error" }, m.error) : null, stats);
  return { node, reasoning, reasoningText, content, tools, stats };
}

/** Calls `fn` once in the next animation frame however often it is asked; flush() runs it now. */
export function perFrame(fn) {
  let pending = false;
  return {
    request() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; fn(); });
    },
    flush() { fn(); },
  };
}

/**
 * POST `body` to the chat API and stream the answer into `answer` (the message object) and
 * `view` (from messageView). Returns the timing for statsLine, with `stopped` after an abort
 * and `error` (an Error) when the request or the stream failed. `onFirst` runs at the first token.
 */
export async function streamAnswer(body, answer, view, { signal, onFirst = () => {} } = {}) {
  const timing = { sentAt: performance.now(), firstAt: null, doneAt: null, usage: null, stopped: false };
  const content = new StreamingMarkdown(view.content);
  const reasoning = new StreamingMarkdown(view.reasoningText);
  const frame = perFrame(() => {
    content.update(answer.content);
    reasoning.update(answer.reasoning);
  });
  try {
    const response = await call("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal,
    });
    if (!response.ok) {
      const error = await readError(response);
      throw new ApiError(response.status, error.message, error);
    }
    for await (const chunk of sseJson(response)) {
      if (chunk.error) throw new Error(chunk.error.message || "the stream ended with an error");
      if (chunk.usage) timing.usage = chunk.usage;
      const delta = chunk.choices?.[0]?.delta;
      if (!delta) continue;
      const thinking = delta.reasoning ?? delta.reasoning_content;
      if ((thinking || delta.content || delta.tool_calls) && timing.firstAt === null) {
        timing.firstAt = performance.now();
        onFirst();
      }
      if (thinking) {
        answer.reasoning += thinking;
        if (view.reasoning.hidden) { view.reasoning.hidden = false; view.reasoning.open = true; }
      }
      if (delta.content) {
        if (view.reasoning.open && !answer.content) view.reasoning.open = false;  // the answer began
        answer.content += delta.content;
      }
      if (delta.tool_calls) {
        mergeToolCalls(answer.tool_calls, delta.tool_calls);
        view.tools.replaceChildren(...answer.tool_calls.map(toolBlock));
      }
      if (thinking || delta.content) frame.request();
    }
  } catch (error) {
    if (error.name === "AbortError") timing.stopped = true;
    else timing.error = error;
  } finally {
    timing.doneAt = performance.now();
    content.finish(answer.content);
    reasoning.finish(answer.reasoning);
    // How many blocks were built for this answer: the work done, read by the tests.
    view.node.dataset.blocksBuilt = String(content.rebuilt + reasoning.rebuilt);
  }
  return timing;
}
