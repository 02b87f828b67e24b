// Compare: one prompt sent to two or three models at once, the answers streaming side by side.
//
// Each column is a playground answer (answer.js: Markdown, reasoning, tool calls) with the same
// figures the playground shows, from the same stream data: time to first token, tokens per
// second and `usage`; a table under the columns puts them next to each other. The requests are
// independent: one failing or stopped leaves the others streaming. Nothing is kept.

import { getJson } from "./api.js";
import { messageView, streamAnswer } from "./answer.js";
import { figures, requestBody, statsLine, usageText } from "./chat.js";
import { el, table } from "./dom.js";
import { grouped, millis } from "./format.js";
import { chatModels, modelOption } from "./models.js";

const SLOTS = ["compare-model-1", "compare-model-2", "compare-model-3"];

/** The models picked, in slot order, without blanks or repeats. */
export function picked(values) {
  return values.filter((v, i) => v && values.indexOf(v) === i);
}

/** One row of the figures table for a finished (or failed) answer. */
export function figuresRow(model, timing) {
  const f = figures(timing);
  return [
    model,
    f.firstTokenMs === null ? "—" : millis(f.firstTokenMs),
    f.tokensPerSecond === null ? "—" : f.tokensPerSecond.toFixed(1),
    f.usage ? grouped(f.usage.prompt_tokens) : "—",
    f.usage ? grouped(f.usage.completion_tokens) : "—",
    f.usage ? grouped(f.usage.total_tokens) : "—",
    timing.error ? "error" : timing.stopped ? "stopped" : "done",
  ];
}

function stat(label, value) {
  return el("div", { class: "stat" }, el("span", { class: "muted" }, label), el("strong", {}, value));
}

function figuresBlock(timing) {
  const f = figures(timing);
  return el("div", { class: "stats figures" },
    stat("First token", f.firstTokenMs === null ? "—" : millis(f.firstTokenMs)),
    stat("Tokens/s", f.tokensPerSecond === null ? "—" : f.tokensPerSecond.toFixed(1)),
    stat("Usage", f.usage ? usageText(f.usage) : "—"));
}

export function initCompare() {
  const $ = (id) => document.getElementById(id);
  const form = $("compare-form");
  const columns = $("compare-columns");
  const summary = $("compare-summary");
  const status = $("compare-status");
  const send = $("compare-send");
  const stop = $("compare-stop");
  let controller = null;

  async function loadModels() {
    try {
      const models = chatModels((await getJson("/v1/models")).data);
      SLOTS.forEach((id, i) => {
        const select = $(id);
        const previous = select.value;
        const options = models.map(modelOption);
        if (i === 2) options.unshift(el("option", { value: "" }, "(none)"));
        select.replaceChildren(...options);
        if (previous && models.some((m) => m.id === previous)) select.value = previous;
        else if (i < 2 && models[i]) select.value = models[i].id;
      });
    } catch (error) {
      status.textContent = `Could not list models: ${error.message}`;
    }
  }

  async function run(event) {
    event.preventDefault();
    if (controller) return;
    const prompt = $("compare-user").value.trim();
    const models = picked(SLOTS.map((id) => $(id).value));
    if (!prompt) return;
    if (models.length < 2) {
      status.textContent = "Pick two or three different models.";
      return;
    }
    const temperature = $("compare-temperature").value === "" ? null : Number($("compare-temperature").value);
    const maxTokens = $("compare-max-tokens").value === "" ? null : Number($("compare-max-tokens").value);
    const system = $("compare-system").value.trim();
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    status.textContent = `Streaming from ${models.length} models…`;
    summary.replaceChildren();
    const runs = models.map((model) => {
      const answer = { role: "assistant", content: "", reasoning: "", tool_calls: [] };
      const view = messageView(answer);
      view.node.classList.add("streaming");
      const column = el("article", { class: "card column", "data-model": model },
        el("h2", {}, model), view.node);
      return { model, answer, view, column };
    });
    columns.replaceChildren(...runs.map((r) => r.column));
    columns.dataset.count = String(runs.length);
    const user = { role: "user", content: prompt, images: [] };
    const timings = await Promise.all(runs.map(async ({ model, answer, view, column }) => {
      const body = requestBody({ model, system, temperature, maxTokens, tools: null, store: false }, [user]);
      const timing = await streamAnswer(body, answer, view, { signal: controller.signal });
      view.node.classList.remove("streaming");
      if (timing.error) view.stats.before(el("p", { class: "error" }, timing.error.message));
      view.stats.textContent = statsLine(timing);
      column.append(figuresBlock(timing));
      return timing;
    }));
    summary.replaceChildren(table(["Model", "First token", "Tokens/s", "Prompt", "Completion", "Total", ""],
      runs.map((r, i) => figuresRow(r.model, timings[i])), (i) => i > 0 && i < 6));
    status.textContent = timings.some((t) => t.stopped) ? "Stopped." : "";
    controller = null;
    send.disabled = false;
    stop.disabled = true;
  }

  form.addEventListener("submit", run);
  $("compare-user").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  stop.addEventListener("click", () => controller?.abort());
  let started = false;
  return {
    show: () => { if (!started) { started = true; loadModels(); } },
    hide: () => {},
  };
}
