"""What operators and supervisors do to callers, calls and tickets; each change is audited."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from callrouter.api import schemas as s
from callrouter.api.auth import Principal
from callrouter.api.errors import Missing
from callrouter.api.services import access
from callrouter.api.services.convert import call_out, flags_out, ticket_out
from callrouter.numbers import mask
from callrouter.store.records import UNSET, StoredCall
from callrouter.store.store import Transaction

log = logging.getLogger(__name__)


async def flag_abusive(
    tx: Transaction, who: Principal, number: str, abusive: bool, now: datetime
) -> s.FlagsOut:
    """The flagging operator is protected from the caller (``decide`` reads ``flagged_by``)."""
    await access.check_caller(tx, who, number)
    by = who.operator_id or who.actor
    flags = await tx.flags.set_abusive(number, abusive, by, now=now)
    await tx.audit.append(who.actor, "caller.abusive", subject=number,
                          details={"abusive": abusive, "by": by})
    log.info("%s set abusive=%s on %s", who.actor, abusive, mask(number))
    return flags_out(flags)


async def set_class(
    tx: Transaction, who: Principal, number: str, vip_class: str | None, now: datetime
) -> s.FlagsOut:
    flags = await tx.flags.set_vip_class(number, vip_class, now=now)
    await tx.audit.append(who.actor, "caller.class", subject=number,
                          details={"vip_class": vip_class})
    return flags_out(flags)


async def set_note(
    tx: Transaction, who: Principal, number: str, note: str, now: datetime
) -> s.FlagsOut:
    await access.check_caller(tx, who, number)
    flags = await tx.flags.set_notes(number, note, now=now)
    await tx.audit.append(who.actor, "caller.note", subject=number)
    return flags_out(flags)


async def opt_out(
    tx: Transaction, who: Principal, number: str, on: bool, now: datetime
) -> s.OptOutOut:
    """"Do not route this caller to me": always for the token's own operator."""
    operator_id = access.own_operator(who)
    await access.check_caller(tx, who, number)
    if on:
        changed = await tx.flags.add_opt_out(number, operator_id, now=now)
    else:
        changed = await tx.flags.remove_opt_out(number, operator_id)
    if changed:
        await tx.audit.append(who.actor, "caller.opt_out" if on else "caller.opt_in",
                              subject=number, details={"operator_id": operator_id})
    return s.OptOutOut(caller_number=number, operator_id=operator_id, opted_out=on,
                       changed=changed)


async def call_resolved(
    tx: Transaction, who: Principal, call_id: str, resolved: bool | None, now: datetime
) -> s.CallOut:
    """A handler's own verdict (the call's verdict follows the handlers'), or, for a
    supervisor or admin who did not handle the call, the call's verdict directly."""
    call, mine = await _handler_or_call(
        tx, who, call_id,
        lambda op: tx.calls.set_operator_verdict(call_id, op, resolved, now),
        lambda: tx.calls.mark_resolved(call_id, resolved))
    await tx.audit.append(who.actor, "call.resolved", subject=call_id,
                          details={"resolved": resolved, "operator_id": mine,
                                   "call_resolved": call.resolved})
    return call_out(call, await tx.operators.all())


async def call_note(
    tx: Transaction, who: Principal, call_id: str, note: str | None, now: datetime
) -> s.CallOut:
    """A handler's own note, or, for a supervisor or admin who did not handle the call,
    the call's own note."""
    call, mine = await _handler_or_call(
        tx, who, call_id,
        lambda op: tx.calls.set_operator_note(call_id, op, note, now),
        lambda: tx.calls.set_note(call_id, note))
    await tx.audit.append(who.actor, "call.note", subject=call_id,
                          details={"operator_id": mine})
    return call_out(call, await tx.operators.all())


async def _handler_or_call(
    tx: Transaction, who: Principal, call_id: str,
    for_handler: Callable[[str], Awaitable[StoredCall]],
    for_call: Callable[[], Awaitable[StoredCall]],
) -> tuple[StoredCall, str | None]:
    """The change a handler makes to their own part (``for_handler(operator_id)``), or the
    one a supervisor makes to the call (``for_call()``); 403/404 as ``access`` says."""
    call = await access.call_for(tx, who, call_id)
    if call is None:
        raise Missing(f"no call {call_id!r}")
    mine = access.own_part(who, call)
    return (await for_handler(mine) if mine is not None else await for_call()), mine


async def get_call(tx: Transaction, who: Principal, call_id: str) -> s.CallOut:
    call = await access.call_for(tx, who, call_id)
    if call is None:
        raise Missing(f"no call {call_id!r}")
    return call_out(call, await tx.operators.all())


async def tickets_of(tx: Transaction, who: Principal, number: str) -> list[s.TicketOut]:
    await access.check_caller(tx, who, number)
    return [ticket_out(t) for t in await tx.tickets.list_by_caller(number)]


async def create_ticket(
    tx: Transaction, who: Principal, number: str, body: s.TicketCreate, now: datetime
) -> s.TicketOut:
    await access.check_caller(tx, who, number)
    ticket = await tx.tickets.create(
        number, body.subject, status=body.status, tier=body.tier,
        assignee_id=body.assignee_id, external_ref=body.external_ref, now=now,
    )
    await tx.audit.append(who.actor, "ticket.create", subject=ticket.id,
                          details={"caller_number": number})
    return ticket_out(ticket)


async def update_ticket(
    tx: Transaction, who: Principal, ticket_id: str, body: s.TicketUpdate, now: datetime
) -> s.TicketOut:
    if await access.ticket_for(tx, who, ticket_id) is None:
        raise Missing(f"no ticket {ticket_id!r}")
    given = body.model_fields_set
    ticket = await tx.tickets.update(
        ticket_id,
        status=body.status if "status" in given and body.status else UNSET,
        assignee_id=body.assignee_id if "assignee_id" in given else UNSET,
        subject=body.subject if "subject" in given and body.subject else UNSET,
        tier=body.tier if "tier" in given and body.tier else UNSET,
        now=now,
    )
    await tx.audit.append(who.actor, "ticket.update", subject=ticket_id,
                          details=body.model_dump(mode="json", exclude_unset=True))
    return ticket_out(ticket)
