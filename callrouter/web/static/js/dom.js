// DOM helpers. Every piece of server text goes through textContent or an attribute,
// never through innerHTML: a caller's name is data, not markup.

/** Create an element: h("td", {class: "num", title: long}, "text", otherNode, null). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Same as h() for SVG elements. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(el.style, value); // CSSOM, which the pages' CSP allows (style="" it does not)
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A text cell that shows a long value cut with an ellipsis and the full value on hover. */
export function clip(tag, text, attrs = {}) {
  const value = text === null || text === undefined || text === "" ? "—" : String(text);
  return h(tag, { ...attrs, class: `clip ${attrs.class || ""}`.trim(), title: value }, value);
}

export function $(selector, root = document) {
  const el = root.querySelector(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
}

// ---- formatting -----------------------------------------------------------------

export function parseTime(value) {
  if (!value) return null;
  const t = value instanceof Date ? value : new Date(value);
  return Number.isNaN(t.getTime()) ? null : t;
}

/** "just now", "40 minutes ago", "3 hours ago", "2 days ago". */
export function ago(value, now = new Date()) {
  const t = parseTime(value);
  if (!t) return "";
  const seconds = Math.round((now - t) / 1000);
  if (seconds < 0) return inFuture(-seconds);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} minute${minutes === 1 ? "" : "s"} ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 36) return `${hours} hour${hours === 1 ? "" : "s"} ago`;
  const days = Math.round(hours / 24);
  return `${days} day${days === 1 ? "" : "s"} ago`;
}

function inFuture(seconds) {
  if (seconds < 60) return `in ${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `in ${minutes} min`;
  return `in ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** "in 1 h 20 min" for a future moment. */
export function until(value, now = new Date()) {
  const t = parseTime(value);
  if (!t) return "";
  const seconds = Math.round((t - now) / 1000);
  return seconds <= 0 ? "expired" : inFuture(seconds);
}

export function clock(value) {
  const t = parseTime(value);
  if (!t) return "";
  return t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function dateTime(value) {
  const t = parseTime(value);
  if (!t) return "";
  const today = new Date();
  const sameDay = t.toDateString() === today.toDateString();
  return sameDay
    ? t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : t.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** 75 -> "1:15", 3700 -> "1:01:40". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const total = Math.max(0, Math.round(Number(seconds)));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** "sticky_busy_wait" -> "sticky busy wait". */
export function words(code) {
  return String(code || "").replaceAll("_", " ");
}

export function ordinal(n) {
  return ["zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh",
    "eighth", "ninth", "tenth"][n] || `${n}th`;
}
