"""/callers/{number}: the caller's context, tickets, and what the team says about them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from callrouter.api import schemas as s
from callrouter.api.auth import Deps, Permission, Principal, Tx, require
from callrouter.api.errors import responses
from callrouter.api.services import access, actions
from callrouter.api.services.context import caller_context, normalise

NumberPath = Annotated[
    str,
    Path(min_length=1, max_length=40, pattern=r"^[0-9+()\-. ]+$",
         description="Any form of the number ('+79123456789', '8 912 345-67-89')"),
]
CallerReader = Annotated[Principal, Depends(require(Permission.READ_CALLER))]
CallerActor = Annotated[Principal, Depends(require(Permission.CALLER_ACTIONS))]
ClassSetter = Annotated[Principal, Depends(require(Permission.SET_CLASS))]
OptingOut = Annotated[Principal, Depends(require(Permission.OPT_OUT))]
ERRORS = responses(401, 403, 422)


def build_router() -> APIRouter:
    router = APIRouter(prefix="/callers", tags=["callers"], responses=ERRORS)

    @router.get("/{number}", response_model=s.CallerContextOut)
    async def get_caller(
        number: NumberPath, who: CallerReader, deps: Deps, tx: Tx,
        queue: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.\-]{1,80}$",
                                           description="Entry queue for 'routing now'")] = None,
    ) -> s.CallerContextOut:
        """Everything an operator needs about a caller; operators: only their own callers."""
        e164 = normalise(deps, number)
        await access.check_caller(tx, who, e164)
        return await caller_context(deps, tx, e164, queue, deps.clock())

    @router.get("/{number}/tickets", response_model=list[s.TicketOut])
    async def list_tickets(
        number: NumberPath, who: CallerReader, deps: Deps, tx: Tx
    ) -> list[s.TicketOut]:
        return await actions.tickets_of(tx, who, normalise(deps, number))

    @router.post("/{number}/tickets", response_model=s.TicketOut,
                 status_code=status.HTTP_201_CREATED)
    async def create_ticket(
        number: NumberPath, body: s.TicketCreate, who: CallerActor, deps: Deps, tx: Tx
    ) -> s.TicketOut:
        return await actions.create_ticket(tx, who, normalise(deps, number), body, deps.clock())

    @router.put("/{number}/abusive", response_model=s.FlagsOut)
    async def flag_abusive(
        number: NumberPath, body: s.AbusiveIn, who: CallerActor, deps: Deps, tx: Tx
    ) -> s.FlagsOut:
        """Flag (or unflag); the flagging operator is never routed this caller again."""
        return await actions.flag_abusive(
            tx, who, normalise(deps, number), body.abusive, deps.clock()
        )

    @router.put("/{number}/class", response_model=s.FlagsOut)
    async def set_class(
        number: NumberPath, body: s.ClassIn, who: ClassSetter, deps: Deps, tx: Tx
    ) -> s.FlagsOut:
        """The caller's VIP class (null clears it); the rules say what a class means."""
        return await actions.set_class(
            tx, who, normalise(deps, number), body.vip_class, deps.clock()
        )

    @router.put("/{number}/note", response_model=s.FlagsOut)
    async def set_note(
        number: NumberPath, body: s.NoteIn, who: CallerActor, deps: Deps, tx: Tx
    ) -> s.FlagsOut:
        return await actions.set_note(tx, who, normalise(deps, number), body.note, deps.clock())

    @router.put("/{number}/opt-out", response_model=s.OptOutOut)
    async def opt_out(number: NumberPath, who: OptingOut, deps: Deps, tx: Tx) -> s.OptOutOut:
        """"Do not route this caller to me", for the token's operator (403 if it has none)."""
        return await actions.opt_out(tx, who, normalise(deps, number), True, deps.clock())

    @router.delete("/{number}/opt-out", response_model=s.OptOutOut)
    async def opt_in(number: NumberPath, who: OptingOut, deps: Deps, tx: Tx) -> s.OptOutOut:
        return await actions.opt_out(tx, who, normalise(deps, number), False, deps.clock())

    return router
