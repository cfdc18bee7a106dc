"""Operators with their live state and current call; changes invalidate the router's cache."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from callrouter.api import schemas as s
from callrouter.api.auth import Principal
from callrouter.api.deps import ApiDeps
from callrouter.api.errors import Missing
from callrouter.api.services.queries import after_commit, current_calls
from callrouter.api.services.revocation import announce
from callrouter.domain.model import Operator, OperatorState
from callrouter.numbers import mask
from callrouter.store.models import CallRow
from callrouter.store.records import UNSET
from callrouter.store.store import Transaction


def _details(deps: ApiDeps) -> Mapping[str, Any]:
    # The AMI presence book has details(); a plain Presence (no AMI) only has states().
    details = getattr(deps.presence, "details", None)
    if details is None:
        return {}
    try:
        found = details()
    except Exception:  # presence is a convenience here: never fail the listing for it
        return {}
    return found if isinstance(found, Mapping) else {}


def _state(value: object) -> OperatorState:
    try:
        return OperatorState(str(value))
    except ValueError:
        return OperatorState.UNKNOWN


def _since(value: object) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return value if isinstance(value, datetime) else None


def _operator_out(
    op: Operator,
    states: Mapping[str, object],
    details: Mapping[str, Any],
    calls: Mapping[str, CallRow],
    pii: bool,
) -> s.OperatorOut:
    detail = details.get(op.id)
    state = states.get(op.id, OperatorState.UNKNOWN)
    row = calls.get(op.id)
    current = None
    if row is not None:
        number = row.caller_number if pii or not row.caller_number else mask(row.caller_number)
        current = s.CurrentCallOut(call_id=row.id, caller_number=number, queue=row.queue,
                                   answered_at=row.answered_at)
    return s.OperatorOut(
        id=op.id,
        name=op.name,
        tier=op.tier,
        queues=list(op.queues),
        interfaces=list(op.interfaces),
        active=op.active,
        state=_state(state),
        state_since=_since(getattr(detail, "since", None)),
        paused_reason=getattr(detail, "paused_reason", None) or None,
        current_call=current,
    )


async def list_operators(
    deps: ApiDeps, tx: Transaction, who: Principal, active_only: bool
) -> list[s.OperatorOut]:
    operators = await tx.operators.list(active_only=active_only)
    calls = await current_calls(tx, deps.clock())
    states = deps.presence.states()
    details = _details(deps)
    return [_operator_out(op, states, details, calls, who.sees_pii) for op in operators]


async def get_operator(
    deps: ApiDeps, tx: Transaction, who: Principal, operator_id: str
) -> s.OperatorOut:
    op = await tx.operators.get(operator_id)
    if op is None:
        raise Missing(f"no operator {operator_id!r}")
    calls = await current_calls(tx, deps.clock())
    return _operator_out(op, deps.presence.states(), _details(deps), calls, who.sees_pii)


async def create_operator(
    deps: ApiDeps, tx: Transaction, who: Principal, body: s.OperatorCreate
) -> s.OperatorOut:
    op = Operator(id=body.id, name=body.name, interfaces=tuple(body.interfaces),
                  tier=body.tier, queues=tuple(body.queues), active=body.active)
    await tx.operators.add(op)
    await tx.audit.append(who.actor, "operator.create", subject=op.id,
                          details=body.model_dump(mode="json"))
    after_commit(tx, deps.invalidate_directory)
    return _operator_out(op, deps.presence.states(), _details(deps), {}, who.sees_pii)


async def update_operator(
    deps: ApiDeps, tx: Transaction, who: Principal, operator_id: str, body: s.OperatorUpdate
) -> s.OperatorOut:
    given = {k for k in body.model_fields_set if getattr(body, k) is not None}
    op = await tx.operators.update(
        operator_id,
        name=body.name if "name" in given and body.name else UNSET,
        interfaces=body.interfaces if "interfaces" in given and body.interfaces is not None
        else UNSET,
        tier=body.tier if "tier" in given and body.tier else UNSET,
        queues=body.queues if "queues" in given and body.queues is not None else UNSET,
        active=body.active if "active" in given and body.active is not None else UNSET,
    )
    await tx.audit.append(who.actor, "operator.update", subject=operator_id,
                          details=body.model_dump(mode="json", exclude_unset=True))
    after_commit(tx, deps.invalidate_directory)
    if not op.active:
        announce(deps, tx, operator_id=operator_id)
    return await get_operator(deps, tx, who, op.id)


async def deactivate_operator(
    deps: ApiDeps, tx: Transaction, who: Principal, operator_id: str
) -> s.OperatorOut:
    op = await tx.operators.deactivate(operator_id)
    await tx.audit.append(who.actor, "operator.deactivate", subject=operator_id)
    after_commit(tx, deps.invalidate_directory)
    announce(deps, tx, operator_id=operator_id)
    return await get_operator(deps, tx, who, op.id)
