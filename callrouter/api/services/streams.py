"""Server-sent event streams: an operator's screen-pop and call ends, and the dashboard feed.

A stream lasts only as long as its token may read it: see ``revocation``. When access is
gone it sends ``closed`` with the reason and ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import ServerSentEvent

from callrouter.api.auth import Principal
from callrouter.api.deps import ApiDeps
from callrouter.api.services.context import caller_context
from callrouter.api.services.convert import decision_out
from callrouter.api.services.revocation import access_lost
from callrouter.events import ACCESS, DASHBOARD, Subscription, operator_topic
from callrouter.numbers import mask
from callrouter.store.store import Transaction

log = logging.getLogger(__name__)


def _event(name: str, data: Any, event_id: str | None = None) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data, separators=(",", ":")), event=name, id=event_id)


class Guarded:
    """Reads a subscription for as long as the stream's token (and operator) may read it.

    Access is checked again every ``every`` seconds (the first time after a random part of
    that, so consoles reconnecting together do not check together) and at once on an
    ``access_changed`` event naming this token or operator. A database that does not
    answer keeps the stream open: an outage must not cut every console off.
    """

    def __init__(
        self, deps: ApiDeps, subscription: Subscription, token_id: str, operator_id: str | None
    ) -> None:
        self.deps = deps
        self.subscription = subscription
        self.token_id = token_id
        self.operator_id = operator_id
        self.every = max(0.05, deps.stream_recheck_seconds)
        self.lost: str | None = None
        self._due = asyncio.get_running_loop().time() + self.every * random.uniform(0.5, 1.0)

    async def next(self) -> dict[str, Any] | None:
        """The next envelope for the stream, or None once access is lost (see ``lost``)."""
        loop = asyncio.get_running_loop()
        while True:
            envelope: Any
            try:
                envelope = await asyncio.wait_for(
                    self.subscription.get(), max(0.0, self._due - loop.time())
                )
            except TimeoutError:
                envelope = None  # time for the periodic check
            if envelope is not None and not self._names_me(envelope):
                if isinstance(envelope, dict) and envelope.get("event") != "access_changed":
                    return envelope
                continue  # another token's access change, or not an envelope at all
            self._due = loop.time() + self.every
            self.lost = await self._check()
            if self.lost is not None:
                return None

    def _names_me(self, envelope: Any) -> bool:
        if not isinstance(envelope, dict) or envelope.get("event") != "access_changed":
            return False
        return envelope.get("token_id") == self.token_id or (
            self.operator_id is not None and envelope.get("operator_id") == self.operator_id
        )

    async def _check(self) -> str | None:
        try:
            async with self.deps.store.transaction() as tx:
                return await access_lost(tx, self.token_id, self.operator_id)
        except Exception as exc:
            log.warning("stream access check for token %s failed: %r", self.token_id[:8], exc)
            return None


async def screen_pop(deps: ApiDeps, operator_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The ``caller`` event: the call as AMI saw it (with its row id), the routing decision
    with its reasons, and the caller's context (or null, with the reason)."""
    call = {k: payload.get(k) for k in ("uniqueid", "queue", "decision_id", "caller_name")}
    call["id"] = None
    decision = payload.get("decision")
    caller = deps.numbers.caller(payload.get("caller_number"))
    identified = caller.identified and caller.number is not None
    context: dict[str, Any] | None = None
    reason: str | None = None if identified else "number withheld, shared or unknown"
    try:
        async with deps.store.transaction() as tx:
            call["id"] = await _call_row_id(tx, operator_id, payload)
            decision_id = payload.get("decision_id")
            if decision is None and decision_id:
                record = await tx.decisions.get(decision_id)
                if record is not None:
                    decision = decision_out(record.decision).model_dump(mode="json")
            if identified:
                assert caller.number is not None
                found = await caller_context(deps, tx, caller.number, payload.get("queue"),
                                             deps.clock())
                context = found.model_dump(mode="json")
    except Exception:
        log.exception("screen-pop for %s failed", mask(caller.number))
        context, reason = None, reason or "context unavailable"
    return {"call": call, "decision": decision, "caller": context, "reason": reason}


async def _call_row_id(
    tx: Transaction, operator_id: str, payload: dict[str, Any]
) -> str | None:
    """The call log row of the call AMI names, if this operator handled it (also one who
    transferred it on: their follow-up is still theirs) or nobody is recorded yet (the
    row learns who answered when the listener's record is written)."""
    uniqueid = payload.get("uniqueid")
    if not uniqueid:
        return None
    row = await tx.calls.get_by_uniqueid(uniqueid, payload.get("server_id") or "default")
    if row is None:
        return None
    return row.id if row.operator_id is None or row.handled_by(operator_id) else None


async def call_ended(deps: ApiDeps, operator_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The ``call_ended`` event: which call, how it ended, how long the operator talked."""
    call = {"id": None, "uniqueid": payload.get("uniqueid"), "queue": payload.get("queue")}
    try:
        async with deps.store.transaction() as tx:
            call["id"] = await _call_row_id(tx, operator_id, payload)
    except Exception as exc:
        log.warning("call_ended: call row lookup failed: %r", exc)
    return {
        "call": call,
        **{k: payload.get(k) for k in ("outcome", "talk_seconds", "hold_seconds",
                                       "hangup_by", "transferred", "ended_at")},
    }


async def operator_events(
    deps: ApiDeps, who: Principal, operator_id: str
) -> AsyncIterator[ServerSentEvent]:
    """``ready`` once subscribed, then ``caller`` for each call this operator answers and
    ``call_ended`` when it ends; ``closed`` when the token or operator loses access.

    The topic comes from the token's operator, and each payload's operator is checked
    again: an operator's stream never carries another operator's caller.
    """
    topic = operator_topic(operator_id)
    async with deps.events.subscribe(topic, also=(ACCESS,)) as subscription:
        guarded = Guarded(deps, subscription, who.token.id, operator_id)
        yield _event("ready", {"operator_id": operator_id})
        while (envelope := await guarded.next()) is not None:
            data = envelope.get("data")
            if not isinstance(data, dict) or data.get("operator_id") != operator_id:
                continue
            if envelope.get("event") == "answered":
                yield _event("caller", await screen_pop(deps, operator_id, data),
                             data.get("uniqueid"))
            elif envelope.get("event") == "call_ended":
                yield _event("call_ended", await call_ended(deps, operator_id, data))
        yield _event("closed", {"reason": guarded.lost})


async def dashboard_events(deps: ApiDeps, who: Principal) -> AsyncIterator[ServerSentEvent]:
    """``ready``, then ``decision`` and ``operator_state`` events (numbers masked for
    readonly); ``closed`` when the token is revoked."""
    async with deps.events.subscribe(DASHBOARD, also=(ACCESS,)) as subscription:
        guarded = Guarded(deps, subscription, who.token.id, None)
        yield _event("ready", {"role": who.role.value})
        while (envelope := await guarded.next()) is not None:
            if "event" not in envelope:
                continue
            data = envelope.get("data") or {}
            if envelope["event"] == "decision" and not who.sees_pii:
                data = {**data, "caller_number": _mask_opt(data.get("caller_number")),
                        "caller_raw": mask(data.get("caller_raw"))}
            yield _event(str(envelope["event"]), data)
        yield _event("closed", {"reason": guarded.lost})


def _mask_opt(number: object) -> str | None:
    return mask(str(number)) if number else None
