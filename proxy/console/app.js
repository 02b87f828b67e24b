// The console's entry point: hash routing between the views (only the open one polls).

import { initKeyButton } from "./api.js";
import { initBatches } from "./batches.js";
import { initCompare } from "./compare.js";
import { initHealth } from "./health.js";
import { initPlayground } from "./playground.js";
import { initUsage } from "./usage.js";

const views = {
  playground: initPlayground(),
  compare: initCompare(),
  usage: initUsage(),
  batches: initBatches(),
  health: initHealth(),
};
let open = null;

function route() {
  const name = location.hash.slice(1) in views ? location.hash.slice(1) : "playground";
  if (name === open) return;
  if (open) views[open].hide();
  for (const key of Object.keys(views)) {
    document.getElementById(`view-${key}`).hidden = key !== name;
    const link = document.querySelector(`nav a[data-view="${key}"]`);
    if (key === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  open = name;
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · Ollama proxy console`;
  views[name].show();
}

initKeyButton();
window.addEventListener("hashchange", route);
route();
