"""/calls/{id} and /tickets/{id}: one call with its legs and notes; follow-up on a call or
ticket."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from callrouter.api import schemas as s
from callrouter.api.auth import Deps, Permission, Principal, Tx, require
from callrouter.api.errors import responses
from callrouter.api.services import actions

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
Actor = Annotated[Principal, Depends(require(Permission.CALLER_ACTIONS))]
Reader = Annotated[Principal, Depends(require(Permission.READ_CALLER))]


def build_router() -> APIRouter:
    router = APIRouter(responses=responses(401, 403, 404, 422))

    @router.get("/calls/{call_id}", response_model=s.CallOut, tags=["calls"])
    async def get_call(call_id: Id, who: Reader, tx: Tx) -> s.CallOut:
        """The call with every leg (who had it, how each part ended) and each handler's
        note; operators: only calls they handled."""
        return await actions.get_call(tx, who, call_id)

    @router.put("/calls/{call_id}/resolved", response_model=s.CallOut, tags=["calls"])
    async def mark_resolved(
        call_id: Id, body: s.ResolvedIn, who: Actor, deps: Deps, tx: Tx
    ) -> s.CallOut:
        """Whether the caller's problem was solved; unresolved calls count toward escalation.
        A handler sets their own verdict; the call's is that of the handler who had the
        caller latest among those who gave one."""
        return await actions.call_resolved(tx, who, call_id, body.resolved, deps.clock())

    @router.put("/calls/{call_id}/note", response_model=s.CallOut, tags=["calls"])
    async def call_note(
        call_id: Id, body: s.CallNoteIn, who: Actor, deps: Deps, tx: Tx
    ) -> s.CallOut:
        """A handler writes their own note (in ``notes``); a supervisor or admin who did
        not handle the call writes the call's own ``note``."""
        return await actions.call_note(tx, who, call_id, body.note, deps.clock())

    @router.patch("/tickets/{ticket_id}", response_model=s.TicketOut, tags=["tickets"])
    async def update_ticket(
        ticket_id: Id, body: s.TicketUpdate, who: Actor, deps: Deps, tx: Tx
    ) -> s.TicketOut:
        """Change status, assignee (null unassigns), subject or tier."""
        return await actions.update_ticket(tx, who, ticket_id, body, deps.clock())

    return router
