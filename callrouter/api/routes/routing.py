"""/route/simulate and /decisions: what routing would do, and what it did."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from callrouter.api import schemas as s
from callrouter.api.auth import Deps, Permission, Principal, Tx, require
from callrouter.api.errors import Invalid, responses
from callrouter.api.services.bindings import current_bindings
from callrouter.api.services.context import normalise
from callrouter.api.services.convert import caller_out, decision_out, record_out
from callrouter.domain.model import OperatorState
from callrouter.domain.reasons import ReasonCode

Simulator = Annotated[Principal, Depends(require(Permission.SIMULATE))]
Reader = Annotated[Principal, Depends(require(Permission.READ_STATE))]
Auditor = Annotated[Principal, Depends(require(Permission.READ_DECISIONS))]


def build_router() -> APIRouter:
    router = APIRouter(tags=["routing"], responses=responses(401, 403, 422))

    @router.post("/route/simulate", response_model=s.SimulateOut)
    async def simulate(body: s.SimulateIn, who: Simulator, deps: Deps) -> s.SimulateOut:
        """A decision for this caller and queue now, with no side effects (nothing logged).

        ``operator_states`` are laid over the live states for the operators they name.
        """
        live = {k: OperatorState(str(v)) for k, v in deps.presence.states().items()}
        states = {**live, **(body.operator_states or {})}
        ctx, decision = await deps.routing.explain(
            body.caller, body.queue or "", states=states if body.operator_states else None,
            now=deps.clock(),
        )
        return s.SimulateOut(caller=caller_out(ctx.caller), queue=ctx.queue,
                             decision=decision_out(decision), operator_states=states)

    @router.get("/decisions", response_model=list[s.DecisionRecordOut])
    async def decisions(
        who: Auditor, deps: Deps, tx: Tx,
        caller: Annotated[str | None, Query(max_length=40, pattern=r"^[0-9+()\-. ]+$")] = None,
        operator: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
                                              description="The decision's target")] = None,
        reason: Annotated[ReasonCode | None, Query(description="Any of its reasons")] = None,
        since: Annotated[datetime | None, Query(description="decided_at >= since")] = None,
        until: Annotated[datetime | None, Query(description="decided_at < until")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[s.DecisionRecordOut]:
        """The audit log, newest first. Caller numbers are masked for readonly tokens."""
        number = normalise(deps, caller, "caller", "query") if caller else None
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise Invalid(name, "give a time zone (2026-01-31T10:00:00Z)", "query")
        found = await tx.decisions.list(
            caller_number=number, operator_id=operator, reason_code=reason,
            since=since, until=until, limit=limit,
        )
        return [record_out(r, pii=who.sees_pii) for r in found]

    @router.get("/bindings", response_model=list[s.BindingListItem])
    async def bindings(
        who: Reader, deps: Deps, tx: Tx,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[s.BindingListItem]:
        """Callers who would go back to their operator if they rang now, newest first.

        Per caller, the newest answered call that counts under its queue's sticky rules.
        ``blocked``: that operator opted out of the caller or flagged them abusive.
        Caller numbers are masked for readonly tokens."""
        return await current_bindings(deps, tx, deps.clock(), limit, who.sees_pii)

    return router
