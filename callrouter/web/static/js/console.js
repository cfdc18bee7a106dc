// The operator console: sign in, listen to this operator's screen-pop stream, show who
// is calling and why, and write the operator's actions back through the API.

import { $, clip, dateTime, duration, fill, h, words } from "./dom.js";
import {
  api, ApiError, getToken, onTokenChange, onUnauthorized, setToken, showConnection, Stream, wallToggle,
} from "./api.js";
import { currentCall, handlersText, myPart, normalise, whyLines } from "./context.js";
import { PATHS } from "./paths.js";

const el = {
  signIn: $("#sign-in"),
  form: $("#sign-in-form"),
  tokenInput: $("#token"),
  signInError: $("#sign-in-error"),
  desk: $("#desk"),
  pop: $("#pop"),
  waiting: $("#waiting"),
  call: $("#call"),
  conn: $("#conn"),
  who: $("#who"),
  signOut: $("#sign-out"),
  toast: $("#toast"),
};

const state = {
  me: null, // {role, operator_id, operator_name, name}
  stream: null,
  current: null, // the normalised context on screen
  generation: 0, // bumps on every sign-in/out so late answers for an old session are dropped
};

// ---- session --------------------------------------------------------------------

async function whoAmI(token) {
  return api(PATHS.whoami, { token });
}

// Why the server ended the session (the stream's "closed" reason), in words.
const ENDED = {
  token_revoked: "Your token was revoked: sign in with a new one.",
  operator_deactivated: "Your operator account was deactivated: ask your supervisor.",
};
const DEACTIVATED = ENDED.operator_deactivated;

/** /me, refusing (403) a token whose operator was deactivated: its stream would be refused. */
async function activeMe() {
  const me = await whoAmI();
  if (me?.operator_active === false) {
    throw new ApiError(403, DEACTIVATED, { reason: "operator_deactivated" });
  }
  return me;
}

async function signIn(token) {
  el.signInError.textContent = "";
  let me;
  try {
    me = await whoAmI(token);
  } catch (err) {
    el.signInError.textContent =
      err instanceof ApiError && err.status === 401 ? "That token is not valid (or was revoked)." : err.message;
    return;
  }
  if (me && me.role && me.role !== "operator") {
    el.signInError.textContent = `This token is for the ${me.role} role; the console needs an operator token. Supervisors use /admin.`;
    return;
  }
  if (me?.operator_active === false) {
    el.signInError.textContent = DEACTIVATED;
    return;
  }
  setToken(token);
  start(me);
}

function start(me) {
  clearCall();
  state.generation += 1;
  state.me = me;
  el.tokenInput.value = "";
  el.signIn.hidden = true;
  el.desk.hidden = false;
  el.signOut.hidden = false;
  const who = me.operator_name || me.name || me.operator_id || "operator";
  fill(el.who, `Signed in as ${who}`);
  el.who.title = `${who}${me.operator_id ? ` (${me.operator_id})` : ""}`;
  el.who.hidden = false;
  state.stream = new Stream(PATHS.operatorStream, {
    handlers: { caller: onPop, call_ended: onCallEnded },
    onState: (s) => showConnection(el.conn, s),
    checkAuth: activeMe,
    onUnauthorized: (reason) => signOut(ENDED[reason] || "Your session ended: sign in again."),
  }).start();
  $("#main").focus();
}

function signOut(message = "") {
  state.generation += 1;
  if (state.stream) state.stream.stop();
  state.stream = null;
  state.me = null;
  clearCall();
  setToken("");
  showConnection(el.conn, "closed");
  el.desk.hidden = true;
  el.signOut.hidden = true;
  el.who.hidden = true;
  el.signIn.hidden = false;
  el.signInError.textContent = message;
  el.tokenInput.focus();
}

// A field the operator changed is "dirty" until the form holding it is submitted.
el.call.addEventListener("input", (e) => { e.target.dataset.dirty = "1"; });
el.call.addEventListener("change", (e) => { e.target.dataset.dirty = "1"; });
el.call.addEventListener("submit", (e) => {
  for (const f of e.target.querySelectorAll("[data-dirty]")) delete f.dataset.dirty;
}, true);

function clearCall() {
  state.current = null;
  fill(el.pop, el.waiting);
  fill(el.call);
  delete el.call.dataset.key;
  el.call.hidden = true;
}

// ---- the screen-pop ---------------------------------------------------------------

function onPop(payload) {
  if (!payload || typeof payload !== "object") return;
  const meId = state.me?.operator_id;
  const ctx = normalise(payload, meId);
  state.current = ctx;
  render();
  // The listener may record the answered call a moment after the screen-pop: until the
  // row is there the call actions have no id to write to, so look again shortly.
  if (ctx.number && !ctx.call?.id) {
    for (const delay of [700, 2000, 5000]) setTimeout(() => { if (state.current === ctx && !ctx.call.id) refresh(); }, delay);
  }
}

/** The call on screen ended: say so on the card, keep it for the wrap-up actions. */
function onCallEnded(payload) {
  const current = state.current;
  const call = payload?.call;
  if (!current || !call?.uniqueid || call.uniqueid !== current.call?.uniqueid) return;
  current.ended = {
    outcome: payload.outcome ?? null,
    talkSeconds: payload.talk_seconds ?? null,
    endedAt: payload.ended_at ?? null,
    // This operator's part ended by a transfer; the call goes on with someone else.
    transferred: Boolean(payload.transferred) && !payload.hangup_by,
  };
  if (!current.call.id && call.id) current.call.id = call.id;
  render();
  // The call log learns the end (and who answered) a moment later: show what was stored.
  setTimeout(() => { if (state.current === current) refresh(); }, 1500);
}

/** Re-read the caller's context after an action so the screen shows what was stored. */
async function refresh() {
  const current = state.current;
  if (!current?.number) return;
  const generation = state.generation;
  try {
    const body = await api(PATHS.caller(current.number), { query: { queue: current.call?.queue } });
    if (generation !== state.generation || state.current !== current) return;
    const fresh = normalise(body, state.me?.operator_id);
    fresh.call = current.call;
    if (fresh.call && !fresh.call.id) {
      fresh.call.id = currentCall(fresh.recentCalls, state.me?.operator_id)?.id ?? null;
    }
    fresh.ended = current.ended;
    fresh.decision = current.decision;
    state.current = fresh;
    render();
  } catch (err) {
    toast(err.message, true);
  }
}

function badge(kind, text) {
  return h("span", { class: `badge ${kind}` }, text);
}

function render() {
  const ctx = state.current;
  if (!ctx) return clearCall();
  const meId = state.me?.operator_id;
  const title = ctx.name || ctx.number || "Withheld number";
  const lines = whyLines(ctx, meId);

  const reasons = ctx.decision?.reasons || [];
  fill(
    el.pop,
    h("article", { class: `card pop${ctx.ended ? " ended" : ""}`, "aria-labelledby": "caller-name",
      dataset: { state: ctx.ended ? "ended" : "live" } },
      h("p", { class: "eyebrow", id: "call-state" },
        ctx.ended ? (ctx.ended.transferred ? "Transferred" : "Call ended") : "On the line"),
      h("h2", { id: "caller-name", class: "caller-name clip", title }, title),
      ctx.name && ctx.number ? h("p", { class: "caller-number clip", id: "caller-number", title: ctx.number }, ctx.number) : null,
      h("div", { class: "badges" },
        ctx.vipClass && badge("vip", ctx.vipClass.toUpperCase() === "VIP" ? "VIP" : `VIP · ${ctx.vipClass}`),
        ctx.abusive && badge("warn", "Abusive"),
        ctx.unavailable && badge("muted", "No history"),
        ctx.ticket && ctx.ticket.status !== "closed" && badge("ticket", `Ticket ${ctx.ticket.status}`),
        ctx.ticket?.tier === "specialist" && badge("ticket", "Specialist"),
        meId && ctx.optedOut.includes(meId) && badge("muted", "You opted out of this caller"),
      ),
      h("h3", { class: "why-title" }, "Why you got this call"),
      h("ul", { class: "why", id: "why" },
        lines.map((line) => h("li", { class: `why-${line.kind}`, dataset: line.code ? { code: line.code } : {} }, line.text)),
      ),
      lastCallBlock(ctx, meId),
      reasons.length > 0 && h("h3", { class: "why-title" }, "Routing decision"),
      reasons.length > 0 && h("ul", { class: "reasons routing-reasons", id: "routing-reasons" },
        reasons.map((r) => h("li", { dataset: { code: r.code }, title: r.code }, r.text))),
      ctx.ended && h("p", { class: "ended-note", id: "call-ended" }, endedText(ctx.ended)),
    ),
  );

  // Keep what the operator is typing in other forms across the re-render an action causes.
  // Never carry one caller's half-typed text over to the next caller.
  const key = `${ctx.number}|${ctx.call?.uniqueid}`;
  const sameCall = el.call.dataset.key === key;
  el.call.dataset.key = key;
  const typing = sameCall ? [...el.call.querySelectorAll("[data-dirty]")].map((f) => [f.id, f.value]) : [];
  fill(el.call, actionsCard(ctx), ticketCard(ctx), notesCard(ctx), historyCard(ctx));
  for (const [id, value] of typing) {
    const field = document.getElementById(id);
    if (field) { field.value = value; field.dataset.dirty = "1"; }
  }
  el.call.hidden = false;
}

/** The caller's previous call: who had it (every leg) and what each of them wrote. */
function lastCallBlock(ctx, meId) {
  const last = ctx.recentCalls
    .filter((c) => !ctx.call?.id || c.id !== ctx.call.id)
    .filter((c) => c.handlers.length > 0)[0];
  if (!last || (last.handlers.length < 2 && !last.notes.some((n) => n.note))) return null;
  const transfers = last.legs.filter((l) => l.endedHow && l.endedHow !== "hung_up")
    .map((l) => `${words(l.endedHow)}${l.transferTarget ? ` to ${l.transferTarget}` : ""}`);
  return [
    h("h3", { class: "why-title" }, "Last call"),
    h("ul", { class: "why last-call", id: "last-call" },
      h("li", {}, `${dateTime(last.startedAt)}: ${handlersText(last, meId)}${transfers.length ? ` (${transfers.join(", ")})` : ""}`),
      last.notes.filter((n) => n.note).map((n) => h("li", { dataset: { operator: n.operatorId || "" } },
        `${meId && n.operatorId === meId ? "You" : n.operatorName || n.operatorId}: “${n.note}”${n.resolved !== null ? ` (${verdictWord(n.resolved)})` : ""}`)),
      last.note && h("li", {}, `Call note: “${last.note}”`),
    ),
  ];
}

function endedText(ended) {
  const parts = [ended.transferred ? "You transferred the call" : "Call ended"];
  if (ended.outcome && ended.outcome !== "answered") parts.push(words(ended.outcome));
  if (ended.talkSeconds) parts.push(`talked ${duration(ended.talkSeconds)}`);
  if (ended.endedAt) parts.push(`at ${dateTime(ended.endedAt)}`);
  return `${parts.join(" · ")}. Mark it resolved or not, and add a note.`;
}

// ---- cards ------------------------------------------------------------------------

const verdictWord = (v) => (v === true ? "resolved" : v === false ? "not resolved" : null);

/** The call on the line among the caller's recent calls (legs, everyone's notes). */
function lineCall(ctx) {
  return ctx.call?.id ? ctx.recentCalls.find((c) => c.id === ctx.call.id) || null : null;
}

function actionsCard(ctx) {
  const callId = ctx.call?.id;
  const meId = state.me?.operator_id;
  const optedOut = ctx.optedOut.includes(meId);
  const call = lineCall(ctx);
  const mine = myPart(call, meId);
  // What the others who had this call wrote (a transfer brings their notes along).
  const others = (call?.notes || []).filter((n) => n.operatorId !== meId);
  const verdict = [
    mine && verdictWord(mine.resolved) ? `You said ${verdictWord(mine.resolved)}` : null,
    call && verdictWord(call.resolved) && call.handlers.length > 1 ? `the call counts as ${verdictWord(call.resolved)}` : null,
  ].filter(Boolean).join("; ");
  return h("section", { class: "card actions", "aria-labelledby": "actions-title" },
    h("h3", { id: "actions-title" }, "This call"),
    call && call.handlers.length > 1 && h("p", { class: "muted", id: "call-handlers" }, `Handled by ${handlersText(call, meId)}`),
    others.length > 0 && h("ul", { class: "call-notes", id: "call-notes" },
      others.map((n) => h("li", { dataset: { operator: n.operatorId || "" } },
        h("strong", {}, `${n.operatorName || n.operatorId}: `),
        n.note || "", n.resolved !== null ? ` (${verdictWord(n.resolved)})` : ""))),
    h("div", { class: "row" },
      h("button", { type: "button", id: "resolved", disabled: !callId, onclick: () => markCall(true) }, "Resolved"),
      h("button", { type: "button", id: "not-resolved", class: "secondary", disabled: !callId, onclick: () => markCall(false) }, "Not resolved"),
    ),
    verdict && h("p", { class: "muted", id: "call-verdict" }, `${verdict[0].toUpperCase()}${verdict.slice(1)}.`),
    h("form", { class: "stack", id: "call-note-form", onsubmit: (e) => { e.preventDefault(); callNote(e.target, mine); } },
      h("label", { for: "call-note" }, "Your note on this call"),
      h("textarea", { id: "call-note", name: "note", rows: 2, maxlength: 2000, disabled: !callId }, mine?.note || ""),
      h("button", { type: "submit", class: "secondary", disabled: !callId }, "Save call note"),
    ),
    h("h3", {}, "This caller"),
    h("div", { class: "row wrap" },
      h("button", { type: "button", id: "flag-abusive", class: "danger", disabled: ctx.abusive || !ctx.number, onclick: flagAbusive },
        ctx.abusive ? "Flagged abusive" : "Flag abusive"),
      h("button", { type: "button", id: "opt-out", class: "secondary", disabled: optedOut || !ctx.number || !meId, onclick: optOut },
        optedOut ? "Not routed to you" : "Do not route this caller to me"),
      h("button", { type: "button", id: "request-specialist", class: "secondary", disabled: !ctx.number || ctx.ticket?.tier === "specialist", onclick: requestSpecialist },
        ctx.ticket?.tier === "specialist" ? "Specialist requested" : "Request a specialist next time"),
    ),
  );
}

function ticketCard(ctx) {
  const t = ctx.ticket;
  const statusSelect = h("select", { id: "ticket-status", name: "status" },
    ["open", "pending", "closed"].map((s) => h("option", { value: s, selected: t?.status === s }, s)));
  return h("section", { class: "card ticket", "aria-labelledby": "ticket-title" },
    h("h3", { id: "ticket-title" }, t ? "Open ticket" : "No open ticket"),
    t && h("dl", { class: "facts" },
      h("dt", {}, "Ticket"), clip("dd", t.externalRef || t.id),
      h("dt", {}, "Tier"), h("dd", {}, words(t.tier)),
      h("dt", {}, "Assignee"), clip("dd", t.assigneeId || "nobody"),
    ),
    h("form", { class: "stack", id: "ticket-form", onsubmit: (e) => { e.preventDefault(); saveTicket(e.target); } },
      h("label", { for: "ticket-subject" }, "Subject"),
      h("input", { id: "ticket-subject", name: "subject", value: t?.subject || "", maxlength: 500, required: true, disabled: !ctx.number }),
      t && h("label", { for: "ticket-status" }, "Status"),
      t && statusSelect,
      h("button", { type: "submit", disabled: !ctx.number }, t ? "Update ticket" : "Create ticket"),
    ),
  );
}

function notesCard(ctx) {
  // The caller's notes are one shared text the team edits, so the form edits it whole.
  return h("section", { class: "card notes", "aria-labelledby": "notes-title" },
    h("h3", { id: "notes-title" }, "Notes about this caller"),
    h("form", { class: "stack", id: "caller-note-form", onsubmit: (e) => { e.preventDefault(); callerNote(e.target); } },
      h("label", { for: "caller-note", class: "visually-hidden" }, "Notes about this caller"),
      h("textarea", { id: "caller-note", name: "note", rows: 4, maxlength: 4000, disabled: !ctx.number,
        placeholder: "No notes yet." }, ctx.notes || ""),
      h("button", { type: "submit", class: "secondary", disabled: !ctx.number }, "Save notes"),
    ),
  );
}

function historyCard(ctx) {
  const calls = ctx.recentCalls.filter((c) => !ctx.call?.id || c.id !== ctx.call.id);
  const meId = state.me?.operator_id;
  return h("section", { class: "card history", "aria-labelledby": "history-title" },
    h("h3", { id: "history-title" }, "Recent calls"),
    calls.length === 0
      ? h("p", { class: "muted" }, "No earlier calls.")
      : h("div", { class: "table-wrap" }, h("table", { id: "recent-calls" },
        h("thead", {}, h("tr", {},
          ["When", "Queue", "Handled by", "Outcome", "Talk", "Resolved", "Notes"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, calls.map((c) => h("tr", {},
          h("td", { title: c.startedAt || "" }, dateTime(c.startedAt)),
          clip("td", c.queue),
          h("td", { class: "wrap" }, handlersText(c, meId) || (c.operatorId === meId && meId ? "you" : c.operatorName || c.operatorId) || "—"),
          h("td", {}, words(c.outcome)),
          h("td", { class: "num" }, c.talkSeconds ? duration(c.talkSeconds) : ""),
          h("td", {}, c.resolved === true ? "yes" : c.resolved === false ? "no" : "—"),
          h("td", { class: "wrap" }, notesText(c, meId) || "—"),
        ))),
      )),
  );
}

/** A call's notes in one line: "Anna Petrova: router reboots · you: PSU replaced". */
function notesText(call, meId) {
  const parts = call.notes.filter((n) => n.note)
    .map((n) => `${meId && n.operatorId === meId ? "you" : n.operatorName || n.operatorId}: ${n.note}`);
  if (call.note) parts.push(call.notes.length ? `call: ${call.note}` : call.note);
  return parts.join(" · ");
}

// ---- actions ----------------------------------------------------------------------

async function act(label, fn) {
  const current = state.current;
  if (!current) return;
  try {
    await fn(current);
    await refresh();
    toast(label);
  } catch (err) {
    toast(err.message, true);
  }
}

function markCall(resolved) {
  act(resolved ? "Marked resolved." : "Marked not resolved.", (c) =>
    api(PATHS.callResolved(c.call.id), { method: "PUT", body: { resolved } }));
}

function callNote(form, mine) {
  const note = form.note.value.trim();
  if (!note && !mine?.note) return;
  // The note is this operator's own: saving replaces it, an empty one removes it.
  act(note ? "Call note saved." : "Call note removed.", (c) =>
    api(PATHS.callNote(c.call.id), { method: "PUT", body: { note: note || null } }));
}

function callerNote(form) {
  const note = form.note.value.trim();
  act("Notes saved.", (c) => api(PATHS.callerNote(c.number), { method: "PUT", body: { note } }));
}

function flagAbusive() {
  if (!confirm("Flag this caller as abusive? Specialists will be protected from them.")) return;
  act("Caller flagged abusive.", (c) => api(PATHS.callerAbusive(c.number), { method: "PUT", body: { abusive: true } }));
}

function optOut() {
  if (!confirm("Stop routing this caller to you? Their next calls go to someone else.")) return;
  act("This caller will not be routed to you.", (c) => api(PATHS.callerOptOut(c.number), { method: "PUT" }));
}

function saveTicket(form) {
  const subject = form.subject.value.trim();
  act(state.current?.ticket ? "Ticket updated." : "Ticket created.", (c) =>
    c.ticket
      ? api(PATHS.ticket(c.ticket.id), { method: "PATCH", body: { subject, status: form.status?.value || c.ticket.status } })
      : api(PATHS.callerTickets(c.number), { method: "POST", body: { caller_number: c.number, subject } }));
}

function requestSpecialist() {
  act("A specialist will take this caller's next call.", async (c) => {
    if (c.ticket) {
      await api(PATHS.ticket(c.ticket.id), { method: "PATCH", body: { tier: "specialist" } });
    } else {
      const subject = document.getElementById("ticket-subject")?.value.trim() || "Needs a specialist";
      await api(PATHS.callerTickets(c.number), { method: "POST", body: { caller_number: c.number, subject, tier: "specialist" } });
    }
  });
}

let toastTimer = null;
function toast(message, isError = false) {
  el.toast.textContent = message;
  el.toast.dataset.kind = isError ? "error" : "ok";
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.toast.textContent = ""; }, 6000);
}

// ---- wiring -----------------------------------------------------------------------

el.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const token = el.tokenInput.value.trim();
  if (token) signIn(token);
});
el.signOut.addEventListener("click", () => signOut());
onUnauthorized(() => signOut("Your session ended: sign in again."));
wallToggle($("#wall-toggle"));

// Another tab signing in with a different token does not touch this tab (sessionStorage
// is per tab); a token change in this tab restarts everything from a blank screen.
onTokenChange((token) => {
  if (!token) clearCall();
});

const saved = getToken();
if (saved) {
  whoAmI(saved).then(
    (me) => (me?.role && me.role !== "operator" ? signOut()
      : me?.operator_active === false ? signOut(DEACTIVATED) : start(me)),
    () => signOut(),
  );
} else {
  showConnection(el.conn, "closed");
  el.tokenInput.focus();
}
