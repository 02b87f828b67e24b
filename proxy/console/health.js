// The health view: every Ollama server from /v1/health, and the proxy's own load from /metrics
// when metrics are on, refreshed every few seconds while the view is open.
//
// /v1/health is read in these shapes (snake_case or camelCase keys):
//   one server:  {status, reason?, ollama: {reachable, version, latency_ms}}
//   a pool:      {status, reason?, upstreams: [{name, reachable, eligible, version, latency_ms,
//                 error, in_flight, ejected_for_s, models: <count>,
//                 loaded: [{model, size, size_vram, expires_at}]}]}
//   (also accepted: `servers` for `upstreams`, `models` as the loaded list, `name` for `model`)
// /metrics (Prometheus text): ollama_proxy_requests_in_flight{model} and
// ollama_proxy_admission_waiting.

import { call } from "./api.js";
import { el, table } from "./dom.js";
import { bytes, millis, until } from "./format.js";

const pick = (o, snake, camel) => (o[snake] !== undefined ? o[snake] : o[camel]);

function model(m) {
  return {
    name: m.name ?? m.model ?? "?",
    size: Number(m.size) || 0,
    vram: Number(pick(m, "size_vram", "sizeVram")) || 0,
    expires: pick(m, "expires_at", "expiresAt"),
  };
}

function server(s, fallbackName, reason) {
  const models = [s.loaded, s.models].find(Array.isArray) ?? null;  // pool: models is a count
  const inFlight = pick(s, "in_flight", "inFlight");
  const ejected = pick(s, "ejected_for_s", "ejectedForS");
  return {
    name: s.name ?? s.url ?? pick(s, "base_url", "baseUrl") ?? fallbackName,
    url: s.url ?? pick(s, "base_url", "baseUrl") ?? null,
    reachable: s.reachable === true,
    version: s.version ?? null,
    latency: pick(s, "latency_ms", "latencyMs") ?? null,
    reason: s.reason ?? s.error ?? reason ?? null,
    models: models ? models.map(model) : null,
    inFlight: typeof inFlight === "number" ? inFlight : null,
    ejectedFor: typeof ejected === "number" ? ejected : null,
  };
}

/** The servers of a /v1/health body, whichever shape it has. */
export function serversOf(body) {
  if (!body || typeof body !== "object") return [];
  const list = [body.upstreams, body.servers].find(Array.isArray);
  if (list) return list.map((s, i) => server(s, `server ${i + 1}`));
  if (body.ollama && typeof body.ollama === "object") {
    return [server(body.ollama, "ollama", body.status === "ok" ? null : body.reason)];
  }
  return [];
}

/** Samples of a Prometheus text exposition: [{name, labels, value}]. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** The proxy's load: {inFlight, perModel: [[model, n]], waiting} (null where not exported). */
export function proxyLoad(samples) {
  const inflight = samples.filter((s) => s.name === "ollama_proxy_requests_in_flight");
  const waiting = samples.filter((s) => s.name === "ollama_proxy_admission_waiting");
  return {
    inFlight: inflight.length ? inflight.reduce((a, s) => a + s.value, 0) : null,
    perModel: inflight.filter((s) => s.value > 0).map((s) => [s.labels.model ?? "?", s.value]),
    waiting: waiting.length ? waiting.reduce((a, s) => a + s.value, 0) : null,
  };
}

function stat(label, value) {
  return el("div", { class: "stat" }, el("span", { class: "muted" }, label), el("strong", {}, value));
}

function serverCard(s) {
  const models = s.models === null
    ? el("p", { class: "muted" }, "Loaded models: not reported for a single server (a pool of servers reports them).")
    : s.models.length === 0
      ? el("p", { class: "muted" }, "No model loaded.")
      : table(["Model", "Size", "In VRAM", "On GPU", "Unloads"], s.models.map((m) => {
        const share = m.size ? Math.round((m.vram / m.size) * 100) : 0;
        return [m.name, bytes(m.size), bytes(m.vram),
          el("span", { class: "share" }, el("meter", { min: 0, max: 100, value: share }), `${share}%`),
          m.expires ? until(m.expires) : "—"];
      }), (i) => i > 0 && i < 4);
  return el("article", { class: `card server ${s.reachable ? "up" : "down"}`, "data-server": s.name },
    el("div", { class: "row" },
      el("h2", {}, s.name),
      el("span", { class: `pill ${s.reachable ? "up" : "down"}` }, s.reachable ? "up" : "down")),
    s.url && s.url !== s.name ? el("p", { class: "muted" }, s.url) : null,
    el("div", { class: "stats" },
      stat("Version", s.version ?? "—"),
      stat("Latency", s.latency === null ? "—" : millis(Number(s.latency))),
      s.inFlight === null ? null : stat("In flight", String(s.inFlight)),
      s.ejectedFor === null ? null : stat("Ejected for", `${Math.ceil(s.ejectedFor)} s`)),
    s.reason && !s.reachable ? el("p", { class: "error" }, s.reason) : null,
    models);
}

function loadCard(load) {
  if (load === null) {
    return el("article", { class: "card" }, el("h2", {}, "Proxy"),
      el("p", { class: "muted" }, "Metrics are not enabled on this proxy (/metrics), so in-flight requests and the queue are not shown."));
  }
  return el("article", { class: "card", id: "proxy-card" }, el("h2", {}, "Proxy"),
    el("div", { class: "stats" },
      stat("In flight", load.inFlight === null ? "—" : String(load.inFlight)),
      stat("Waiting in queue", load.waiting === null ? "—" : String(load.waiting))),
    load.perModel.length ? table(["Model", "In flight"], load.perModel, (i) => i === 1) : null);
}

async function readHealth() {
  const response = await call("/v1/health", { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => null);  // 503 still carries the JSON body
  return body;
}

async function readLoad() {
  try {
    const response = await call("/metrics", { prompt: false, headers: { Accept: "text/plain" } });
    if (!response.ok) return null;
    return proxyLoad(parseMetrics(await response.text()));
  } catch {
    return null;
  }
}

export function initHealth() {
  const servers = document.getElementById("servers");
  const load = document.getElementById("proxy-load");
  const status = document.getElementById("health-status");
  const every = document.getElementById("health-refresh");
  let timer = null;
  let busy = false;
  let visible = false;

  async function refresh() {
    if (busy || document.hidden) return;  // a background tab costs the proxy nothing
    busy = true;
    try {
      const [body, proxy] = await Promise.all([readHealth(), readLoad()]);
      const list = serversOf(body);
      servers.replaceChildren(...(list.length ? list.map(serverCard)
        : [el("p", { class: "error" }, "The health endpoint gave no server information.")]));
      load.replaceChildren(loadCard(proxy));
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      status.textContent = `Could not reach the proxy: ${error.message}`;
    } finally {
      busy = false;
    }
  }

  function schedule() {
    clearInterval(timer);
    timer = null;
    const seconds = Number(every.value);
    if (visible && seconds > 0) timer = setInterval(refresh, seconds * 1000);
  }

  every.addEventListener("change", () => { schedule(); refresh(); });
  document.addEventListener("visibilitychange", () => { if (visible && !document.hidden) refresh(); });
  return {
    show: () => { visible = true; refresh(); schedule(); },
    hide: () => { visible = false; schedule(); },
  };
}
