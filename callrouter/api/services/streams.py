"""Server-sent event streams: an operator's screen-pop and the dashboard feed."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import ServerSentEvent

from callrouter.api.auth import Principal
from callrouter.api.deps import ApiDeps
from callrouter.api.services.context import caller_context
from callrouter.events import DASHBOARD, operator_topic
from callrouter.numbers import mask

log = logging.getLogger(__name__)


def _event(name: str, data: Any, event_id: str | None = None) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data, separators=(",", ":")), event=name, id=event_id)


async def screen_pop(deps: ApiDeps, payload: dict[str, Any]) -> dict[str, Any]:
    """The ``caller`` event: the call as AMI saw it, and the caller's context (or null)."""
    call = {k: payload.get(k) for k in ("uniqueid", "queue", "decision_id", "caller_name")}
    caller = deps.numbers.caller(payload.get("caller_number"))
    if not caller.identified or caller.number is None:
        return {"call": call, "caller": None, "reason": "number withheld, shared or unknown"}
    try:
        async with deps.store.transaction() as tx:
            context = await caller_context(deps, tx, caller.number, payload.get("queue"),
                                           deps.clock())
    except Exception:
        log.exception("screen-pop context for %s failed", mask(caller.number))
        return {"call": call, "caller": None, "reason": "context unavailable"}
    return {"call": call, "caller": context.model_dump(mode="json"), "reason": None}


async def operator_events(deps: ApiDeps, operator_id: str) -> AsyncIterator[ServerSentEvent]:
    """``ready`` once subscribed, then a ``caller`` event for each call this operator answers.

    The topic comes from the token's operator, and each payload's operator is checked
    again: an operator's stream never carries another operator's caller.
    """
    async with deps.events.subscribe(operator_topic(operator_id)) as subscription:
        yield _event("ready", {"operator_id": operator_id})
        async for payload in subscription:
            if not isinstance(payload, dict) or payload.get("operator_id") != operator_id:
                continue
            yield _event("caller", await screen_pop(deps, payload), payload.get("uniqueid"))


async def dashboard_events(deps: ApiDeps, who: Principal) -> AsyncIterator[ServerSentEvent]:
    """``ready``, then ``decision`` and ``operator_state`` events (numbers masked for readonly)."""
    async with deps.events.subscribe(DASHBOARD) as subscription:
        yield _event("ready", {"role": who.role.value})
        async for envelope in subscription:
            if not isinstance(envelope, dict) or "event" not in envelope:
                continue
            data = envelope.get("data") or {}
            if envelope["event"] == "decision" and not who.sees_pii:
                data = {**data, "caller_number": _mask_opt(data.get("caller_number")),
                        "caller_raw": mask(data.get("caller_raw"))}
            yield _event(str(envelope["event"]), data)


def _mask_opt(number: object) -> str | None:
    return mask(str(number)) if number else None
