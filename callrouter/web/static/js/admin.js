// The admin dashboard: operators and their live states, sticky bindings, the decision
// log with filters, rolling charts, rules, the simulate box and incidents.

import { $, ago, clip, clock, dateTime, fill, h, until, words } from "./dom.js";
import {
  api, ApiError, getToken, onUnauthorized, setToken, showConnection, Stream, wallToggle,
} from "./api.js";
import {
  barChart, CAUSE_COLOR, drawFigure, fallbackCounts, legend, lineChart, quantile, Series, stickyRate,
} from "./charts.js";
import { PATHS } from "./paths.js";

const REASON_CODES = [
  "new_caller", "withheld", "shared_number", "vip", "incident", "sticky_available", "sticky_busy_wait",
  "sticky_unavailable", "sticky_operator_inactive", "sticky_off", "sticky_strict_fallback",
  "short_call_ignored", "opted_out", "abusive_protected", "specialist_last_contact", "specialist_ticket",
  "specialist_busy_wait", "specialist_unavailable", "ticket_escalated", "escalated_repeat",
  "escalation_capped", "escalation_suppressed_incident", "no_second_line", "no_specialist_available",
  "repeat_priority", "default_queue",
  "fallback_timeout", "fallback_store_down", "fallback_bad_input", "fallback_error",
];
const MAX_ROWS = 200;

const el = {
  signIn: $("#sign-in"), form: $("#sign-in-form"), tokenInput: $("#token"), signInError: $("#sign-in-error"),
  dash: $("#dash"), conn: $("#conn"), who: $("#who"), signOut: $("#sign-out"),
  operators: $("#operators tbody"), bindings: $("#bindings tbody"), bindingsNote: $("#bindings-note"),
  decisions: $("#decisions tbody"), decisionsStatus: $("#decisions-status"), filters: $("#decision-filters"),
  window: $("#window"),
};

const state = {
  me: null,
  stream: null,
  operators: new Map(), // id -> OperatorOut (state updated live)
  decisions: [], // DecisionRecordOut, newest first, as filtered
  filter: {},
  series: new Series(),
  bindingsFromApi: true,
  generation: 0,
  timers: [],
};

// ---- session ----------------------------------------------------------------------

async function signIn(token) {
  el.signInError.textContent = "";
  let me;
  try {
    me = await api(PATHS.whoami, { token });
  } catch (err) {
    el.signInError.textContent = err instanceof ApiError && err.status === 401 ? "That token is not valid (or was revoked)." : err.message;
    return;
  }
  if (me?.role === "operator") {
    el.signInError.textContent = "This is an operator token: operators use /console.";
    return;
  }
  setToken(token);
  start(me);
}

function start(me) {
  state.generation += 1;
  state.me = me;
  el.tokenInput.value = "";
  el.signIn.hidden = true;
  el.dash.hidden = false;
  el.signOut.hidden = false;
  const who = `${me.name || "token"} (${me.role})`;
  el.who.textContent = `Signed in as ${who}`;
  el.who.title = who;
  el.who.hidden = false;
  const adminOnly = me.role !== "admin";
  $("#rules-reload").disabled = adminOnly;
  $("#rules-reload").title = adminOnly ? "Only admins reload rules" : "";
  state.stream = new Stream(PATHS.dashboardStream, {
    handlers: { decision: onDecision, operator_state: onOperatorState, message: onMessage },
    onState: (s) => {
      showConnection(el.conn, s);
      // After a gap, reload what may have been missed while the stream was down.
      if (s === "live" && state.loaded) loadSnapshot();
    },
    checkAuth: () => api(PATHS.whoami),
    onUnauthorized: (reason) => signOut(reason === "token_revoked"
      ? "Your token was revoked: sign in with a new one." : "Your session ended: sign in again."),
  }).start();
  state.loaded = false;
  loadSnapshot().then(() => { state.loaded = true; });
  loadRules();
  loadIncidents();
  loadSystem();
  state.timers.push(setInterval(loadSystem, 15000));
  state.timers.push(setInterval(drawCharts, 10000)); // the window slides even when quiet
  state.timers.push(setInterval(loadBindings, 30000));
  state.timers.push(setInterval(() => renderOperators(), 30000)); // "since" texts age
}

function signOut(message = "") {
  state.generation += 1;
  if (state.stream) state.stream.stop();
  state.stream = null;
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  state.me = null;
  state.operators.clear();
  state.decisions = [];
  state.series = new Series();
  for (const tbody of [el.operators, el.bindings, el.decisions]) fill(tbody);
  for (const id of ["#rules", "#rules-meta", "#rules-result", "#simulate-result", "#incidents", "#incident-result", "#system", "#system-note"]) fill($(id));
  setToken("");
  showConnection(el.conn, "closed");
  el.dash.hidden = true;
  el.signOut.hidden = true;
  el.who.hidden = true;
  el.signIn.hidden = false;
  el.signInError.textContent = message;
  el.tokenInput.focus();
}

/** Run ``fn`` and drop its result if the user signed out or in again meanwhile. */
async function current(fn) {
  const generation = state.generation;
  const result = await fn();
  if (generation !== state.generation) throw new Error("stale");
  return result;
}

async function loadSnapshot() {
  await Promise.allSettled([loadOperators(), loadDecisions(), loadSeries()]);
  await loadBindings();
}

// ---- operators --------------------------------------------------------------------

async function loadOperators() {
  try {
    const list = await current(() => api(PATHS.operators));
    state.operators = new Map((list || []).map((op) => [op.id, op]));
    renderOperators();
  } catch (err) {
    if (err.message !== "stale") fill(el.operators, h("tr", {}, h("td", { colspan: 4, class: "error" }, err.message)));
  }
}

function onOperatorState(data) {
  if (!data?.operator_id) return;
  const op = state.operators.get(data.operator_id) || { id: data.operator_id, name: data.operator_id, tier: "", queues: [] };
  op.state = data.state;
  op.state_since = data.at || new Date().toISOString();
  if (data.state !== "in_call") op.current_call = data.current_call ?? null;
  if (data.current_call) op.current_call = data.current_call;
  state.operators.set(op.id, op);
  renderOperators();
  // An operator leaving a call may start or end a binding.
  if (data.state === "available" || data.state === "in_call") scheduleBindings();
}

function renderOperators() {
  const ops = [...state.operators.values()].sort((a, b) => String(a.name).localeCompare(String(b.name)));
  fill(el.operators, ops.length ? ops.map((op) => {
    const call = op.current_call;
    return h("tr", { dataset: { operator: op.id } },
      h("td", { class: "clip", title: `${op.name} (${op.id})` }, h("strong", {}, op.name), " ", h("span", { class: "muted code" }, op.id)),
      h("td", {}, words(op.tier)),
      h("td", {}, h("span", { class: "state", dataset: { state: op.state || "unknown" } }, words(op.state || "unknown")),
        op.state_since ? h("span", { class: "muted small" }, ` ${ago(op.state_since)}`) : null),
      call ? clip("td", `${call.caller_number || "withheld"}${call.queue ? ` · ${call.queue}` : ""}`) : h("td", { class: "muted" }, "—"),
    );
  }) : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No operators.")));
}

// ---- bindings ---------------------------------------------------------------------

let bindingsTimer = null;
function scheduleBindings() {
  clearTimeout(bindingsTimer);
  bindingsTimer = setTimeout(loadBindings, 1500);
}

async function loadBindings() {
  if (state.bindingsFromApi) {
    try {
      const list = await current(() => api(PATHS.bindings));
      renderBindings((list || []).map((b) => ({
        caller: b.caller_number, operator: b.operator_name || b.operator_id, operatorId: b.operator_id,
        since: b.since, until: b.until, blocked: b.blocked,
      })));
      el.bindingsNote.textContent = "Callers who would go back to their operator if they rang now.";
      return;
    } catch (err) {
      if (err.message === "stale") return;
      if (!(err instanceof ApiError && (err.status === 404 || err.status === 405))) {
        el.bindingsNote.textContent = err.message;
        return;
      }
      state.bindingsFromApi = false; // older server: derive from the decision log below
    }
  }
  // Without a bindings endpoint: the last decision per caller that sent them back to an
  // operator they had spoken with.
  const seen = new Set();
  const rows = [];
  for (const r of state.decisions) {
    if (!r.caller_number || seen.has(r.caller_number)) continue;
    seen.add(r.caller_number);
    const codes = r.decision.reasons.map((x) => x.code);
    if (!r.decision.target_operator_id || !codes.some((c) => c.startsWith("sticky_") || c === "specialist_last_contact")) continue;
    const op = state.operators.get(r.decision.target_operator_id);
    rows.push({ caller: r.caller_number, operator: op?.name || r.decision.target_operator_id, since: r.decided_at, until: null });
  }
  el.bindingsNote.textContent = "Last sticky routing per caller, from the decisions shown.";
  renderBindings(rows);
}

function renderBindings(rows) {
  fill(el.bindings, rows.length ? rows.map((b) => h("tr", {},
    clip("td", b.caller, { class: "code" }),
    h("td", { class: "clip", title: b.operator }, b.operator, b.blocked ? h("span", { class: "muted" }, " (blocked)") : null),
    h("td", { title: b.since || "" }, ago(b.since)),
    h("td", { title: b.until || "" }, b.until ? until(b.until) : "—"),
  )) : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No bindings right now.")));
}

// ---- decisions --------------------------------------------------------------------

function readFilter() {
  const f = new FormData(el.filters);
  const since = f.get("since");
  return {
    caller: String(f.get("caller") || "").trim(),
    operator: String(f.get("operator") || "").trim(),
    reason: String(f.get("reason") || ""),
    since: since ? new Date(since).toISOString() : "",
  };
}

async function loadDecisions() {
  state.filter = readFilter();
  el.decisionsStatus.textContent = "Loading…";
  try {
    const list = await current(() => api(PATHS.decisions, {
      query: {
        caller: state.filter.caller, operator: state.filter.operator, reason: state.filter.reason,
        since: state.filter.since, limit: MAX_ROWS,
      },
    }));
    state.decisions = list || [];
    renderDecisions();
    el.decisionsStatus.textContent = state.decisions.length
      ? `${state.decisions.length} decision${state.decisions.length === 1 ? "" : "s"}${filtered() ? " matching the filter" : ""}; new ones appear live.`
      : "No decisions yet.";
  } catch (err) {
    if (err.message !== "stale") el.decisionsStatus.textContent = err.message;
  }
}

const filtered = () => Object.values(state.filter).some(Boolean);

function matches(r) {
  const f = state.filter;
  if (f.caller && !(String(r.caller_number || "").includes(f.caller.replace(/[^\d+]/g, "")) || String(r.caller_raw).includes(f.caller))) return false;
  if (f.operator && r.decision.target_operator_id !== f.operator) return false;
  if (f.reason && !r.decision.reasons.some((x) => x.code === f.reason)) return false;
  if (f.since && new Date(r.decided_at) < new Date(f.since)) return false;
  return true;
}

function onDecision(record) {
  if (!record?.decision) return;
  if (state.series.add(record)) scheduleCharts();
  if (!matches(record) || state.decisions.some((r) => r.id === record.id)) return;
  state.decisions.unshift(record);
  state.decisions.length = Math.min(state.decisions.length, MAX_ROWS);
  el.decisions.prepend(decisionRow(record));
  while (el.decisions.rows.length > MAX_ROWS) el.decisions.lastElementChild.remove();
  const empty = el.decisions.querySelector("tr.empty");
  if (empty) empty.remove();
  if (!state.bindingsFromApi) loadBindings();
}

/** The unnamed event, for a server that sends {event, data} in the data itself. */
function onMessage(payload) {
  if (payload?.event === "decision") onDecision(payload.data);
  else if (payload?.event === "operator_state") onOperatorState(payload.data);
}

function routeText(d) {
  const target = d.target_operator_id
    ? `${state.operators.get(d.target_operator_id)?.name || d.target_operator_id}${d.wait_seconds ? ` (${d.wait_seconds} s)` : ""}, then ${d.queue}`
    : `queue ${d.queue}`;
  const head = d.target_operator_id ? `${words(d.action)}: ${target}` : target;
  return `${head}${d.priority ? ` · prio ${d.priority}` : ""}`;
}

function decisionRow(r) {
  const d = r.decision;
  return h("tr", { dataset: { decision: r.id, action: d.action } },
    h("td", { title: r.decided_at }, clock(r.decided_at)),
    clip("td", r.caller_number || r.caller_raw || "withheld", { class: "code" }),
    h("td", { class: "clip", title: routeText(d) }, routeText(d), d.escalated ? h("span", { class: "badge warn" }, "escalated") : null),
    h("td", {}, h("ul", { class: "reasons" }, d.reasons.map((x) =>
      h("li", { title: x.text }, h("span", { class: "code" }, x.code), " — ", x.text)))),
    h("td", { class: "num" }, Number(r.latency_ms).toFixed(1)),
  );
}

function renderDecisions() {
  fill(el.decisions, state.decisions.length
    ? state.decisions.map(decisionRow)
    : h("tr", { class: "empty" }, h("td", { colspan: 5, class: "muted" }, "No decisions match.")));
}

// ---- charts -----------------------------------------------------------------------

async function loadSeries() {
  // Seed the rolling window with the log so the charts are not empty after a reload.
  try {
    const since = new Date(Date.now() - Number(el.window.value)).toISOString();
    const list = await current(() => api(PATHS.decisions, { query: { since, limit: 1000 } }));
    for (const r of list || []) state.series.add(r);
  } catch (err) {
    if (err.message === "stale") return;
  }
  drawCharts();
}

let chartsPending = false;
function scheduleCharts() {
  if (chartsPending) return;
  chartsPending = true;
  requestAnimationFrame(() => { chartsPending = false; drawCharts(); });
}

function drawCharts() {
  state.series.prune();
  const windowMs = Number(el.window.value);
  const buckets = state.series.buckets(windowMs, 30);
  const all = buckets.flatMap((b) => b.items);
  const pct = (v) => `${Math.round(v * 100)}%`;

  const rates = buckets.map((b) => stickyRate(b.items));
  const overall = stickyRate(all);
  drawFigure($("#chart-sticky"), "Sticky hit rate", overall === null ? "—" : pct(overall),
    lineChart("Share of repeat callers sent back to their operator, per interval", buckets,
      [{ name: "sticky hit rate", values: rates }], { yMax: 1, yFormat: pct }));

  const causes = Object.keys(CAUSE_COLOR);
  const perBucket = buckets.map((b) => fallbackCounts(b.items));
  const used = causes.filter((c) => perBucket.some((x) => x[c]));
  const totalFallbacks = perBucket.reduce((sum, x) => sum + Object.values(x).reduce((a, b) => a + b, 0), 0);
  drawFigure($("#chart-fallbacks"), "Fallbacks by cause", String(totalFallbacks),
    barChart("Fallbacks by cause, per interval", buckets,
      used.map((c) => ({ name: c, color: CAUSE_COLOR[c], values: perBucket.map((x) => x[c] || 0) }))),
    used.length ? legend(used.map((c) => [c, CAUSE_COLOR[c]])) : h("p", { class: "muted legend" }, "No fallbacks in this window."));

  const escalations = buckets.map((b) => b.items.filter((p) => p.escalated).length);
  drawFigure($("#chart-escalations"), "Escalations", String(escalations.reduce((a, b) => a + b, 0)),
    barChart("Escalations to the second line, per interval", buckets,
      [{ name: "escalations", color: "#b3261e", values: escalations }]));

  const p50 = buckets.map((b) => quantile(b.items.map((p) => p.latency), 0.5));
  const p95 = buckets.map((b) => quantile(b.items.map((p) => p.latency), 0.95));
  const top = Math.max(1, ...p95.filter((v) => v !== null));
  const overall95 = quantile(all.map((p) => p.latency), 0.95);
  drawFigure($("#chart-latency"), "Decision latency (p50, p95)", overall95 === null ? "—" : `p95 ${overall95.toFixed(1)} ms`,
    lineChart("Decision latency in milliseconds, median and 95th percentile", buckets,
      [{ name: "p50", values: p50 }, { name: "p95", cls: "p95", values: p95 }],
      { yMax: niceCeil(top), yFormat: (v) => `${+v.toFixed(1)}` }),
    legend([["p50", "#1f5fbf"], ["p95", "#b3261e"]]));
  $("#charts-note").textContent = `${all.length} decision${all.length === 1 ? "" : "s"} in this window, from the log at sign-in and the live stream.`;
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((x) => x >= v) || v;
}

// ---- rules ------------------------------------------------------------------------

async function loadRules() {
  try {
    const r = await current(() => api(PATHS.rules));
    fill($("#rules-meta"), `Version ${r.version}${r.source ? ` from ${r.source}` : ""}, loaded ${dateTime(r.loaded_at)}`,
      r.last_rejected ? ` · last rejected reload ${dateTime(r.last_rejected.at)}: ${r.last_rejected.problems.join("; ")}` : "");
    $("#rules").textContent = JSON.stringify(r.rules, null, 2);
  } catch (err) {
    if (err.message !== "stale") $("#rules").textContent = err.message;
  }
}

function showProblems(target, ok, title, problems) {
  fill(target, h("p", { class: ok ? "ok" : "bad" }, title),
    problems?.length ? h("ul", {}, problems.map((p) => h("li", {}, p))) : null);
  target.className = `result ${ok ? "ok" : "bad"}`;
}

$("#rules-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = e.target.text.value;
  const target = $("#rules-result");
  try {
    const r = await api(PATHS.rulesValidate, { method: "POST", body: { text } });
    showProblems(target, r.valid, r.valid ? "These rules are valid." : "These rules are not valid:", r.problems);
  } catch (err) {
    showProblems(target, false, err.message);
  }
});

$("#rules-reload").addEventListener("click", async () => {
  const target = $("#rules-result");
  try {
    const r = await api(PATHS.rulesReload, { method: "POST" });
    showProblems(target, true, `Reloaded: now version ${r.version ?? "?"}.`);
    loadRules();
  } catch (err) {
    const problems = err.body?.detail?.problems || err.body?.problems;
    showProblems(target, false, `Not reloaded: ${problems ? "the file has problems" : err.message}`, problems);
    loadRules();
  }
});

// ---- simulate ---------------------------------------------------------------------

$("#simulate-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  const body = { caller: f.caller.value.trim() };
  if (f.queue.value.trim()) body.queue = f.queue.value.trim();
  if (f.operator.value.trim()) body.operator_states = { [f.operator.value.trim()]: f.state.value };
  const target = $("#simulate-result");
  try {
    const r = await api(PATHS.simulate, { method: "POST", body });
    const d = r.decision;
    fill(target,
      h("p", {}, h("strong", {}, routeText(d))),
      h("p", { class: "muted clip", title: r.caller?.number || r.caller?.raw || "" },
        `Caller ${r.caller?.number || `${r.caller?.raw} (not identified)`}, entry queue ${r.queue}`),
      d.announcement ? h("p", {}, `Announcement: ${d.announcement}`) : null,
      h("ul", { class: "reasons", id: "simulate-reasons" }, d.reasons.map((x) =>
        h("li", {}, h("span", { class: "code" }, x.code), " — ", x.text))),
    );
    target.className = "result";
  } catch (err) {
    fill(target, h("p", { class: "bad" }, err.message));
  }
});

// ---- incidents --------------------------------------------------------------------

async function loadIncidents() {
  try {
    const list = await current(() => api(PATHS.incidents));
    const active = (list || []).filter((i) => i.active);
    fill($("#incidents"), active.length ? active.map((i) => h("li", { class: "row wrap" },
      h("span", { class: "clip", title: `${i.title} — ${i.announcement} — ${i.prefixes.join(", ") || "everyone"}` },
        h("strong", {}, i.title || i.announcement), ` since ${dateTime(i.started_at)} · ${i.prefixes.join(", ") || "all callers"}`),
      h("button", { type: "button", class: "danger small", onclick: () => endIncident(i) }, `End`),
    )) : h("li", { class: "muted" }, "No active incident."));
  } catch (err) {
    if (err.message !== "stale") fill($("#incidents"), h("li", { class: "bad" }, err.message));
  }
}

// ---- system -----------------------------------------------------------------------
// What /api/v1/health says of each moving part. Routing needs the database and FastAGI;
// AMI (live operator states) and the routing state in memory are reported, not required.

const COMPONENTS = [
  ["database", "Database"], ["fastagi", "FastAGI"], ["ami", "AMI"],
  ["state_replica", "Routing state in memory"],
];

async function loadSystem() {
  let health;
  try {
    health = await current(() => api(PATHS.health));
  } catch (err) {
    if (err.message === "stale") return;
    // 503 (routing unavailable) still carries every component's state
    if (err instanceof ApiError && err.status === 503 && err.body && typeof err.body === "object") {
      health = err.body;
    } else {
      fill($("#system"), h("li", { class: "bad" }, err.message));
      $("#system-note").textContent = "";
      return;
    }
  }
  fill($("#system"), COMPONENTS.filter(([key]) => health[key]).map(([key, label]) => {
    const c = health[key];
    return h("li", { class: "row wrap", dataset: { component: key, ok: String(Boolean(c.ok)) } },
      h("strong", {}, label),
      h("span", { class: "health-state" }, words(c.state)),
      c.detail ? clip("span", c.detail, { class: "muted small" }) : null);
  }));
  $("#system-note").textContent = `Routing ${health.status === "ok" ? "works" : "is unavailable"}`
    + ` · rules version ${health.rules_version} · checked ${clock(new Date())}`;
}

$("#system-refresh").addEventListener("click", () => loadSystem());

async function endIncident(incident) {
  try {
    await api(PATHS.incidentEnd(incident.id), { method: "POST" });
    $("#incident-result").textContent = `Ended “${incident.title || incident.announcement}”.`;
  } catch (err) {
    $("#incident-result").textContent = err.message;
  }
  loadIncidents();
}

$("#incident-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  const body = {
    title: f.title.value.trim(),
    announcement: f.announcement.value.trim(),
    prefixes: f.prefixes.value.split(/[\s,]+/).filter(Boolean),
  };
  try {
    await api(PATHS.incidents, { method: "POST", body });
    $("#incident-result").textContent = "Incident started.";
    f.reset();
  } catch (err) {
    $("#incident-result").textContent = err.message;
  }
  loadIncidents();
});

// ---- wiring -----------------------------------------------------------------------

for (const code of REASON_CODES) $("#f-reason").append(h("option", { value: code }, words(code)));
el.filters.addEventListener("submit", (e) => { e.preventDefault(); loadDecisions(); });
el.filters.addEventListener("reset", () => setTimeout(loadDecisions, 0));
el.window.addEventListener("change", () => loadSeries());
el.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const token = el.tokenInput.value.trim();
  if (token) signIn(token);
});
el.signOut.addEventListener("click", () => signOut());
onUnauthorized(() => signOut("Your session ended: sign in again."));
wallToggle($("#wall-toggle"));

const saved = getToken();
if (saved) {
  api(PATHS.whoami, { token: saved }).then((me) => (me?.role === "operator" ? signOut() : start(me)), () => signOut());
} else {
  showConnection(el.conn, "closed");
  el.tokenInput.focus();
}
