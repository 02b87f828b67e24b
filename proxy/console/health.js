// The health view: every Ollama server from /v1/health, and the proxy's own load from /metrics
// when metrics are on, refreshed every few seconds while the view is open.
//
// /v1/health is read in the two shapes the proxy answers (proxy/upstream/probe.py, proxy/upstream/pool.py),
// snake_case or camelCase keys:
//   one server:  {status, reason?, ollama: {reachable, version?, latency_ms}}
//   a pool:      {status, reason?, upstreams: [{name, reachable, eligible, version, latency_ms,
//                 error, in_flight, consecutive_failures, ejected_for_s, models: <count or null>,
//                 loaded: [{model, size, size_vram, expires_at}]}]}
//   (also accepted: `servers` for `upstreams`, `models` as the loaded list, `name` for `model`)
// /metrics (Prometheus text, proxy/observe/metrics.py): ollama_proxy_requests_in_flight{model}
// and ollama_proxy_admission_waiting. The proxy declares the in-flight family even when nothing
// is in flight (no sample then), so a declared family without samples reads as 0, not unknown.
// With fair queuing the waiting gauge carries a `priority` label (high|default|low, and `key`
// when key labels are on) and ollama_proxy_admission_wait_seconds{priority} is a histogram:
// the queue card shows them per class (and per key).

import { call } from "./api.js";
import { el, table } from "./dom.js";
import { bytes, grouped, millis, until } from "./format.js";

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
  const failures = pick(s, "consecutive_failures", "consecutiveFailures");
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
    modelCount: typeof s.models === "number" ? s.models : null,  // a pool server's models
    failures: typeof failures === "number" ? failures : null,
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

/**
 * A Prometheus text exposition: {declared: [family names from # TYPE lines], samples:
 * [{name, labels, value}]}. A gauge family can be declared with no sample (no label set yet).
 */
export function parseMetrics(text) {
  const declared = [];
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    if (line.startsWith("#")) {
      const type = /^#\s*TYPE\s+([A-Za-z_:][\w:]*)\s/.exec(line);
      if (type) declared.push(type[1]);
      continue;
    }
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { declared, samples };
}

const IN_FLIGHT = "ollama_proxy_requests_in_flight";
const WAITING = "ollama_proxy_admission_waiting";

/** The proxy's load: {inFlight, perModel: [[model, n]], waiting} (null where not exported). */
export function proxyLoad({ declared, samples }) {
  const total = (name) => {
    const found = samples.filter((s) => s.name === name);
    if (!found.length) return declared.includes(name) ? 0 : null;
    return found.reduce((a, s) => a + s.value, 0);
  };
  return {
    inFlight: total(IN_FLIGHT),
    perModel: samples.filter((s) => s.name === IN_FLIGHT && s.value > 0).map((s) => [s.labels.model ?? "?", s.value]),
    waiting: total(WAITING),
  };
}

const WAIT = "ollama_proxy_admission_wait_seconds";
const PRIORITIES = ["high", "default", "low"];

/** The smallest bucket bound holding quantile q of a histogram's [[le, cumulative count]]. */
export function quantileBound(buckets, q) {
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (!total) return null;
  const found = sorted.find(([, n]) => n >= q * total);
  return found ? found[0] : null;
}

/**
 * The admission queue per priority class (fair queuing): [{priority, waiting, admitted,
 * meanWait, p95Wait}] in the order high, default, low (then any other), and per key
 * [{key, priority, waiting}] when the gauge carries a key_id label (per-key labels on); null when the proxy exports no
 * priority labels (no fair queuing).
 */
export function queueByPriority({ samples }) {
  const waiting = samples.filter((s) => s.name === WAITING && s.labels.priority !== undefined);
  const waits = samples.filter((s) => s.name.startsWith(WAIT) && s.labels.priority !== undefined);
  if (!waiting.length && !waits.length) return null;
  const names = [...new Set([...waiting, ...waits].map((s) => s.labels.priority))]
    .sort((a, b) => (PRIORITIES.indexOf(a) + 1 || 99) - (PRIORITIES.indexOf(b) + 1 || 99) || a.localeCompare(b));
  const classes = names.map((priority) => {
    const mine = waits.filter((s) => s.labels.priority === priority && s.labels.key_id === undefined);
    const count = mine.filter((s) => s.name === `${WAIT}_count`).reduce((a, s) => a + s.value, 0);
    const sum = mine.filter((s) => s.name === `${WAIT}_sum`).reduce((a, s) => a + s.value, 0);
    const buckets = mine.filter((s) => s.name === `${WAIT}_bucket`).map((s) => [Number(s.labels.le === "+Inf" ? Infinity : s.labels.le), s.value]);
    return {
      priority,
      waiting: waiting.filter((s) => s.labels.priority === priority).reduce((a, s) => a + s.value, 0),
      admitted: count,
      meanWait: count ? sum / count : null,
      p95Wait: quantileBound(buckets, 0.95),
    };
  });
  const keys = waiting.filter((s) => s.labels.key_id !== undefined)
    .map((s) => ({ key: s.labels.key_id, priority: s.labels.priority, waiting: s.value }))
    .sort((a, b) => b.waiting - a.waiting || a.key.localeCompare(b.key));
  return { classes, keys };
}

function seconds(x) {
  if (x === null) return "—";
  if (x === Infinity) return "> largest bucket";
  return millis(x * 1000);
}

function queueCard(queue) {
  return el("article", { class: "card", id: "queue-card" }, el("h2", {}, "Queue by priority"),
    table(["Priority", "Waiting", "Admitted", "Mean wait", "p95 wait ≤"], queue.classes.map((c) => [
      c.priority, String(c.waiting), grouped(c.admitted), seconds(c.meanWait), seconds(c.p95Wait)]), (i) => i > 0),
    queue.keys.length
      ? el("div", { class: "per-key" }, el("h3", {}, "Waiting per key"),
        table(["Key", "Priority", "Waiting"], queue.keys.map((k) => [k.key, k.priority, String(k.waiting)]), (i) => i === 2))
      : null);
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
      s.modelCount === null ? null : stat("Models", String(s.modelCount)),
      s.inFlight === null ? null : stat("In flight", String(s.inFlight)),
      s.ejectedFor === null ? null : stat("Ejected for", `${Math.ceil(s.ejectedFor)} s`),
      s.failures ? stat("Failed probes in a row", String(s.failures)) : null),
    s.reason && !s.reachable ? el("p", { class: "error" }, s.reason) : null,
    models);
}

// Why /metrics gave nothing, by its status: off (404, or on a port of its own), or behind the
// scrape token of [metrics] token, which is not an API key and which the console never has.
const NO_METRICS = {
  404: "Metrics are not served on this port (/metrics is off, or on a port of its own), so in-flight requests and the queue are not shown.",
  0: "Could not reach /metrics, so in-flight requests and the queue are not shown.",
  401: "/metrics needs its scrape token ([metrics] token), so in-flight requests and the queue are not shown.",
};

function loadCard(load) {
  if (load.samples === null) {
    return el("article", { class: "card" }, el("h2", {}, "Proxy"),
      el("p", { class: "muted" }, NO_METRICS[load.status] ?? `/metrics answered ${load.status}: in-flight requests and the queue are not shown.`));
  }
  const { inFlight, waiting, perModel } = proxyLoad(load.samples);
  return el("article", { class: "card", id: "proxy-card" }, el("h2", {}, "Proxy"),
    el("div", { class: "stats" },
      stat("In flight", inFlight === null ? "—" : String(inFlight)),
      stat("Waiting in queue", waiting === null ? "—" : String(waiting))),
    perModel.length ? table(["Model", "In flight"], perModel, (i) => i === 1) : null);
}

async function readHealth() {
  const response = await call("/v1/health", { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => null);  // 503 still carries the JSON body
  return body;
}

/** {status, samples}: the parsed exposition, or null samples with the status that refused it. */
async function readLoad() {
  try {
    const response = await call("/metrics", { prompt: false, headers: { Accept: "text/plain" } });
    if (!response.ok) return { status: response.status, samples: null };
    return { status: response.status, samples: parseMetrics(await response.text()) };
  } catch {
    return { status: 0, samples: null };
  }
}

export function initHealth() {
  const servers = document.getElementById("servers");
  const load = document.getElementById("proxy-load");
  const queueBox = document.getElementById("queue");
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
      const queue = proxy.samples && queueByPriority(proxy.samples);
      queueBox.replaceChildren(...(queue ? [queueCard(queue)] : []));
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
