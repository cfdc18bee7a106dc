// Reading the API's caller-context and screen-pop payloads into one shape the pages
// render, and saying in words why a call came to this operator. Kept apart from the DOM
// so the wording rules sit in one place.

import { ago, ordinal, parseTime, words } from "./dom.js";

const clockOf = (value) => parseTime(value)?.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) ?? "";

const first = (...values) => values.find((v) => v !== undefined && v !== null && v !== "");

function reasonList(raw) {
  if (!Array.isArray(raw)) return [];
  return raw.map((r) =>
    typeof r === "string" ? { code: r, text: words(r) } : { code: r.code || "", text: r.text || words(r.code) },
  );
}

function normaliseDecision(d) {
  if (!d || typeof d !== "object") return null;
  return {
    id: d.id ?? d.decision_id ?? null,
    action: d.action ?? null,
    queue: first(d.queue, d.target_queue) ?? null,
    targetOperatorId: first(d.target_operator_id, d.operator_id) ?? null,
    escalated: Boolean(d.escalated),
    announcement: d.announcement ?? null,
    reasons: reasonList(d.reasons ?? d.reason_codes),
  };
}

function normaliseLeg(l) {
  return {
    operatorId: l.operator_id ?? null,
    operatorName: l.operator_name ?? null,
    interface: l.interface ?? null,
    answeredAt: l.answered_at ?? null,
    endedAt: l.ended_at ?? null,
    talkSeconds: l.talk_seconds ?? 0,
    endedHow: l.ended_how ?? null,
    transferredTo: l.transferred_to ?? null,
    transferTarget: l.transfer_target ?? null,
  };
}

function normaliseNote(n) {
  return {
    operatorId: n.operator_id ?? null,
    operatorName: n.operator_name ?? null,
    note: n.note ?? null,
    resolved: n.resolved ?? null,
    updatedAt: n.updated_at ?? null,
  };
}

function normaliseCall(c) {
  const operatorId = first(c.operator_id, c.answered_by) ?? null;
  const operatorName = first(c.operator_name, c.answered_by_name) ?? null;
  const legs = (c.legs || []).map(normaliseLeg);
  // Who had the call, in order, with names: the legs, else (calls recorded before legs)
  // the first operator (after a transfer) and the last.
  const handlers = legs.length
    ? legs.filter((l) => l.operatorId).map((l) => ({ id: l.operatorId, name: l.operatorName }))
    : [c.transferred_from && c.transferred_from !== operatorId ? { id: c.transferred_from, name: null } : null,
      operatorId ? { id: operatorId, name: operatorName } : null].filter(Boolean);
  const handledBy = c.handled_by || handlers.map((x) => x.id);
  return {
    id: c.id ?? c.call_id ?? null,
    startedAt: first(c.started_at, c.when, c.at) ?? null,
    queue: c.queue ?? null,
    operatorId,
    operatorName,
    outcome: c.outcome ?? null,
    talkSeconds: c.talk_seconds ?? null,
    resolved: c.resolved ?? null,
    note: c.note ?? null, // the call's own note (a supervisor's); handlers' are in notes
    notes: (c.notes || []).map(normaliseNote).filter((n) => n.note || n.resolved !== null),
    legs,
    handlers: handlers.filter((x, i) => handlers.findIndex((y) => y.id === x.id) === i),
    handledBy,
    transferred: Boolean(c.transferred),
    escalated: Boolean(c.escalated),
    endedAt: c.ended_at ?? null,
  };
}

/** The operator's own follow-up on a call (their note and verdict), or null. */
export function myPart(call, meId) {
  return (call?.notes || []).find((n) => meId && n.operatorId === meId) || null;
}

/** Who handled a call, as words: "you", "Anna Petrova → you", "Anna → Boris → Carl". */
export function handlersText(call, meId) {
  const names = call.handlers.map((x) => (meId && x.id === meId ? "you" : x.name || x.id));
  return names.length ? names.join(" → ") : "";
}

/** What a call was about: this operator's note, else the last handler's who wrote one,
 * else the call's own note. */
export function topicOf(call, meId) {
  const mine = myPart(call, meId)?.note;
  const written = call.notes.filter((n) => n.note);
  const rank = (n) => call.handledBy.lastIndexOf(n.operatorId);
  const latest = written.sort((a, b) => rank(b) - rank(a))[0]?.note;
  return first(mine, latest, call.note) ?? null;
}

/**
 * One shape from a ``GET /callers/{number}`` body (CallerContextOut) or a screen-pop
 * ``caller`` event (``{call, caller: CallerContextOut | null, reason}``).
 */
export function normalise(payload, meId = null, now = new Date()) {
  const p = payload || {};
  const isPop = "call" in p && "caller" in p;
  const ctx = (isPop ? p.caller : p) || {};
  const flags = ctx.flags || {};
  const sticky = ctx.sticky || null;
  const ticket = ctx.open_ticket || null;
  const recentCalls = (ctx.recent_calls || []).map(normaliseCall);
  return {
    number: ctx.number ?? null,
    name: first(ctx.name, flags.name, isPop ? p.call?.caller_name : null) ?? null,
    vipClass: first(ctx.vip_class, flags.vip_class) ?? null,
    abusive: Boolean(flags.abusive),
    abusiveBy: flags.abusive_flagged_by ?? null,
    // A screen-pop without a context: withheld, shared, or the store could not answer.
    unavailable: isPop && !p.caller ? p.reason || "no details for this caller" : null,
    optedOut: flags.opted_out_operators || [],
    notes: flags.notes ?? "",
    recentCalls,
    ticket: ticket && {
      id: ticket.id,
      subject: ticket.subject || "",
      status: ticket.status || "open",
      tier: ticket.tier || "first_line",
      assigneeId: ticket.assignee_id ?? null,
      externalRef: ticket.external_ref ?? null,
    },
    sticky: sticky && {
      operatorId: sticky.operator_id ?? null,
      operatorName: sticky.operator_name ?? null,
      until: sticky.until ?? null,
      blocked: Boolean(sticky.blocked),
    },
    routingNow: normaliseDecision(ctx.routing_now?.decision),
    // The screen-pop names its call (row id when the server found it) and the decision
    // that routed it here, with its reasons.
    call: isPop
      ? { uniqueid: p.call?.uniqueid ?? null, queue: p.call?.queue ?? null, decisionId: p.call?.decision_id ?? null,
        id: p.call?.id ?? currentCall(recentCalls, meId, now)?.id ?? null }
      : null,
    decision: isPop ? normaliseDecision(p.decision ? { id: p.call?.decision_id, ...p.decision } : null) : null,
    ended: null, // {outcome, talkSeconds, endedAt} once the call_ended event came
  };
}

/**
 * The row of the call on the line, among the caller's recent calls: the screen-pop names
 * the call by its Asterisk uniqueid, the call actions need the row id. It is the newest
 * call answered by this operator that has not ended (or, before the listener recorded
 * who answered, the newest unfinished one).
 */
export function currentCall(calls, meId, now = new Date()) {
  const fresh = calls
    .filter((c) => !c.endedAt && (c.outcome === "in_progress" || c.outcome === "answered"))
    .filter((c) => now - (parseTime(c.startedAt) || 0) < 6 * 3600 * 1000)
    .sort((a, b) => parseTime(b.startedAt) - parseTime(a.startedAt));
  return fresh.find((c) => meId && c.operatorId === meId) || fresh.find((c) => !c.operatorId) || null;
}

const startOfToday = (now) => new Date(now.getFullYear(), now.getMonth(), now.getDate());

/**
 * The sentences at the top of the screen-pop: why this caller reached this operator and
 * what to know before saying hello. ``meId`` is the signed-in operator's id.
 */
export function whyLines(ctx, meId, now = new Date()) {
  const lines = [];
  if (ctx.vipClass) lines.push({ kind: "vip", text: `VIP${ctx.vipClass.toLowerCase() === "vip" ? "" : ` (${ctx.vipClass})`}` });
  if (ctx.abusive) lines.push({ kind: "warn", text: `Flagged abusive${ctx.abusiveBy ? ` by ${ctx.abusiveBy}` : ""}` });
  if (ctx.unavailable) lines.push({ kind: "info", text: `No history shown: ${ctx.unavailable}` });

  const thisCallId = ctx.call?.id;
  const earlier = ctx.recentCalls
    .filter((c) => c.id === null || c.id !== thisCallId)
    .filter((c) => parseTime(c.startedAt))
    .sort((a, b) => parseTime(b.startedAt) - parseTime(a.startedAt));
  const today = earlier.filter((c) => parseTime(c.startedAt) >= startOfToday(now));
  const about = (call) => first(topicOf(call, meId), ctx.ticket?.subject);

  const onLine = ctx.recentCalls.find((c) => c.id && c.id === thisCallId);
  const escalated = Boolean(onLine?.escalated);
  if (escalated) {
    const n = today.length + 1;
    const last = today[0];
    const lastUnresolved = last && last.resolved === false ? ", last one not resolved" : "";
    const count = n >= 2 ? `${ordinal(n)} call today${lastUnresolved}` : "ticket escalated";
    lines.push({ kind: "escalated", text: `Escalated: ${count}` });
  }

  // The call on the line came by a transfer: say from whom, and what they wrote.
  if (onLine && meId && onLine.handledBy.includes(meId) && onLine.handledBy[0] !== meId) {
    const before = onLine.handlers.filter((x) => x.id !== meId);
    const from = before[before.length - 1];
    const note = onLine.notes.filter((n) => n.note && n.operatorId !== meId).pop();
    lines.push({
      kind: "sticky",
      text: `Transferred to you by ${from?.name || from?.id || "a colleague"}${note ? `: “${note.note}”` : ""}`,
    });
  }

  const withMe = earlier.find((c) => meId && c.handledBy.includes(meId));
  const spokeWith = (call) => (call.handlers.length > 1 ? ` (${handlersText(call, meId)})` : "");
  if (withMe) {
    const topic = about(withMe);
    lines.push({
      kind: "sticky",
      text: `Called ${ago(withMe.endedAt || withMe.startedAt, now)}, spoke with you${spokeWith(withMe)}${topic ? ` about “${topic}”` : ""}`,
    });
  } else if (earlier.length) {
    const last = earlier[0];
    const who = handlersText(last, meId) || last.operatorName || last.operatorId;
    const topic = topicOf(last, meId);
    lines.push({
      kind: "info",
      text: `Called ${ago(last.startedAt, now)}${who ? `, spoke with ${who}` : ""}${last.resolved === false ? " (not resolved)" : ""}${topic ? ` about “${topic}”` : ""}`,
    });
  } else if (!ctx.unavailable) {
    lines.push({ kind: "info", text: "First call we know of from this number" });
  }
  if (!escalated && today.length >= 2) {
    lines.push({ kind: "info", text: `${ordinal(today.length + 1)} call today` });
  }
  if (ctx.ticket && ctx.ticket.status !== "closed") {
    const tier = ctx.ticket.tier === "specialist" ? " (specialist)" : "";
    lines.push({ kind: "ticket", text: `Open ticket${tier}: ${ctx.ticket.subject || ctx.ticket.id}` });
  }
  if (ctx.sticky?.operatorId === meId && meId && ctx.sticky.until && !ctx.sticky.blocked) {
    lines.push({ kind: "info", text: `Comes back to you if they call again before ${clockOf(ctx.sticky.until)}` });
  }
  return lines;
}
