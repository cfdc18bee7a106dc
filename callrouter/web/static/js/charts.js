// Rolling-window charts computed in the browser from the decision stream: the API keeps
// counters for Prometheus, not time series, so the dashboard buckets what it has seen.
// Drawn as plain SVG (no library); every label is a text node.

import { fill, h, s, words } from "./dom.js";

/** Reason codes that mean the caller had someone to go back to (an operator or specialist). */
const STICKY_CANDIDATE = new Set([
  "sticky_available", "sticky_busy_wait", "sticky_unavailable", "sticky_operator_inactive",
  "sticky_strict_fallback", "opted_out", "abusive_protected", "specialist_last_contact",
  "specialist_busy_wait", "specialist_unavailable",
]);
const STICKY_HIT = new Set([
  "sticky_available", "sticky_busy_wait", "specialist_last_contact", "specialist_busy_wait",
]);
/** Causes of a call not going where the rules wanted: the machinery, or the target. */
export const FALLBACK_CAUSES = [
  "fallback_timeout", "fallback_store_down", "fallback_bad_input", "fallback_error",
  "sticky_unavailable", "sticky_operator_inactive", "sticky_strict_fallback",
  "specialist_unavailable", "opted_out", "abusive_protected",
];
const PALETTE = ["#b3261e", "#e8710a", "#8a5a00", "#6b3fa0", "#1f5fbf", "#0a8a8a", "#5c6570", "#c2185b", "#2e7d32", "#795548"];
export const CAUSE_COLOR = Object.fromEntries(FALLBACK_CAUSES.map((c, i) => [c, PALETTE[i % PALETTE.length]]));

const KEEP_MS = 4 * 3600 * 1000;

/** What one decision contributes to the charts. */
export function point(record) {
  const d = record.decision || record;
  const codes = (d.reasons || []).map((r) => (typeof r === "string" ? r : r.code));
  return {
    id: record.id,
    t: new Date(record.decided_at || record.at || Date.now()).getTime(),
    action: d.action,
    codes,
    escalated: Boolean(d.escalated),
    latency: Number(record.latency_ms ?? 0),
  };
}

export class Series {
  constructor() {
    this.points = [];
    this.seen = new Set();
  }

  add(record) {
    const p = point(record);
    if (p.id && this.seen.has(p.id)) return false;
    if (p.id) this.seen.add(p.id);
    this.points.push(p);
    return true;
  }

  prune(now = Date.now()) {
    const keep = [];
    for (const p of this.points) {
      if (now - p.t <= KEEP_MS) keep.push(p);
      else if (p.id) this.seen.delete(p.id);
    }
    this.points = keep;
  }

  /** ``count`` buckets covering the last ``windowMs``; each holds its decisions. */
  buckets(windowMs, count = 30, now = Date.now()) {
    const size = windowMs / count;
    const start = now - windowMs;
    const out = Array.from({ length: count }, (_, i) => ({ start: start + i * size, items: [] }));
    for (const p of this.points) {
      if (p.t < start || p.t > now) continue;
      out[Math.min(count - 1, Math.floor((p.t - start) / size))].items.push(p);
    }
    return out;
  }
}

export function stickyRate(items) {
  const candidates = items.filter((p) => p.codes.some((c) => STICKY_CANDIDATE.has(c)));
  if (!candidates.length) return null;
  const hits = candidates.filter((p) => p.action !== "queue" && p.codes.some((c) => STICKY_HIT.has(c)));
  return hits.length / candidates.length;
}

export function fallbackCounts(items) {
  const counts = {};
  for (const p of items) {
    for (const c of p.codes) if (c in CAUSE_COLOR) counts[c] = (counts[c] || 0) + 1;
  }
  return counts;
}

export function quantile(values, q) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

// ---- drawing ----------------------------------------------------------------------

const W = 400;
const H = 150;
const PAD = { left: 34, right: 8, top: 8, bottom: 20 };

function frame(title, yMax, yFormat, buckets) {
  const svg = s("svg", { class: "plot", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  svg.append(s("title", {}, title));
  const innerH = H - PAD.top - PAD.bottom;
  for (const frac of [0, 0.5, 1]) {
    const y = PAD.top + innerH * (1 - frac);
    svg.append(s("line", { class: frac === 0 ? "axis" : "grid", x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    svg.append(s("text", { x: PAD.left - 4, y: y + 3, "text-anchor": "end" }, yFormat(yMax * frac)));
  }
  const first = buckets[0];
  const last = buckets[buckets.length - 1];
  if (first && last) {
    const label = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    svg.append(s("text", { x: PAD.left, y: H - 5 }, label(first.start)));
    svg.append(s("text", { x: W - PAD.right, y: H - 5, "text-anchor": "end" }, "now"));
  }
  return svg;
}

function xOf(i, n) {
  const innerW = W - PAD.left - PAD.right;
  return PAD.left + (innerW * (i + 0.5)) / n;
}

function yOf(v, yMax) {
  const innerH = H - PAD.top - PAD.bottom;
  return PAD.top + innerH * (1 - Math.min(1, v / (yMax || 1)));
}

/** Lines with gaps where a bucket has no value (null). */
export function lineChart(title, buckets, series, { yMax, yFormat = String }) {
  const svg = frame(title, yMax, yFormat, buckets);
  const n = buckets.length;
  for (const line of series) {
    let d = "";
    let pen = false;
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? "L" : "M"}${xOf(i, n).toFixed(1)},${yOf(v, yMax).toFixed(1)} `;
      pen = true;
    });
    if (d) svg.append(s("path", { class: `line ${line.cls || ""}`, d: d.trim(), "data-series": line.name }));
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      svg.append(s("circle", { cx: xOf(i, n), cy: yOf(v, yMax), r: 2, class: `dot ${line.cls || ""}` },
        s("title", {}, `${line.name}: ${yFormat(v)}`)));
    });
  }
  return svg;
}

/** Stacked bars: ``stacks`` is [{name, color, values[]}]. */
export function barChart(title, buckets, stacks, { yFormat = String } = {}) {
  const totals = buckets.map((_, i) => stacks.reduce((sum, st) => sum + (st.values[i] || 0), 0));
  const yMax = Math.max(1, ...totals);
  const svg = frame(title, yMax, yFormat, buckets);
  const n = buckets.length;
  const innerW = W - PAD.left - PAD.right;
  const bw = Math.max(1, (innerW / n) * 0.7);
  buckets.forEach((_, i) => {
    let base = 0;
    for (const st of stacks) {
      const v = st.values[i] || 0;
      if (!v) continue;
      const y1 = yOf(base, yMax);
      const y2 = yOf(base + v, yMax);
      svg.append(s("rect", {
        class: "bar", x: (xOf(i, n) - bw / 2).toFixed(1), y: y2.toFixed(1), width: bw.toFixed(1),
        height: Math.max(0.5, y1 - y2).toFixed(1), fill: st.color || null, "data-series": st.name,
      }, s("title", {}, `${words(st.name)}: ${v}`)));
      base += v;
    }
  });
  return svg;
}

export function legend(entries) {
  return h("ul", { class: "legend" }, entries.map(([name, color]) =>
    h("li", {}, h("span", { class: "swatch", style: { backgroundColor: color } }), words(name))));
}

/** Redraw a chart figure: caption with the current value, the SVG, an optional legend. */
export function drawFigure(figure, caption, value, svg, extra = null) {
  fill(figure, h("figcaption", {}, h("span", {}, caption), h("span", { class: "value" }, value)), svg, extra);
}
