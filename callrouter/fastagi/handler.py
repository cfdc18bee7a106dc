"""The ``route`` AGI handler: env -> InboundCall -> decision within a budget -> CALLROUTER_*."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from callrouter import channel_vars as cv
from callrouter.aio import retrieve_exception
from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.fastagi.protocol import AgiChannel, AgiEnvironment, AgiHangup, quote_arg
from callrouter.ids import new_id
from callrouter.numbers import mask
from callrouter.service.ports import DecisionRecord, InboundCall

log = logging.getLogger("callrouter.fastagi")

DEFAULT_BUDGET = 0.5
DEFAULT_WAIT = 20  # seconds to ring a target when a decision forgot to say
MAX_WAIT = 600


Wanted = Callable[[], bool]


class Router(Protocol):
    """What the adapter needs from the routing service (``RoutingService`` has this shape).

    ``wanted()`` turns false when the adapter stopped waiting (the time budget ran out and
    the caller got the queue): the router then finishes without recording its decision.
    The routing is abandoned, not cancelled, so a database read in flight is never cut
    mid-query (asyncpg would answer a cancellation with a cancel request on a connection
    of its own, and under load with a storm of them)."""

    async def route_call(self, call: InboundCall, now: datetime | None = None, *,
                         wanted: Wanted | None = None) -> DecisionRecord:
        ...

    def fallback(self, call: InboundCall, code: ReasonCode, text: str) -> DecisionRecord: ...


class SessionObserver:
    """Metrics hooks; the default does nothing. Subclass and pass to the handler/server."""

    def decision(self, record: DecisionRecord, seconds: float, fallback: ReasonCode | None) -> None:
        """A decision was delivered (``fallback`` is set when the adapter had to fall back)."""

    def session_end(self, route: str, outcome: str, seconds: float) -> None:
        """outcome: ok | hangup | closed | bad_client | error | unknown_route."""

    def rejected(self, why: str) -> None:
        """A connection was closed before reading it (e.g. ``too_many_sessions``)."""


@dataclass(slots=True)
class AgiSession:
    """What a handler gets: the channel to talk on and the environment already read."""

    channel: AgiChannel
    env: AgiEnvironment
    # who is at the other end, asked only when a log line needs it (a getpeername per call
    # for nothing otherwise)
    peer_name: Callable[[], str] = str

    @property
    def peer(self) -> str:
        return self.peer_name()


AgiHandler = Callable[[AgiSession], Awaitable[None]]



def inbound_call(env: AgiEnvironment, *, default_queue: str, server_id: str = "default") -> (
    InboundCall
):
    """Read a call from the env. ``unknown`` means absent or empty in Asterisk (never empty)."""
    name = env.calleridname
    return InboundCall(
        caller_raw=env.callerid,
        queue=env.arg(1).strip() or default_queue,
        callingpres=env.callingpres,
        caller_name=None if name in ("", "unknown") else name,
        uniqueid=env.uniqueid or None,
        linkedid=None,  # not in the env; the AMI side correlates by uniqueid
        channel=env.channel or None,
        server_id=server_id,
    )


def last_resort_record(call: InboundCall, code: ReasonCode, text: str) -> DecisionRecord:
    """A queue decision built without the router, for when even ``fallback`` failed."""
    decision = Decision(
        action=Action.QUEUE, queue=call.queue, priority=0, reasons=(Reason(code, text),)
    )
    return DecisionRecord(
        id=new_id(),
        decided_at=datetime.now(UTC),
        caller_raw=call.caller_raw,
        caller_number=None,
        queue=call.queue,
        decision=decision,
        latency_ms=0.0,
        uniqueid=call.uniqueid,
        linkedid=call.linkedid,
        channel=call.channel,
        server_id=call.server_id,
    )


def channel_variables(record: DecisionRecord, *, default_queue: str) -> dict[str, str]:
    """The CALLROUTER_* values for a decision, with the adapter-edge guarantees applied:
    a queue is never empty, and WAIT is a positive integer whenever TARGET is set (Dial
    reads an empty, zero or non-numeric timeout as "ring forever")."""
    d = record.decision
    target = (d.target_interface or "").strip()
    wait = d.wait_seconds if isinstance(d.wait_seconds, int) else 0
    if target:
        if wait <= 0:
            log.warning("decision %s has target but wait %r; using %d s", record.id, wait,
                        DEFAULT_WAIT)
            wait = DEFAULT_WAIT
        wait = min(wait, MAX_WAIT)
    else:
        wait = 0
    return {
        cv.ACTION: d.action.value if target or d.action is Action.QUEUE else Action.QUEUE.value,
        cv.TARGET: target,
        cv.QUEUE: (d.queue or "").strip() or default_queue,
        cv.PRIORITY: str(int(d.priority)),
        cv.WAIT: str(wait),
        cv.ANNOUNCE: d.announcement or "",
        cv.OPERATOR: (d.target_operator_id or "") if target else "",
        cv.REASON: d.reason_code.value if d.reasons else ReasonCode.FALLBACK_ERROR.value,
        cv.DECISION: record.id,
    }


# Characters that pass unchanged through res_agi's parser *and* the app-argument splitter
# (commas, quotes, backslashes, parentheses, brackets and '=' are special there).
_MSET_SAFE = re.compile(r"^[A-Za-z0-9_./:@+#*~-]*$")


async def set_variables(channel: AgiChannel, values: Mapping[str, str]) -> int:
    """Set channel variables in as few round trips as possible; returns the round trips.

    Safe values go in one ``EXEC MSet A=1,B=2`` (one round trip, Asterisk answers
    ``200 result=0``); a value with special characters gets its own ``SET VARIABLE``. If
    MSet is refused (510/520, or ``result=-2`` when the app is missing) we fall back to one
    ``SET VARIABLE`` per variable.
    """
    rest: dict[str, str] = {}
    if _MSET_SAFE.match("".join(values.values())):  # the usual case: one check for all
        pairs = [f"{key}={value}" for key, value in values.items()]
    else:
        pairs = []
        for key, value in values.items():
            if _MSET_SAFE.match(value):
                pairs.append(f"{key}={value}")
            else:
                rest[key] = value
    trips = 0
    if pairs:
        reply = await channel.command(f"EXEC MSet {quote_arg(','.join(pairs))}")
        trips += 1
        if not reply.ok or reply.result == -2:
            log.warning("MSet refused (%s %s); setting variables one by one",
                        reply.code, reply.extra[:60])
            rest = dict(values)
    for key, value in rest.items():
        if channel.hungup:
            raise AgiHangup("caller hung up while variables were being set")
        await channel.command(f"SET VARIABLE {key} {quote_arg(value)}")
        trips += 1
    return trips


class QueueOnlyRouter:
    """A router that always answers with the entry queue: the classic entry's stand-in when
    the real router cannot be built (fail open)."""

    def __init__(self, why: str) -> None:
        self.why = why

    async def route_call(self, call: InboundCall, now: datetime | None = None, *,
                         wanted: Wanted | None = None) -> DecisionRecord:
        return last_resort_record(call, ReasonCode.FALLBACK_ERROR, self.why)

    def fallback(self, call: InboundCall, code: ReasonCode, text: str) -> DecisionRecord:
        return last_resort_record(call, code, text)


class RouteHandler:
    """Handler of the ``route`` AGI route. Fails open: any trouble gives the entry queue."""

    def __init__(
        self,
        router: Router,
        *,
        budget: float = DEFAULT_BUDGET,
        default_queue: str = "support",
        server_id: str = "default",
        observer: SessionObserver | None = None,
    ) -> None:
        self.router = router
        self.budget = budget
        self.default_queue = default_queue
        self.server_id = server_id
        self.observer = observer or SessionObserver()

    async def __call__(self, session: AgiSession) -> None:
        started = time.perf_counter()
        call = inbound_call(session.env, default_queue=self.default_queue,
                            server_id=self.server_id)
        record, fallback = await self.decide(call)
        await self._deliver(session, call, record, fallback, started)

    async def on_unknown_route(self, session: AgiSession) -> None:
        """An ``agi://host/<something else>`` call: still give the caller the normal queue."""
        call = inbound_call(session.env, default_queue=self.default_queue,
                            server_id=self.server_id)
        text = f"unknown AGI route {session.env.route[:40]!r}"
        log.warning("%s from %s; letting the call through to queue %s",
                    text, session.peer or "?", call.queue)
        record = self._fallback(call, ReasonCode.FALLBACK_BAD_INPUT, text)
        await self._deliver(session, call, record, ReasonCode.FALLBACK_BAD_INPUT,
                            time.perf_counter())

    async def decide(self, call: InboundCall) -> tuple[DecisionRecord, ReasonCode | None]:
        """The router's decision within the budget, else its fallback (never raises).

        The routing runs as its own task. When the budget runs out it is abandoned, not
        cancelled: ``wanted()`` turns false so it records nothing, and a router that never
        finishes cannot hold the call either way.
        """
        loop = asyncio.get_running_loop()
        abandoned = False

        def wanted() -> bool:
            return not abandoned

        task = loop.create_task(self.router.route_call(call, wanted=wanted))
        # A future woken by the task or the budget's timer, whichever comes first (what
        # asyncio.wait(timeout=) does, without its extra futures and callbacks per call).
        waiter = loop.create_future()

        def wake(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = loop.call_later(self.budget, wake)
        task.add_done_callback(wake)
        try:
            await waiter
        except BaseException:  # the session itself ended (server closing): drop the routing
            abandoned = True
            task.cancel()
            task.add_done_callback(retrieve_exception)
            raise
        finally:
            timer.cancel()
            task.remove_done_callback(wake)
        if not task.done():
            abandoned = True
            task.add_done_callback(retrieve_exception)
            text = f"no decision within {self.budget * 1000:.0f} ms"
            log.warning("%s for caller %s uniqueid %s; letting the call through to queue %s",
                        text, mask(call.caller_raw), call.uniqueid, call.queue)
            return self._fallback(call, ReasonCode.FALLBACK_TIMEOUT, text), (
                ReasonCode.FALLBACK_TIMEOUT
            )
        exc = task.exception()
        if exc is not None:
            log.error("routing failed for caller %s uniqueid %s (%s: %s); letting the call "
                      "through to queue %s", mask(call.caller_raw), call.uniqueid,
                      type(exc).__name__, exc, call.queue)
            return self._fallback(call, ReasonCode.FALLBACK_ERROR,
                                  f"routing failed: {type(exc).__name__}"), (
                ReasonCode.FALLBACK_ERROR
            )
        return task.result(), None

    def _fallback(self, call: InboundCall, code: ReasonCode, text: str) -> DecisionRecord:
        try:
            return self.router.fallback(call, code, text)
        except Exception:
            log.exception("router fallback failed; using the adapter's own queue decision")
            return last_resort_record(call, code, text)

    async def _deliver(
        self,
        session: AgiSession,
        call: InboundCall,
        record: DecisionRecord,
        fallback: ReasonCode | None,
        started: float,
    ) -> None:
        values = channel_variables(record, default_queue=call.queue or self.default_queue)
        await set_variables(session.channel, values)
        self.observer.decision(record, time.perf_counter() - started, fallback)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("call %s from %s: %s %s queue=%s reason=%s decision=%s",
                      call.uniqueid, mask(call.caller_raw), values[cv.ACTION],
                      values[cv.TARGET] or "-", values[cv.QUEUE], values[cv.REASON],
                      values[cv.DECISION])


def route_table(handler: RouteHandler) -> dict[str, AgiHandler]:
    """The one registration point for AGI routes: route name -> handler."""
    return {"route": handler}
