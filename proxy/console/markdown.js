// Markdown for model answers: the subset chat models write, parsed here and built as DOM nodes.
//
// Safe by construction: text only ever becomes text nodes (createElement + textContent through
// dom.js), so raw HTML in an answer (`<img onerror=…>`, `<script>`) is shown as the characters
// it is, never parsed; attributes are only the few set below; a link is made only for an
// absolute http:, https: or mailto: URL (anything else stays as its source text) and opens with
// rel="noopener noreferrer" in a new tab. Nothing here needs innerHTML, eval or inline handlers,
// so the console's CSP stays as strict as it is.
//
// Streaming (StreamingMarkdown): the answer is split into top-level blocks; blocks before the
// last two are frozen (their nodes are never touched again and their text is not parsed again),
// the rest are parsed on each update and only the blocks whose source changed are rebuilt,
// usually just the last one. Updates are coalesced to one per animation frame by the caller.
//
// The subset: paragraphs, ATX headings (# …), emphasis (* _ ** __ ~~), inline code, links
// ([text](url), <url>, bare http(s) URLs), images as links, ordered/bullet lists (nested by
// indentation), blockquotes, thematic breaks, GFM tables (with alignment) and fenced code
// (``` or ~~~, language shown, copy button). Not supported: setext headings (a `---` line is a
// break), indented code blocks, reference links, HTML (shown as text).

import { el } from "./dom.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+|$)/;
const DELIMITER = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
const BLANK = /^[ \t]*$/;

// ---------------------------------------------------------------- blocks (pure)

/** Lines of `text` with their start offsets ("\r\n" and "\r" end lines too). */
function splitLines(text) {
  const lines = [];
  const re = /\r\n|\r|\n/g;
  let at = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    lines.push({ text: text.slice(at, m.index), start: at });
    at = m.index + m[0].length;
  }
  if (at < text.length) lines.push({ text: text.slice(at), start: at });
  return lines;
}

function cells(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  const out = [];
  let cell = "";
  for (let i = 0; i < s.length; i += 1) {
    if (s[i] === "\\" && s[i + 1] === "|") { cell += "|"; i += 1; } else if (s[i] === "|") { out.push(cell.trim()); cell = ""; } else cell += s[i];
  }
  out.push(cell.trim());
  return out;
}

function isTableStart(lines, i) {
  return i + 1 < lines.length && lines[i].text.includes("|") && DELIMITER.test(lines[i + 1].text)
    && lines[i + 1].text.includes("-") && cells(lines[i].text).length === cells(lines[i + 1].text).length;
}

/** Whether line i starts a block other than a paragraph (so it ends a paragraph). */
function interrupts(lines, i) {
  const t = lines[i].text;
  return FENCE.test(t) || HEADING.test(t) || RULE.test(t) || QUOTE.test(t) || isTableStart(lines, i)
    || startsItem(t);
}

/** A list item that may interrupt a paragraph: not empty, and an ordered one only from 1. */
function startsItem(t) {
  const m = ITEM.exec(t);
  return Boolean(m) && !BLANK.test(t.slice(m[0].length)) && (!/\d/.test(m[2]) || parseInt(m[2], 10) === 1);
}

function itemIndent(match) {
  return match[1].length + match[2].length + Math.max(1, Math.min(match[3].length || 1, 4));
}

/** Removes up to `n` columns of leading spaces. */
function dedent(text, n) {
  let i = 0;
  while (i < n && text[i] === " ") i += 1;
  return text.slice(i);
}

/** One block starting at lines[i]: [block, next index]. */
function block(lines, i) {
  const t = lines[i].text;
  let m = FENCE.exec(t);
  if (m) {
    const fence = m[1];
    const indent = t.length - t.trimStart().length;
    const body = [];
    let j = i + 1;
    let closed = false;
    for (; j < lines.length; j += 1) {
      const close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(lines[j].text);
      if (close && close[1][0] === fence[0] && close[1].length >= fence.length) { closed = true; j += 1; break; }
      body.push(dedent(lines[j].text, indent));
    }
    return [{ type: "code", lang: m[2], code: body.join("\n"), closed }, j];
  }
  m = HEADING.exec(t);
  if (m) return [{ type: "heading", level: m[1].length, text: m[2] || "" }, i + 1];
  if (RULE.test(t)) return [{ type: "hr" }, i + 1];
  if (QUOTE.test(t)) {
    const inner = [];
    let j = i;
    for (; j < lines.length && !BLANK.test(lines[j].text); j += 1) {
      if (!QUOTE.test(lines[j].text) && j > i && interrupts(lines, j)) break;
      inner.push(lines[j].text.replace(QUOTE, ""));
    }
    return [{ type: "quote", blocks: parseBlocks(inner.join("\n")) }, j];
  }
  if (isTableStart(lines, i)) {
    const align = cells(lines[i + 1].text).map((c) => (c.startsWith(":") && c.endsWith(":") ? "center"
      : c.endsWith(":") ? "right" : c.startsWith(":") ? "left" : null));
    const head = cells(t);
    const rows = [];
    let j = i + 2;
    for (; j < lines.length && !BLANK.test(lines[j].text) && lines[j].text.includes("|"); j += 1) {
      const row = cells(lines[j].text).slice(0, head.length);
      while (row.length < head.length) row.push("");
      rows.push(row);
    }
    return [{ type: "table", align, head, rows }, j];
  }
  m = ITEM.exec(t);
  if (m) return list(lines, i, m);
  const text = [t.trim()];
  let j = i + 1;
  for (; j < lines.length && !BLANK.test(lines[j].text) && !interrupts(lines, j); j += 1) text.push(lines[j].text.trim());
  return [{ type: "paragraph", text: text.join("\n") }, j];
}

/** A list from lines[i] (whose ITEM match is `m`): items of the same kind, nested by indent. */
function list(lines, i, m) {
  const kind = (match) => (/\d/.test(match[2]) ? "ol" : "ul") + match[2].slice(-1);
  const ordered = /\d/.test(m[2]);
  const items = [];
  let loose = false;
  let j = i;
  for (let start = m; ;) {
    const indent = itemIndent(start);
    const body = [lines[j].text.slice(start[0].length)];
    let blanks = 0;
    for (j += 1; j < lines.length; j += 1) {
      const line = lines[j].text;
      if (BLANK.test(line)) { blanks += 1; continue; }
      if (line.length - line.trimStart().length >= indent) {
        for (; blanks; blanks -= 1) body.push("");
        body.push(dedent(line, indent));
      } else if (!blanks && !ITEM.test(line) && !interrupts(lines, j)) {
        body.push(line.trim());  // a lazy continuation line
      } else break;
    }
    items.push(parseBlocks(body.join("\n")));
    const next = j < lines.length ? ITEM.exec(lines[j].text) : null;
    if (next && kind(next) === kind(m)) {
      if (blanks) loose = true;
      start = next;
      continue;
    }
    j -= blanks;  // blank lines after the last item are not part of the list
    break;
  }
  return [{ type: "list", ordered, first: ordered ? parseInt(m[2], 10) : 1, loose, items }, j];
}

/** The blocks of `text`, each with `src` (its source text) and `start` (its offset). */
export function parseBlocks(text) {
  const lines = splitLines(text);
  const blocks = [];
  let i = 0;
  while (i < lines.length) {
    if (BLANK.test(lines[i].text)) { i += 1; continue; }
    const [b, next] = block(lines, i);
    const end = next < lines.length ? lines[next].start : text.length;
    b.start = lines[i].start;
    b.src = text.slice(b.start, end);
    blocks.push(b);
    i = next;
  }
  return blocks;
}

// ---------------------------------------------------------------- inline (pure)

const PUNCT = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/;
const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);

/** The absolute http(s)/mailto URL of `href`, or null for anything else (javascript:, relative…). */
export function safeUrl(href) {
  try {
    const url = new URL(href.trim());
    return SAFE_SCHEMES.has(url.protocol) ? url.href : null;
  } catch {
    return null;  // relative or malformed: not a link
  }
}

/** The index of the `]` closing the `[` at `open`, brackets nested, escapes skipped; or -1. */
function closingBracket(s, open) {
  let depth = 0;
  for (let i = open; i < s.length; i += 1) {
    if (s[i] === "\\") i += 1;
    else if (s[i] === "`") { const end = s.indexOf("`", i + 1); if (end > 0) i = end; }
    else if (s[i] === "[") depth += 1;
    else if (s[i] === "]" && (depth -= 1) === 0) return i;
  }
  return -1;
}

// Sticky (`y`) patterns, matched at an index without copying the rest of the text.
const LINK_TARGET = /\(\s*(<[^<>\n]*>|[^\s()<>]*(?:\([^\s()<>]*\)[^\s()<>]*)*)(?:\s+("[^"]*"|'[^']*'))?\s*\)/y;
const AUTOLINK = /<([a-zA-Z][a-zA-Z0-9+.-]{1,31}:[^\s<>]*)>/y;
const BARE_URL = /https?:\/\/[^\s<>]+/iy;
const TICKS = /`+/y;

function matchAt(re, s, at) {
  re.lastIndex = at;
  return re.exec(s);
}

/** `(url "title")` at `at`: [url, index after ")"] or null. */
function linkTarget(s, at) {
  const m = matchAt(LINK_TARGET, s, at);
  if (!m) return null;
  const url = m[1].startsWith("<") ? m[1].slice(1, -1) : m[1];
  return [url, at + m[0].length];
}

const EMPHASIS = [["**", "strong"], ["__", "strong"], ["~~", "del"], ["*", "em"], ["_", "em"]];
const WORD = /[\p{L}\p{N}]/u;

/** The closing `delim` for an opener at `at`, or -1 (no space inside, `_` not inside words). */
function closingDelimiter(s, at, delim) {
  const from = at + delim.length;
  if (from >= s.length || /\s/.test(s[from])) return -1;
  if (delim[0] === "_" && at > 0 && WORD.test(s[at - 1])) return -1;
  for (let i = from + 1; i <= s.length - delim.length; i += 1) {
    if (s[i] === "\\") { i += 1; continue; }
    if (s[i] === "`") { const end = s.indexOf("`", i + 1); if (end > 0) { i = end; continue; } }
    if (!s.startsWith(delim, i) || /\s/.test(s[i - 1])) continue;
    if (delim.length === 1 && s[i + 1] === delim) { i += 1; continue; }  // part of a ** run
    if (delim[0] === "_" && WORD.test(s[i + delim.length] || "")) continue;
    if (delim.length === 2 && s[i + 2] === delim[0]) return i + 1;  // ***both***: ** outside
    return i;
  }
  return -1;
}

/**
 * Inline Markdown as a tree of plain nodes: strings, {type: "code", text}, {type: "br"},
 * {type: "strong"|"em"|"del", children}, {type: "link", href, children}.
 */
export function parseInline(s) {
  const out = [];
  let text = "";
  const flush = () => { if (text) { out.push(text); text = ""; } };
  for (let i = 0; i < s.length;) {
    const c = s[i];
    if (c === "\\" && PUNCT.test(s[i + 1] || "")) { text += s[i + 1]; i += 2; continue; }
    if (c === "\n") { flush(); out.push({ type: "br" }); i += 1; continue; }
    if (c === "`") {
      const run = matchAt(TICKS, s, i)[0];
      let end = s.indexOf(run, i + run.length);
      while (end > 0 && s[end + run.length] === "`") {
        while (s[end] === "`") end += 1;
        end = s.indexOf(run, end);
      }
      if (end > 0) {
        let code = s.slice(i + run.length, end).replace(/\n/g, " ");
        if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ")) code = code.slice(1, -1);
        flush(); out.push({ type: "code", text: code }); i = end + run.length; continue;
      }
      text += run; i += run.length; continue;
    }
    if (c === "[" || (c === "!" && s[i + 1] === "[")) {
      const open = c === "!" ? i + 1 : i;
      const close = closingBracket(s, open);
      const target = close > 0 ? linkTarget(s, close + 1) : null;
      if (target) {
        const [url, next] = target;
        const href = safeUrl(url);
        const label = s.slice(open + 1, close);
        flush();
        if (href) out.push({ type: "link", href, children: c === "!" ? [label || url] : parseInline(label) });
        else out.push(s.slice(i, next));  // not a safe link: shown as written
        i = next; continue;
      }
    }
    if (c === "<") {
      const m = matchAt(AUTOLINK, s, i);
      const href = m && safeUrl(m[1]);
      if (href) { flush(); out.push({ type: "link", href, children: [m[1]] }); i += m[0].length; continue; }
    }
    if ((c === "h" || c === "H") && (i === 0 || !WORD.test(s[i - 1]))) {
      const m = matchAt(BARE_URL, s, i);
      if (m) {
        const raw = m[0].replace(/[.,:;!?'"*_~)\]]+$/, "");
        const href = raw.length > 8 && safeUrl(raw);
        if (href) { flush(); out.push({ type: "link", href, children: [raw] }); i += raw.length; continue; }
      }
    }
    const emphasis = EMPHASIS.find(([d]) => s.startsWith(d, i));
    if (emphasis) {
      const [delim, type] = emphasis;
      const end = closingDelimiter(s, i, delim);
      if (end > 0) {
        flush(); out.push({ type, children: parseInline(s.slice(i + delim.length, end)) });
        i = end + delim.length; continue;
      }
      text += delim; i += delim.length; continue;
    }
    text += c; i += 1;
  }
  flush();
  return out;
}

// ---------------------------------------------------------------- DOM

function inlineNodes(tree) {
  return tree.map((n) => {
    if (typeof n === "string") return n;
    if (n.type === "br") return el("br");
    if (n.type === "code") return el("code", {}, n.text);
    if (n.type === "link") {
      return el("a", { href: n.href, rel: "noopener noreferrer", target: "_blank" }, inlineNodes(n.children));
    }
    return el(n.type, {}, inlineNodes(n.children));
  });
}

/** Inline Markdown of `s` as DOM nodes. */
export function renderInline(s) {
  return inlineNodes(parseInline(s));
}

/** Copy `text` to the clipboard (the async API where the page is a secure context, else execCommand). */
export async function copyText(text, anchor) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = el("textarea", { readonly: true, class: "offscreen" });
  area.value = text;
  anchor.append(area);
  area.select();
  try {
    if (!document.execCommand("copy")) throw new Error("copy was refused");
  } finally {
    area.remove();
  }
}

function codeBlock(b) {
  const lang = /^[\w+#.-]{1,32}$/.test(b.lang) ? b.lang : "";
  const button = el("button", { type: "button", class: "quiet small copy", "aria-label": "Copy code" }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await copyText(b.code, button.parentNode);
      button.textContent = "Copied";
      button.dataset.copied = "true";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  return el("div", { class: "code-block" },
    el("div", { class: "code-head" }, el("span", { class: "lang" }, lang || "text"), button),
    el("pre", {}, el("code", { class: lang ? `language-${lang}` : null }, b.code)));
}

/** One block (as parseBlocks returns it) as a DOM node. */
export function renderBlock(b) {
  switch (b.type) {
    case "code": return codeBlock(b);
    case "heading": return el(`h${b.level}`, {}, renderInline(b.text));
    case "hr": return el("hr");
    case "quote": return el("blockquote", {}, b.blocks.map(renderBlock));
    case "table":
      return el("div", { class: "table-wrap" }, el("table", { class: "md-table" },
        el("thead", {}, el("tr", {}, b.head.map((h, i) => el("th", { class: b.align[i] && `align-${b.align[i]}` }, renderInline(h))))),
        el("tbody", {}, b.rows.map((row) => el("tr", {}, row.map((c, i) => el("td", { class: b.align[i] && `align-${b.align[i]}` }, renderInline(c))))))));
    case "list":
      return el(b.ordered ? "ol" : "ul", { start: b.ordered && b.first !== 1 ? b.first : null },
        b.items.map((blocks) => el("li", {}, blocks.map((x) => (
          !b.loose && x.type === "paragraph" ? el("span", {}, renderInline(x.text)) : renderBlock(x))))));
    default: return el("p", {}, renderInline(b.text));
  }
}

/** Markdown `text` as DOM nodes (one per top-level block). */
export function renderMarkdown(text) {
  return parseBlocks(text).map(renderBlock);
}

/**
 * A container that shows a growing Markdown text: update(text) with the whole text so far
 * rebuilds only the blocks whose source changed; blocks before the last two are frozen.
 */
export class StreamingMarkdown {
  constructor(container) {
    this.container = container;
    this.frozenAt = 0;       // offset where the parsed tail starts
    this.frozen = [];        // sources of the frozen blocks, to check the finished text
    this.live = [];          // [{src, node}] of the tail's blocks, in order
    this.text = "";
    this.rebuilt = 0;        // blocks built so far (a measure of the work done)
    this.done = false;
  }

  update(text) {
    if (this.done) return;  // finished: a late frame must not patch the final render
    this.text = text;
    const blocks = parseBlocks(text.slice(this.frozenAt));
    let same = 0;
    while (same < this.live.length && same < blocks.length && this.live[same].src === blocks[same].src) same += 1;
    for (const old of this.live.splice(same)) old.node.remove();
    for (const b of blocks.slice(same)) {
      const node = renderBlock(b);
      this.container.append(node);
      this.live.push({ src: b.src, node });
      this.rebuilt += 1;
    }
    const keep = blocks.length - 2;
    if (keep > 0) {
      this.frozen.push(...this.live.splice(0, keep).map((x) => x.src));
      this.frozenAt += blocks[keep].start;
    }
  }

  /** The final text: rebuilt from scratch only if its blocks differ from what was streamed. */
  finish(text = this.text) {
    this.update(text);
    const srcs = parseBlocks(text).map((b) => b.src);
    const shown = [...this.frozen, ...this.live.map((x) => x.src)];
    if (srcs.length !== shown.length || srcs.some((s, i) => s !== shown[i])) {
      this.container.replaceChildren(...renderMarkdown(text));
      this.rebuilt += srcs.length;
    }
    this.done = true;
  }
}
