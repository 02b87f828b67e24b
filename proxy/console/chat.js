// The chat request and its streamed answer as pure functions (no DOM, no network): the body the
// playground sends, tool-call deltas folded by index, and the timing/usage line.

import { grouped, millis } from "./format.js";

/** The OpenAI message for one transcript entry (images as image_url parts with data URLs). */
export function toApiMessage(m) {
  if (m.role === "user" && m.images && m.images.length) {
    return {
      role: "user",
      content: [{ type: "text", text: m.content }, ...m.images.map((url) => ({ type: "image_url", image_url: { url } }))],
    };
  }
  const out = { role: m.role, content: m.content };
  if (m.tool_calls && m.tool_calls.length) out.tool_calls = m.tool_calls;
  return out;
}

/** The request body: the conversation so far plus the settings. */
export function requestBody({ model, system, temperature, maxTokens, tools, store }, messages) {
  const body = {
    model,
    messages: [
      ...(system ? [{ role: "system", content: system }] : []),
      // An answer that failed before any text is shown, not sent back as an empty turn.
      ...messages.filter((m) => m.role !== "assistant" || m.content || m.tool_calls?.length).map(toApiMessage),
    ],
    stream: true,
    stream_options: { include_usage: true },
  };
  if (temperature !== null) body.temperature = temperature;
  if (maxTokens !== null) body.max_completion_tokens = maxTokens;
  if (tools) body.tools = tools;
  if (store) body.store = true;
  return body;
}

/** Fold one streamed tool-call delta into `calls` (by index, arguments concatenated). */
export function mergeToolCalls(calls, deltas) {
  for (const d of deltas) {
    const i = d.index ?? calls.length;
    const call = calls[i] ?? (calls[i] = { id: "", type: "function", function: { name: "", arguments: "" } });
    if (d.id) call.id = d.id;
    if (d.function?.name) call.function.name += d.function.name;
    if (d.function?.arguments) call.function.arguments += d.function.arguments;
  }
  return calls;
}

/**
 * The figures of one streamed answer: time to first token (ms), tokens per second (completion
 * tokens after the first over the time from the first token to the end) and `usage`; null
 * where the stream did not give them.
 */
export function figures({ sentAt, firstAt, doneAt, usage }) {
  const generated = usage?.completion_tokens;
  return {
    firstTokenMs: firstAt === null ? null : firstAt - sentAt,
    tokensPerSecond: firstAt !== null && generated > 1 && doneAt > firstAt ? (generated - 1) / ((doneAt - firstAt) / 1000) : null,
    usage: usage || null,
  };
}

/** "5 prompt + 11 completion = 16 tokens". */
export function usageText(usage) {
  return `${grouped(usage.prompt_tokens)} prompt + ${grouped(usage.completion_tokens)} completion = ${grouped(usage.total_tokens)} tokens`;
}

/** TTFT, tokens/s and usage as one line. */
export function statsLine(timing) {
  const { firstTokenMs, tokensPerSecond, usage } = figures(timing);
  const parts = [];
  if (firstTokenMs !== null) parts.push(`first token ${millis(firstTokenMs)}`);
  if (tokensPerSecond !== null) parts.push(`${tokensPerSecond.toFixed(1)} tokens/s`);
  if (usage) parts.push(usageText(usage));
  if (timing.stopped) parts.push("stopped");
  return parts.join(" · ");
}
