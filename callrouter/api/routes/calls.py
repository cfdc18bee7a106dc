"""/calls/{id} and /tickets/{id}: follow-up on one call or ticket."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from callrouter.api import schemas as s
from callrouter.api.auth import Deps, Permission, Principal, Tx, require
from callrouter.api.errors import responses
from callrouter.api.services import actions

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
Actor = Annotated[Principal, Depends(require(Permission.CALLER_ACTIONS))]


def build_router() -> APIRouter:
    router = APIRouter(responses=responses(401, 403, 404, 422))

    @router.put("/calls/{call_id}/resolved", response_model=s.CallOut, tags=["calls"])
    async def mark_resolved(call_id: Id, body: s.ResolvedIn, who: Actor, tx: Tx) -> s.CallOut:
        """Whether the caller's problem was solved; unresolved calls count toward escalation."""
        return await actions.call_resolved(tx, who, call_id, body.resolved)

    @router.put("/calls/{call_id}/note", response_model=s.CallOut, tags=["calls"])
    async def call_note(call_id: Id, body: s.CallNoteIn, who: Actor, tx: Tx) -> s.CallOut:
        return await actions.call_note(tx, who, call_id, body.note)

    @router.patch("/tickets/{ticket_id}", response_model=s.TicketOut, tags=["tickets"])
    async def update_ticket(
        ticket_id: Id, body: s.TicketUpdate, who: Actor, deps: Deps, tx: Tx
    ) -> s.TicketOut:
        """Change status, assignee (null unassigns), subject or tier."""
        return await actions.update_ticket(tx, who, ticket_id, body, deps.clock())

    return router
