// The model picker's list from GET /v1/models, shared by the playground and compare.
//
// An entry with "alias_for": "<target>" is an alias the proxy resolves ([models.aliases]): it is
// listed under its own id, marked as an alias and shown with its target.

import { el } from "./dom.js";
import { grouped } from "./format.js";

/** The models that can chat: all but those listing only the embedding capability. */
export function chatModels(data) {
  return (data || []).filter((m) => !(m.capabilities || []).includes("embedding") || (m.capabilities || []).includes("completion"));
}

/** The alias target of an entry, or null. */
export function aliasOf(m) {
  return typeof m.alias_for === "string" && m.alias_for ? m.alias_for : null;
}

/** The option text: "fast (alias of llama3.2:latest)", "qwen3:8b — Qwen 3 8B" or the id. */
export function modelLabel(m) {
  const target = aliasOf(m);
  if (target) return `${m.id} (alias of ${target})`;
  return m.display_label ? `${m.id} — ${m.display_label}` : m.id;
}

/** The line under the picker: alias target, label, context length, capabilities. */
export function modelInfo(m) {
  const parts = [];
  const target = aliasOf(m);
  if (target) parts.push(`alias for ${target}`);
  if (m.display_label) parts.push(m.display_label);
  parts.push(m.context_length ? `context ${grouped(m.context_length)} tokens` : "context length unknown");
  parts.push(m.capabilities ? `capabilities: ${m.capabilities.join(", ")}` : "capabilities unknown");
  return parts.join(" · ");
}

export function modelOption(m) {
  const target = aliasOf(m);
  return el("option", { value: m.id, class: target ? "alias" : null, "data-alias-for": target }, modelLabel(m));
}
