// The Batches view: OpenAI's Batch API as the official SDK sees it, with the user's key.
//
// GET /v1/batches?limit=&after= pages the list (`data`, `has_more`, `last_id`); each batch shows
// its status, endpoint, creation time and a progress bar from `request_counts` {total,
// completed, failed}; `output_file_id` / `error_file_id` download through
// GET /v1/files/{id}/content; a batch still running can be cancelled
// (POST /v1/batches/{id}/cancel). A 404 on /v1/batches means this proxy does not serve the
// Batch API, a 400 that it is off (it needs the store): the view says so in a note instead of
// showing an error. Refreshed every 5 s while open.

import { ApiError, call, getJson, readError } from "./api.js";
import { el, table } from "./dom.js";
import { grouped } from "./format.js";

const PAGE = 20;
const REFRESH_MS = 5000;
// OpenAI's statuses in which a batch can still be cancelled.
const CANCELLABLE = new Set(["validating", "in_progress", "finalizing"]);

/** {done, total, failed, percent} of a batch's request_counts (0 of 0 while validating). */
export function progress(batch) {
  const counts = batch.request_counts || {};
  const total = Number(counts.total) || 0;
  const completed = Number(counts.completed) || 0;
  const failed = Number(counts.failed) || 0;
  const done = completed + failed;
  return { done, total, failed, percent: total ? Math.min(100, Math.round((done / total) * 100)) : 0 };
}

/** "12 of 20 requests · 1 failed". */
export function progressText(batch) {
  const p = progress(batch);
  return `${grouped(p.done)} of ${grouped(p.total)} requests${p.failed ? ` · ${grouped(p.failed)} failed` : ""}`;
}

/** The list URL for the page after `after` (null: the first page). */
export function listUrl(after) {
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (after) query.set("after", after);
  return `/v1/batches?${query}`;
}

async function downloadFile(fileId, name) {
  const response = await call(`/v1/files/${encodeURIComponent(fileId)}/content`);
  if (!response.ok) {
    const error = await readError(response);
    throw new ApiError(response.status, error.message, error);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function initBatches() {
  const $ = (id) => document.getElementById(id);
  const list = $("batches-list");
  const status = $("batches-status");
  const more = $("batches-more");
  let batches = [];
  let lastId = null;
  let pages = 1;  // pages opened with "Older batches", reloaded on each refresh
  let timer = null;
  let busy = false;

  function actions(b) {
    const run = (label, work) => async () => {
      try {
        await work();
      } catch (error) {
        status.textContent = `${label} ${b.id}: ${error.message}`;
      }
    };
    return el("div", { class: "row start actions" },
      b.output_file_id ? el("button", { type: "button", class: "quiet small", "data-action": "output",
        onclick: run("Could not download the output of", () => downloadFile(b.output_file_id, `${b.id}-output.jsonl`)) }, "Output") : null,
      b.error_file_id ? el("button", { type: "button", class: "quiet small", "data-action": "errors",
        onclick: run("Could not download the errors of", () => downloadFile(b.error_file_id, `${b.id}-errors.jsonl`)) }, "Errors") : null,
      CANCELLABLE.has(b.status) ? el("button", { type: "button", class: "quiet small", "data-action": "cancel",
        onclick: run("Could not cancel", async () => {
          await getJson(`/v1/batches/${encodeURIComponent(b.id)}/cancel`, { method: "POST" });
          await refresh();
        }) }, "Cancel") : null);
  }

  function row(b) {
    const p = progress(b);
    return [
      el("code", {}, b.id),
      el("span", { class: `pill status-${b.status}` }, b.status),
      b.endpoint || "—",
      b.created_at ? new Date(b.created_at * 1000).toLocaleString() : "—",
      el("span", { class: "progress" }, el("progress", { max: p.total || 1, value: p.done }), progressText(b)),
      actions(b),
    ];
  }

  function show() {
    list.replaceChildren(batches.length
      ? table(["Batch", "Status", "Endpoint", "Created", "Progress", ""], batches.map(row))
      : el("p", { class: "muted" }, "No batches yet. Create one with the SDK: client.batches.create(input_file_id=…, endpoint=\"/v1/chat/completions\", completion_window=\"24h\")."));
    list.querySelectorAll("tbody tr").forEach((tr, i) => { tr.dataset.batch = batches[i].id; });
  }

  /** Reloads the pages shown so far (the first one, and as many more as were opened). */
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const loaded = [];
      let after = null;
      let hasMore = false;
      for (let page = 0; page < pages; page += 1) {
        const response = await call(listUrl(after));
        if (response.status === 404 || response.status === 400) {
          // 404: not served here; 400: served but off (it needs the store): a note, not an error.
          const why = response.status === 404
            ? "This proxy does not serve the Batch API (/v1/batches answered 404: it is turned off or not available here)."
            : `The Batch API is not available on this proxy: ${(await readError(response)).message}`;
          batches = [];
          list.replaceChildren(el("p", { class: "note", id: "batches-off" }, why));
          more.hidden = true;
          status.textContent = "";
          return;
        }
        if (!response.ok) {
          const error = await readError(response);
          throw new ApiError(response.status, error.message, error);
        }
        const body = await response.json();
        loaded.push(...(body.data || []));
        hasMore = Boolean(body.has_more);
        after = body.last_id ?? body.data?.at(-1)?.id ?? null;
        if (!hasMore) break;
      }
      batches = loaded;
      lastId = after;
      more.hidden = !hasMore;
      show();
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      status.textContent = `Could not list batches: ${error.message}`;
    } finally {
      busy = false;
    }
  }

  async function older() {
    try {
      const body = await getJson(listUrl(lastId));
      batches.push(...(body.data || []));
      pages += 1;
      lastId = body.last_id ?? body.data?.at(-1)?.id ?? lastId;
      more.hidden = !body.has_more;
      show();
    } catch (error) {
      status.textContent = `Could not list batches: ${error.message}`;
    }
  }

  $("batches-refresh").addEventListener("click", refresh);
  more.addEventListener("click", older);
  return {
    show: () => { refresh(); clearInterval(timer); timer = setInterval(refresh, REFRESH_MS); },
    hide: () => { clearInterval(timer); timer = null; },
  };
}
