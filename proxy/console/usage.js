// The usage view: OpenAI's Usage API (GET /v1/organization/usage/{completions,embeddings})
// drawn as stacked bars per model and, for admin keys, per API key, with tables and CSV.
//
// Fields read from each page: data[] buckets {start_time, end_time, results[]}, has_more,
// next_page; from each result: input_tokens, output_tokens (completions only),
// num_model_requests, model, api_key_id.

import { ApiError, call, readError } from "./api.js";
import { stackedBars } from "./chart.js";
import { el, table } from "./dom.js";
import { bucketLabel, dayStart, dayValue, grouped, toCsv } from "./format.js";

const WIDTH_SECONDS = { "1d": 86400, "1h": 3600 };
const PAGE_LIMIT = { "1d": 31, "1h": 168 };  // OpenAI's maximum `limit` per bucket width

/** Every bucket of the range, following next_page; 403 on api_key_id grouping falls back. */
export async function fetchUsage(kind, start, end, width) {
  for (const groupBy of ["model,api_key_id", "model"]) {
    try {
      return { buckets: await fetchPages(kind, start, end, width, groupBy), perKey: groupBy.includes("api_key_id") };
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 403 && groupBy !== "model")) throw error;
    }
  }
  throw new Error("unreachable");
}

async function fetchPages(kind, start, end, width, groupBy) {
  const buckets = [];
  let page = null;
  do {
    const params = new URLSearchParams({
      start_time: String(start), end_time: String(end), bucket_width: width,
      group_by: groupBy, limit: String(PAGE_LIMIT[width]),
    });
    if (page) params.set("page", page);
    const response = await call(`/v1/organization/usage/${kind}?${params}`);
    if (!response.ok) {
      const body = await readError(response);
      throw new ApiError(response.status, body.message, body);
    }
    const data = await response.json();
    buckets.push(...(Array.isArray(data.data) ? data.data : []));
    page = data.has_more ? data.next_page : null;
  } while (page);
  return buckets;
}

/**
 * Buckets -> one row per bucket of the whole range (empty ones included), and series per model
 * and per key: {labels, starts, byModel: {tokens, requests}, byKey: {tokens}, rows (flat)}.
 */
export function aggregate(buckets, start, end, width) {
  const step = WIDTH_SECONDS[width];
  const starts = [];
  for (let t = start; t < end; t += step) starts.push(t);
  const index = new Map(starts.map((t, i) => [t, i]));
  const tokens = new Map();
  const requests = new Map();
  const keyTokens = new Map();
  const rows = [];
  const add = (map, name, i, value) => {
    if (!map.has(name)) map.set(name, new Array(starts.length).fill(0));
    map.get(name)[i] += value;
  };
  for (const bucket of buckets) {
    const i = index.get(Math.floor((bucket.start_time - start) / step) * step + start);
    if (i === undefined) continue;
    for (const r of bucket.results || []) {
      const input = Number(r.input_tokens) || 0;
      const output = Number(r.output_tokens) || 0;
      const count = Number(r.num_model_requests) || 0;
      const model = r.model ?? "(all models)";
      add(tokens, model, i, input + output);
      add(requests, model, i, count);
      if (r.api_key_id !== null && r.api_key_id !== undefined) add(keyTokens, r.api_key_id, i, input + output);
      rows.push([bucketLabel(bucket.start_time, width), r.model ?? "", r.api_key_id ?? "", input, output, count]);
    }
  }
  const series = (map) => [...map].map(([name, values]) => ({ name, values }))
    .sort((a, b) => sum(b.values) - sum(a.values));
  return {
    labels: starts.map((t) => bucketLabel(t, width)),
    tokens: series(tokens), requests: series(requests), keys: series(keyTokens), rows,
  };
}

function sum(values) {
  return values.reduce((a, b) => a + b, 0);
}

function download(name, rows) {
  const url = URL.createObjectURL(new Blob([toCsv(rows)], { type: "text/csv" }));
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** One chart block: heading, the chart, its table and a CSV button. */
function chartBlock(id, title, unit, labels, series, column) {
  const host = el("div", { class: "chart-host" });
  const head = [column, ...series.map((s) => s.name), "Total"];
  const rows = labels.map((label, i) => {
    const values = series.map((s) => s.values[i]);
    return [label, ...values, sum(values)];
  }).filter((row) => row[row.length - 1] > 0);
  const totals = ["Total", ...series.map((s) => sum(s.values)), sum(series.map((s) => sum(s.values)))];
  const shown = [...rows, totals].map((row) => row.map((c, i) => (i ? grouped(c) : c)));
  const block = el("section", { class: "card chart-card", id },
    el("div", { class: "row" }, el("h2", {}, title),
      el("button", {
        type: "button", class: "quiet", onclick: () => download(`${id}.csv`, [head, ...rows, totals]),
      }, "CSV")),
    host,
    series.length ? table(head, shown, (i) => i > 0) : el("p", { class: "muted" }, "No usage in this range."));
  let drawnWidth = -1;
  const draw = () => {  // on first show and when the width changes (not on height changes)
    if (host.clientWidth === drawnWidth) return;
    drawnWidth = host.clientWidth;
    stackedBars(host, { title, unit, labels, series });
  };
  return { block, host, draw };
}

export function initUsage() {
  const form = document.getElementById("usage-form");
  const from = document.getElementById("usage-from");
  const to = document.getElementById("usage-to");
  const status = document.getElementById("usage-status");
  const charts = document.getElementById("usage-charts");
  const today = new Date();
  to.value = dayValue(today);
  from.value = dayValue(new Date(today.getTime() - 6 * 86400000));
  let drawn = [];
  const observer = new ResizeObserver(() => drawn.forEach((c) => c.draw()));

  async function load() {
    const width = document.getElementById("usage-width").value;
    const kind = document.getElementById("usage-kind").value;
    const start = dayStart(from.value);
    const end = dayStart(to.value) + 86400;
    if (!(end > start)) {
      status.textContent = "The range ends before it starts.";
      return;
    }
    status.textContent = "Loading…";
    try {
      const { buckets, perKey } = await fetchUsage(kind, start, end, width);
      const data = aggregate(buckets, start, end, width);
      const column = width === "1d" ? "Day (UTC)" : "Hour (UTC)";
      const per = width === "1d" ? "day" : "hour";
      const blocks = [
        chartBlock("usage-tokens", `Tokens per ${per} by model`, "tokens", data.labels, data.tokens, column),
        chartBlock("usage-requests", `Requests per ${per} by model`, "requests", data.labels, data.requests, column),
      ];
      if (perKey && data.keys.length) {
        blocks.push(chartBlock("usage-keys", `Tokens per ${per} by API key`, "tokens", data.labels, data.keys, column));
      }
      const raw = el("button", {
        type: "button", class: "quiet", onclick: () => download(`usage-${kind}.csv`,
          [[column, "model", "api_key_id", "input_tokens", "output_tokens", "num_model_requests"], ...data.rows]),
      }, "Download all rows (CSV)");
      charts.replaceChildren(...blocks.map((b) => b.block), raw);
      observer.disconnect();
      drawn = blocks;
      blocks.forEach((b) => { b.draw(); observer.observe(b.host); });
      status.textContent = `${data.rows.length} result rows, ${buckets.length} buckets.`;
    } catch (error) {
      const message = error instanceof ApiError && error.status === 404
        ? "The Usage API is not available on this proxy (is the store enabled?)."
        : `Could not load usage: ${error.message}`;
      charts.replaceChildren(el("p", { class: "error" }, message));
      status.textContent = "";
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  return { show: load, hide: () => {} };
}
