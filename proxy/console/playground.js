// The playground: pick a model, send a conversation, watch the answer stream in.
//
// Reads /v1/models (id, display_label, context_length, capabilities), streams
// POST /v1/chat/completions with stream_options.include_usage, shows delta.reasoning /
// delta.reasoning_content apart from delta.content, tool calls as blocks, then time to first
// token, tokens per second and `usage`. Answers (and reasoning) are rendered as Markdown while
// they stream (answer.js, markdown.js); the user's own messages stay plain text. Conversations are kept in localStorage; when the proxy
// stores completions (GET /v1/chat/completions answers 200) requests carry store: true and the
// stored ones are listed.

import { call, getJson } from "./api.js";
import { messageView, streamAnswer } from "./answer.js";
import { el } from "./dom.js";
import { requestBody, statsLine } from "./chat.js";
import { chatModels, modelInfo, modelOption } from "./models.js";

const STORAGE_ITEM = "ollama-proxy-console.conversations";
const MAX_SAVED = 50;

// ---------------------------------------------------------------- conversations (localStorage)

function loadSaved() {
  try {
    const list = JSON.parse(localStorage.getItem(STORAGE_ITEM) || "[]");
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

/** Save, newest first; if the quota is exceeded, images are dropped from the saved copies. */
function persist(list) {
  const kept = list.slice(0, MAX_SAVED);
  try {
    localStorage.setItem(STORAGE_ITEM, JSON.stringify(kept));
    return true;
  } catch {
    const light = kept.map((c) => ({ ...c, messages: c.messages.map((m) => ({ ...m, images: [] })) }));
    try {
      localStorage.setItem(STORAGE_ITEM, JSON.stringify(light));
    } catch {
      return false;
    }
    return false;
  }
}

function newConversation() {
  // Not crypto.randomUUID(): it exists only in secure contexts, and the console may be served
  // over plain http on a LAN address. The id only tells saved conversations apart.
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  return { id, title: "New conversation", updated: Date.now(), messages: [] };
}

// ---------------------------------------------------------------- the view

export function initPlayground() {
  const $ = (id) => document.getElementById(id);
  const form = $("chat-form");
  const modelSelect = $("model");
  const transcript = $("transcript");
  const status = $("chat-status");
  const send = $("send");
  const stop = $("stop");
  const userBox = $("user");
  const imagesBox = $("images");
  let models = [];
  let saved = loadSaved();
  let current = newConversation();
  let pendingImages = [];
  let controller = null;
  let storeOn = false;

  // -- models
  async function loadModels() {
    try {
      const data = await getJson("/v1/models");
      models = chatModels(data.data);
      const previous = modelSelect.value || current.model;
      modelSelect.replaceChildren(...models.map(modelOption));
      if (previous && models.some((m) => m.id === previous)) modelSelect.value = previous;
      showModelInfo();
    } catch (error) {
      status.textContent = `Could not list models: ${error.message}`;
    }
  }

  function showModelInfo() {
    const m = models.find((x) => x.id === modelSelect.value);
    $("model-info").textContent = m ? modelInfo(m) : "";
  }

  modelSelect.addEventListener("change", showModelInfo);

  // -- stored completions (only when the proxy's store answers)
  async function loadStored() {
    try {
      const response = await call("/v1/chat/completions?limit=20&order=desc", { prompt: false });
      storeOn = response.ok;
      if (!storeOn) {
        $("stored-block").hidden = true;
        return;
      }
      const data = await response.json();
      $("stored-block").hidden = false;
      $("stored-list").replaceChildren(...(data.data || []).map((c) => el("li", {},
        el("button", { type: "button", class: "link", onclick: () => openStored(c) },
          `${new Date(c.created * 1000).toLocaleString()} · ${c.model}`,
          el("span", { class: "muted" }, ` ${preview(c.choices?.[0]?.message?.content)}`)))));
    } catch {
      storeOn = false;
    }
  }

  async function openStored(completion) {
    try {
      const page = await getJson(`/v1/chat/completions/${encodeURIComponent(completion.id)}/messages?limit=100`);
      const messages = (page.data || []).filter((m) => m.role !== "system").map((m) => ({
        role: m.role, content: typeof m.content === "string" ? m.content : textOf(m.content), images: [],
      }));
      const answer = completion.choices?.[0]?.message || {};
      messages.push({ role: "assistant", content: answer.content || "", tool_calls: answer.tool_calls,
        reasoning: answer.reasoning || answer.reasoning_content || "",
        stats: completion.usage ? statsLine({ sentAt: 0, firstAt: null, doneAt: 0, usage: completion.usage }) : "" });
      const system = (page.data || []).find((m) => m.role === "system");
      current = {
        ...newConversation(), title: preview(messages[0]?.content) || completion.id, model: completion.model,
        system: system ? String(system.content) : "", messages,
      };
      render();
    } catch (error) {
      status.textContent = `Could not open ${completion.id}: ${error.message}`;
    }
  }

  // -- conversations
  function renderList() {
    $("conversation-list").replaceChildren(...saved.map((c) => el("li", { class: c.id === current.id ? "active" : null },
      el("button", { type: "button", class: "link", onclick: () => { current = structuredClone(c); render(); } }, c.title),
      el("button", { type: "button", class: "quiet small", "aria-label": `Delete ${c.title}`, onclick: () => {
        saved = saved.filter((x) => x.id !== c.id);
        persist(saved);
        if (current.id === c.id) current = newConversation();
        render();
      } }, "×"))));
  }

  function save() {
    current.updated = Date.now();
    saved = [structuredClone(current), ...saved.filter((c) => c.id !== current.id)];
    if (!persist(saved)) status.textContent = "Browser storage is full: images were not kept with the conversation.";
    renderList();
  }

  function render() {
    transcript.replaceChildren(...current.messages.map((m) => messageView(m).node));
    if (current.model && models.some((m) => m.id === current.model)) modelSelect.value = current.model;
    if (current.system !== undefined) $("system").value = current.system;
    showModelInfo();
    renderList();
  }

  $("new-conversation").addEventListener("click", () => {
    current = newConversation();
    render();
  });

  // -- images by drag and drop (or paste), sent as data URLs
  function addImages(files) {
    for (const file of files) {
      if (!file.type.startsWith("image/")) continue;
      const reader = new FileReader();
      reader.addEventListener("load", () => {
        pendingImages.push(reader.result);
        showPending();
      });
      reader.readAsDataURL(file);
    }
  }

  function showPending() {
    imagesBox.replaceChildren(...pendingImages.map((src, i) => el("figure", {},
      el("img", { src, alt: "image to send" }),
      el("button", { type: "button", class: "quiet small", "aria-label": "Remove image",
        onclick: () => { pendingImages.splice(i, 1); showPending(); } }, "×"))));
    const m = models.find((x) => x.id === modelSelect.value);
    if (pendingImages.length && m?.capabilities && !m.capabilities.includes("vision")) {
      status.textContent = `${m.id} does not list the vision capability.`;
    }
  }

  const drop = $("dropzone");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    addImages(event.dataTransfer?.files || []);
  });
  userBox.addEventListener("paste", (event) => addImages(event.clipboardData?.files || []));

  // -- sending and streaming
  function settings() {
    const temperature = $("temperature").value === "" ? null : Number($("temperature").value);
    const maxTokens = $("max-tokens").value === "" ? null : Number($("max-tokens").value);
    let tools = null;
    const toolsText = $("tools").value.trim();
    if (toolsText) tools = JSON.parse(toolsText);  // a SyntaxError is reported by the caller
    return { model: modelSelect.value, system: $("system").value.trim(), temperature, maxTokens, tools, store: storeOn };
  }

  async function run(event) {
    event.preventDefault();
    if (controller) return;
    const text = userBox.value.trim();
    if (!text && !pendingImages.length) return;
    let options;
    try {
      options = settings();
    } catch (error) {
      status.textContent = `Tools must be a JSON array: ${error.message}`;
      return;
    }
    const user = { role: "user", content: text, images: pendingImages };
    current.messages.push(user);
    current.model = options.model;
    current.system = options.system;
    if (current.title === "New conversation") current.title = preview(text) || "Image";
    transcript.append(messageView(user).node);
    userBox.value = "";
    pendingImages = [];
    showPending();

    const answer = { role: "assistant", content: "", reasoning: "", tool_calls: [] };
    const view = messageView(answer);
    transcript.append(view.node);
    view.node.classList.add("streaming");
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    status.textContent = "Waiting for the first token…";
    const timing = await streamAnswer(requestBody(options, current.messages), answer, view, {
      signal: controller.signal,
      onFirst: () => { status.textContent = "Streaming…"; },
    });
    status.textContent = timing.stopped ? "Stopped." : "";
    if (timing.error) {
      answer.error = timing.error.message;
      view.stats.before(el("p", { class: "error" }, timing.error.message));
    }
    answer.stats = statsLine(timing);
    view.stats.textContent = answer.stats;
    view.node.classList.remove("streaming");
    controller = null;
    send.disabled = false;
    stop.disabled = true;
    current.messages.push(answer);
    save();
    if (storeOn) loadStored();
  }

  form.addEventListener("submit", run);
  userBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  stop.addEventListener("click", () => controller?.abort());

  render();
  let started = false;
  return {
    show: () => {
      if (!started) { started = true; loadModels().then(render); loadStored(); }
    },
    hide: () => {},
  };
}

function textOf(parts) {
  return Array.isArray(parts) ? parts.filter((p) => p.type === "text").map((p) => p.text).join("\n") : "";
}

function preview(text) {
  const t = (text || "").replace(/\s+/g, " ").trim();
  return t.length > 48 ? `${t.slice(0, 47)}…` : t;
}
