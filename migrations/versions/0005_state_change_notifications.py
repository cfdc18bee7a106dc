"""Change notifications for the routing-state replica (PostgreSQL only).

Every change to what a caller snapshot reads (calls, escalated decisions, caller flags,
opt-outs, tickets) is announced on the ``callrouter_state`` channel with ``pg_notify``, so
that each daemon's in-memory replica (``callrouter.store.pg_replica``) stays current
without reading the database per call. PostgreSQL delivers notifications at commit, in
commit order, to every listening session: a replica applies them in that order.

Each payload is a JSON array; its first item says what it is, its second is the writing
transaction's id (``pg_current_xact_id``: a replica loading its state skips what its
load's snapshot already saw):

* ``["c", xid, id, caller_number, queue, started_at, ended_at, operator_id, outcome,
  talk_seconds, resolved, escalated, operator_talk_seconds, clock]``: a call row as it
  is now;
* ``["c-", xid, id, clock]``: a call row deleted, or moved to another id or caller number;
* ``["e", xid, decision_id, caller_number, decided_at, clock]``: an escalated decision;
  ``["e-", xid, decision_id, caller_number, clock]``: one deleted or changed;
* ``["k", xid, caller_number]``: that caller's flags, opt-outs or tickets changed (rare,
  and their text can be long: the replica reads the caller again);
* ``["r", xid]``: a table was truncated: the replica reloads everything.

``clock`` (``clock_timestamp()``) is there because PostgreSQL delivers identical payloads
sent in one transaction once, the first time: a row that went A -> B -> A in one
transaction would otherwise end as B in the replica. Two ``k`` for one caller in one
transaction are one re-read, which is all they need.

A call row update that touches none of the columns routing reads (notes, the sticky-hit
flag, legs) announces nothing.

SQLite has no notifications: there the daemon reads the database per call, in process.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "callrouter_state"

# The call columns a PastCall is made of, in the payload's order after id.
_CALL = ("caller_number", "queue", "started_at", "ended_at", "operator_id", "outcome",
         "talk_seconds", "resolved", "escalated", "operator_talk_seconds")

_FUNCTIONS = {
    "callrouter_state_calls": f"""
DECLARE x text := pg_current_xact_id()::text;
BEGIN
  IF TG_OP <> 'INSERT' AND OLD.caller_number IS NOT NULL
     AND (TG_OP = 'DELETE' OR NEW.caller_number IS DISTINCT FROM OLD.caller_number
          OR NEW.id IS DISTINCT FROM OLD.id) THEN
    PERFORM pg_notify('{CHANNEL}', json_build_array('c-', x, OLD.id, clock_timestamp())::text);
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.caller_number IS NOT NULL THEN
    PERFORM pg_notify('{CHANNEL}', json_build_array(
      'c', x, NEW.id, {", ".join("NEW." + c for c in _CALL)}, clock_timestamp())::text);
  END IF;
  RETURN NULL;
END""",
    "callrouter_state_escalations": f"""
DECLARE x text := pg_current_xact_id()::text;
BEGIN
  IF TG_OP <> 'INSERT' AND OLD.escalated AND OLD.caller_number IS NOT NULL THEN
    PERFORM pg_notify('{CHANNEL}', json_build_array(
      'e-', x, OLD.id, OLD.caller_number, clock_timestamp())::text);
  END IF;
  IF TG_OP <> 'DELETE' AND NEW.escalated AND NEW.caller_number IS NOT NULL THEN
    PERFORM pg_notify('{CHANNEL}', json_build_array(
      'e', x, NEW.id, NEW.caller_number, NEW.decided_at, clock_timestamp())::text);
  END IF;
  RETURN NULL;
END""",
    "callrouter_state_callers": f"""
DECLARE x text := pg_current_xact_id()::text;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    PERFORM pg_notify('{CHANNEL}', json_build_array('k', x, OLD.caller_number)::text);
  END IF;
  IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT'
                            OR NEW.caller_number IS DISTINCT FROM OLD.caller_number) THEN
    PERFORM pg_notify('{CHANNEL}', json_build_array('k', x, NEW.caller_number)::text);
  END IF;
  RETURN NULL;
END""",
    "callrouter_state_reset": f"""
BEGIN
  PERFORM pg_notify('{CHANNEL}', json_build_array('r', pg_current_xact_id()::text)::text);
  RETURN NULL;
END""",
}

_CHANGED = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in ("id", *_CALL))

# (trigger name, table, timing and events, function)
_TRIGGERS = (
    ("callrouter_state_calls", "calls", "AFTER INSERT OR DELETE", "FOR EACH ROW",
     "callrouter_state_calls"),
    ("callrouter_state_calls_update", "calls", "AFTER UPDATE",
     f"FOR EACH ROW WHEN ({_CHANGED})", "callrouter_state_calls"),
    ("callrouter_state_escalations", "decisions", "AFTER INSERT",
     "FOR EACH ROW WHEN (NEW.escalated AND NEW.caller_number IS NOT NULL)",
     "callrouter_state_escalations"),
    ("callrouter_state_escalations_delete", "decisions", "AFTER DELETE",
     "FOR EACH ROW WHEN (OLD.escalated AND OLD.caller_number IS NOT NULL)",
     "callrouter_state_escalations"),
    ("callrouter_state_escalations_update", "decisions", "AFTER UPDATE",
     "FOR EACH ROW WHEN ((OLD.id, OLD.escalated, OLD.caller_number, OLD.decided_at) "
     "IS DISTINCT FROM (NEW.id, NEW.escalated, NEW.caller_number, NEW.decided_at))",
     "callrouter_state_escalations"),
    *(
        (f"callrouter_state_{table}", table, "AFTER INSERT OR UPDATE OR DELETE",
         "FOR EACH ROW", "callrouter_state_callers")
        for table in ("caller_flags", "caller_opt_outs", "tickets")
    ),
    *(
        (f"callrouter_state_{table}_truncate", table, "AFTER TRUNCATE", "FOR EACH STATEMENT",
         "callrouter_state_reset")
        for table in ("calls", "decisions", "caller_flags", "caller_opt_outs", "tickets")
    ),
)

# What a replica checks before it trusts the notifications (pg_replica.REQUIRED_TRIGGERS).
TRIGGER_NAMES = tuple(t[0] for t in _TRIGGERS)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, body in _FUNCTIONS.items():
        op.execute(f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger "
                   f"LANGUAGE plpgsql AS $fn${body}$fn$")
    for name, table, events, each, function in _TRIGGERS:
        op.execute(f"CREATE TRIGGER {name} {events} ON {table} {each} "
                   f"EXECUTE FUNCTION {function}()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    for name in _FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
