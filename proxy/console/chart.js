// Stacked bar charts in SVG, drawn at the container's real width so text stays readable from a
// phone to a desktop: a y axis with round ticks and its unit, x labels thinned to fit, a legend.

import { svg, el } from "./dom.js";
import { compact, grouped } from "./format.js";

export const PALETTE = ["#2f6db5", "#e07b28", "#3b9b5a", "#c23b4a", "#7d5cc0", "#8c6a3c",
  "#d263a9", "#6f7780", "#b3a21c", "#1fa3b5"];

/** The tick step that splits 0..max into about `count` round intervals (1, 2 or 5 × 10^n). */
export function niceStep(max, count = 4) {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  const step = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10;
  return Math.max(step * magnitude, 1);  // counts are integers: no fractional ticks
}

/**
 * Draw into `host` (emptied first): {title, unit, labels, series: [{name, values}]}.
 * Each bar segment carries data-series/data-value and a <title> for hover and tests.
 */
export function stackedBars(host, { title, unit, labels, series }) {
  const width = Math.max(280, Math.floor(host.clientWidth || 600));
  const narrow = width < 520;
  const height = narrow ? 220 : 280;
  const margin = { top: 12, right: 12, bottom: 36, left: narrow ? 44 : 60 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const step = niceStep(Math.max(0, ...totals));
  const top = Math.max(step, Math.ceil(Math.max(0, ...totals) / step) * step);
  const y = (v) => margin.top + plotH - (v / top) * plotH;
  const band = plotW / Math.max(1, labels.length);
  const barW = Math.max(1, Math.min(band * 0.72, 64));

  const axis = svg("g", { class: "axis" });
  for (let v = 0; v <= top + step / 2; v += step) {
    axis.append(
      svg("line", { x1: margin.left, x2: width - margin.right, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: margin.left - 6, y: y(v) + 4, "text-anchor": "end" }, compact(v)),
    );
  }
  axis.append(svg("text", {
    class: "unit", transform: `translate(12 ${margin.top + plotH / 2}) rotate(-90)`, "text-anchor": "middle",
  }, unit));
  const every = Math.max(1, Math.ceil(labels.length / Math.max(1, Math.floor(plotW / (narrow ? 74 : 88)))));
  labels.forEach((label, i) => {
    if (i % every) return;
    const half = label.length * 3.4;  // about half the label's width at 12px: keep it inside
    const x = Math.min(Math.max(margin.left + band * (i + 0.5), half + 2), width - half - 2);
    axis.append(svg("text", { x, y: height - margin.bottom + 18, "text-anchor": "middle" }, label));
  });
  axis.append(svg("line", {
    x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0), class: "baseline",
  }));

  const bars = svg("g", { class: "bars" });
  labels.forEach((label, i) => {
    let base = 0;
    series.forEach((s, k) => {
      const value = s.values[i] || 0;
      if (!value) return;
      const x = margin.left + band * i + (band - barW) / 2;
      bars.append(svg("rect", {
        x, y: y(base + value), width: barW, height: Math.max(1, y(base) - y(base + value)),
        fill: PALETTE[k % PALETTE.length], "data-series": s.name, "data-value": value,
      }, svg("title", {}, `${label} · ${s.name}: ${grouped(value)} ${unit}`)));
      base += value;
    });
  });

  const chart = svg("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart",
  }, svg("title", {}, title), axis, bars);
  const legend = el("ul", { class: "legend" }, series.map((s, k) =>
    el("li", {}, svg("svg", { width: 12, height: 12, "aria-hidden": "true" },
      svg("rect", { width: 12, height: 12, rx: 2, fill: PALETTE[k % PALETTE.length] })), s.name)));
  host.replaceChildren(chart, legend);
}
