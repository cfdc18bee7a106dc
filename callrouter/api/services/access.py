"""Operators see only callers of their own calls; a refusal never says whether one exists.

Every check answers the same 403 for "not yours" and "does not exist", so an operator
token cannot be used to probe which numbers ever called.
"""

from __future__ import annotations

from callrouter.api.auth import Principal
from callrouter.api.errors import Forbidden
from callrouter.api.services.queries import operator_talked_to
from callrouter.domain.model import Ticket
from callrouter.store.records import StoredCall
from callrouter.store.store import Transaction

NOT_YOURS = "operators may only see callers of their own calls"
NO_OPERATOR = "this token is not bound to an operator"


def own_operator(principal: Principal) -> str:
    """The token's operator id, or 403 for tokens not bound to one."""
    if principal.operator_id is None:
        raise Forbidden(NO_OPERATOR)
    return principal.operator_id


async def check_caller(tx: Transaction, principal: Principal, number: str) -> None:
    """403 for an operator who never handled a call of ``number`` (existing or not)."""
    if not principal.is_operator:
        return
    operator_id = own_operator(principal)
    if not await operator_talked_to(tx, operator_id, number):
        raise Forbidden(NOT_YOURS)


async def call_for(tx: Transaction, principal: Principal, call_id: str) -> StoredCall | None:
    """The call if this principal may act on it; operators get 403 for missing calls and
    for calls they never handled (every operator who had the call, also one who
    transferred it on, may: their follow-up is theirs to finish)."""
    call = await tx.calls.get(call_id)
    if principal.is_operator:
        operator_id = own_operator(principal)
        if call is None or not call.handled_by(operator_id):
            raise Forbidden(NOT_YOURS)
    return call


def own_part(principal: Principal, call: StoredCall) -> str | None:
    """The operator whose own note and verdict this principal writes on ``call``: the
    token's operator, when they handled it. None for supervisors and admins who did not
    (they write the call's own note and verdict)."""
    operator_id = principal.operator_id
    return operator_id if operator_id is not None and call.handled_by(operator_id) else None


async def ticket_for(tx: Transaction, principal: Principal, ticket_id: str) -> Ticket | None:
    """The ticket if this principal may act on it (operators: tickets of their callers)."""
    ticket = await tx.tickets.get(ticket_id)
    if principal.is_operator:
        if ticket is None:
            raise Forbidden(NOT_YOURS)
        await check_caller(tx, principal, ticket.caller_number)
    return ticket
