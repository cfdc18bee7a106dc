"""The caller snapshot on PostgreSQL in one statement, straight on asyncpg (the hot path).

Same answer as ``snapshot.load_snapshot`` (which SQLite and the tests' reference use): the
recent calls come back as an array of rows, flags and the current ticket as one row each,
so a routing decision costs one round trip and no SQLAlchemy statement handling.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from callrouter.domain.model import (
    CallerFlags,
    Outcome,
    PastCall,
    Ticket,
    TicketStatus,
    Tier,
)
from callrouter.service.ports import CallerSnapshot
from callrouter.store.calls import RECENT_CALLS_LIMIT
from callrouter.store.tickets import ACTIVE_STATUSES, REOPEN_WINDOW

_SEP = "\x1f"
_OUTCOMES = {o.value: o for o in Outcome}

_STATUSES = ", ".join(f"'{s}'" for s in ACTIVE_STATUSES)
_REOPEN_SECONDS = int(REOPEN_WINDOW.total_seconds())

# Three parameters: the number, now, the lookback in seconds. Every other bound is computed
# by the server from them (encoding seven parameters, a text array among them, cost as
# much client CPU as decoding the answer).
SNAPSHOT_SQL = f"""
SELECT
  ARRAY(SELECT ROW(c.id, c.queue, c.started_at, c.ended_at, c.operator_id, c.outcome,
                   c.talk_seconds, c.resolved, c.escalated)
        FROM calls c
        WHERE c.caller_number = $1
          AND c.started_at >= $2::timestamptz - make_interval(secs => $3::float8)
          AND c.started_at <= $2::timestamptz
        ORDER BY c.started_at DESC, c.id DESC
        LIMIT {RECENT_CALLS_LIMIT}) AS recent,
  (SELECT count(*) FROM decisions d
   WHERE d.caller_number = $1 AND d.escalated IS true
     AND d.decided_at >= (date_trunc('day', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
     AND d.decided_at < (date_trunc('day', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
                        + interval '1 day') AS escalations,
  (SELECT string_agg(o.operator_id, E'\\x1f') FROM caller_opt_outs o
   WHERE o.caller_number = $1) AS opted_out,
  (SELECT ROW(f.vip_class, f.abusive, f.abusive_flagged_by, f.abusive_flagged_at, f.notes,
              f.name)
   FROM caller_flags f WHERE f.caller_number = $1) AS flags,
  (SELECT ROW(t.id, t.caller_number, t.subject, t.status, t.tier, t.assignee_id,
              t.external_ref, t.created_at, t.updated_at)
   FROM tickets t
   WHERE t.caller_number = $1
     AND (t.status IN ({_STATUSES})
          OR (t.status = 'closed'
              AND t.updated_at >= $2::timestamptz - make_interval(secs => {_REOPEN_SECONDS})))
   ORDER BY t.created_at DESC, t.id DESC LIMIT 1) AS ticket
"""


async def pg_snapshot(
    conn: Any, number: str, now: datetime, lookback_seconds: int
) -> CallerSnapshot:
    """``conn`` is an asyncpg connection (it caches the prepared statement)."""
    r = await conn.fetchrow(SNAPSHOT_SQL, number, now, float(lookback_seconds))
    outcome = _OUTCOMES.__getitem__  # Outcome(value) costs ~4 us a row; a dict, a tenth
    recent = tuple(
        PastCall(
            id=c[0], queue=c[1] or "", started_at=c[2], ended_at=c[3], operator_id=c[4],
            outcome=outcome(c[5]), talk_seconds=c[6], resolved=c[7], escalated=c[8],
        )
        for c in r["recent"]
    )
    opted = r["opted_out"]
    opted_out = frozenset(opted.split(_SEP)) if opted else frozenset()
    f = r["flags"]
    flags = (
        CallerFlags(
            vip_class=f[0], abusive=bool(f[1]), abusive_flagged_by=f[2],
            abusive_flagged_at=f[3], opted_out_operators=opted_out, notes=f[4] or "", name=f[5],
        )
        if f is not None
        else CallerFlags(opted_out_operators=opted_out)
    )
    t = r["ticket"]
    ticket = (
        Ticket(
            id=t[0], caller_number=t[1], subject=t[2], status=TicketStatus(t[3]), tier=Tier(t[4]),
            assignee_id=t[5], external_ref=t[6], created_at=t[7], updated_at=t[8],
        )
        if t is not None
        else None
    )
    return CallerSnapshot(
        recent_calls=recent, open_ticket=ticket, flags=flags,
        escalations_today=int(r["escalations"] or 0),
    )
