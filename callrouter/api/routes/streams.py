"""/stream/operator and /stream/dashboard: server-sent events.

Browsers' EventSource cannot set headers: pass the token as ``?access_token=``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sse_starlette import EventSourceResponse

from callrouter.api.auth import Deps, Permission, Principal, Tx, require
from callrouter.api.errors import responses
from callrouter.api.services.access import own_operator
from callrouter.api.services.revocation import require_active_operator
from callrouter.api.services.streams import dashboard_events, operator_events

Operator = Annotated[Principal, Depends(require(Permission.OWN_STREAM))]
Reader = Annotated[Principal, Depends(require(Permission.READ_STATE))]
STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": "An endless event stream",
    }
}


def build_router() -> APIRouter:
    router = APIRouter(prefix="/stream", tags=["streams"],
                       responses={**STREAM, **responses(401, 403)})

    @router.get("/operator", response_class=EventSourceResponse)
    async def operator_stream(who: Operator, deps: Deps, tx: Tx) -> EventSourceResponse:
        """``ready``, then one ``caller`` event (the call, the routing decision and the
        caller's context) each time a call of this token's operator connects, and
        ``call_ended`` when it ends. Needs a token bound to an active operator. Ends with
        ``closed`` when the token is revoked or the operator deactivated."""
        operator_id = own_operator(who)
        await require_active_operator(tx, operator_id)
        return EventSourceResponse(operator_events(deps, who, operator_id),
                                   ping=deps.stream_ping_seconds)

    @router.get("/dashboard", response_class=EventSourceResponse)
    async def dashboard_stream(who: Reader, deps: Deps) -> EventSourceResponse:
        """``ready``, then ``decision`` and ``operator_state`` events as they happen. Ends
        with ``closed`` when the token is revoked."""
        return EventSourceResponse(dashboard_events(deps, who), ping=deps.stream_ping_seconds)

    return router
