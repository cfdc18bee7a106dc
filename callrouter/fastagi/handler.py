"""The ``route`` AGI handler: env -> InboundCall -> decision within a budget -> CALLROUTER_*."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from callrouter import channel_vars as cv
from callrouter.aio import retrieve_exception
from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.fastagi.protocol import AgiChannel, AgiEnvironment, set_variables
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


# What a route gets and gives. A route is started with the environment already read, a
# way to name the peer for log lines (a getpeername per call for nothing otherwise) and
# ``answer``, which it calls exactly once, possibly later, with the channel variables to
# set and ``delivered``, which the server calls once Asterisk has taken them. It may return
# ``Abandon``: called when the session is dropped before it answered (the server closing).
Delivered = Callable[[], None]
Answer = Callable[[Mapping[str, str], Delivered], None]
Abandon = Callable[[], None]
AgiRoute = Callable[[AgiEnvironment, Callable[[], str], Answer], Abandon | None]


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
        # A router that can sometimes decide without waiting (RoutingService.route_now)
        self._route_now: Callable[[InboundCall], DecisionRecord | None] | None = getattr(
            router, "route_now", None)

    def start(self, env: AgiEnvironment, peer_name: Callable[[], str], answer: Answer) -> (
        Abandon | None
    ):
        """The ``route`` route (an ``AgiRoute``): decide within the budget, then answer.
        Answered before returning when the router decides at once (None: nothing to
        abandon)."""
        started = time.perf_counter()
        call = inbound_call(env, default_queue=self.default_queue, server_id=self.server_id)

        route_now = self._route_now
        if route_now is not None:
            try:
                record = route_now(call)
            except Exception as exc:
                _routing_failed(call, exc)
                self._answer(answer, call, self._fallback(
                    call, ReasonCode.FALLBACK_ERROR, f"routing failed: {type(exc).__name__}"),
                    ReasonCode.FALLBACK_ERROR, started)
                return None
            if record is not None:  # decided at once: no task, no budget timer
                self._answer(answer, call, record, None, started)
                return None

        def decided(record: DecisionRecord, fallback: ReasonCode | None) -> None:
            self._answer(answer, call, record, fallback, started)

        return _Pending(self, call, decided).abandon

    def on_unknown_route(self, env: AgiEnvironment, peer_name: Callable[[], str],
                         answer: Answer) -> None:
        """An ``agi://host/<something else>`` call: still give the caller the normal queue."""
        call = inbound_call(env, default_queue=self.default_queue, server_id=self.server_id)
        text = f"unknown AGI route {env.route[:40]!r}"
        log.warning("%s from %s; letting the call through to queue %s",
                    text, peer_name() or "?", call.queue)
        record = self._fallback(call, ReasonCode.FALLBACK_BAD_INPUT, text)
        self._answer(answer, call, record, ReasonCode.FALLBACK_BAD_INPUT, time.perf_counter())

    async def decide(self, call: InboundCall) -> tuple[DecisionRecord, ReasonCode | None]:
        """The router's decision within the budget, else its fallback (never raises)."""
        decided: asyncio.Future[tuple[DecisionRecord, ReasonCode | None]] = (
            asyncio.get_running_loop().create_future()
        )
        pending = _Pending(self, call, lambda record, fallback: decided.set_result(
            (record, fallback)))
        try:
            return await decided
        except BaseException:
            pending.abandon()
            raise

    def _fallback(self, call: InboundCall, code: ReasonCode, text: str) -> DecisionRecord:
        try:
            return self.router.fallback(call, code, text)
        except Exception:
            log.exception("router fallback failed; using the adapter's own queue decision")
            return last_resort_record(call, code, text)

    def _answer(self, answer: Answer, call: InboundCall, record: DecisionRecord,
                fallback: ReasonCode | None, started: float) -> None:
        values = channel_variables(record, default_queue=call.queue or self.default_queue)

        def delivered() -> None:
            self.observer.decision(record, time.perf_counter() - started, fallback)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("call %s from %s: %s %s queue=%s reason=%s decision=%s",
                          call.uniqueid, mask(call.caller_raw), values[cv.ACTION],
                          values[cv.TARGET] or "-", values[cv.QUEUE], values[cv.REASON],
                          values[cv.DECISION])

        answer(values, delivered)


class _Pending:
    """One routing in flight: the router's task raced against the budget's timer.

    When the budget runs out first the routing is abandoned, not cancelled: ``wanted()``
    turns false so it records nothing, the caller gets the fallback at once, and a router
    that never finishes cannot hold the call either way. ``abandon()`` (the session was
    dropped: the server is closing) cancels it.
    """

    __slots__ = ("_call", "_decided", "_handler", "_over", "_task", "_timer")

    def __init__(self, handler: RouteHandler, call: InboundCall,
                 decided: Callable[[DecisionRecord, ReasonCode | None], None]) -> None:
        loop = asyncio.get_running_loop()
        self._handler = handler
        self._call = call
        self._decided = decided
        self._over = False  # decided (by the router or the fallback) or abandoned
        self._task = loop.create_task(handler.router.route_call(call, wanted=self.wanted))
        self._timer = loop.call_later(handler.budget, self._late)
        self._task.add_done_callback(self._done)

    def wanted(self) -> bool:
        return not self._over

    def _done(self, task: asyncio.Task[DecisionRecord]) -> None:
        if self._over:
            return
        self._over = True
        self._timer.cancel()
        call, handler = self._call, self._handler
        exc = BaseException("cancelled") if task.cancelled() else task.exception()
        if exc is None:
            self._answered(task.result(), None)
            return
        _routing_failed(call, exc)
        self._answered(handler._fallback(call, ReasonCode.FALLBACK_ERROR,
                                         f"routing failed: {type(exc).__name__}"),
                       ReasonCode.FALLBACK_ERROR)

    def _late(self) -> None:
        if self._over or self._task.done():  # done: its callback is already on its way
            return
        self._over = True
        self._task.add_done_callback(retrieve_exception)
        call, handler = self._call, self._handler
        text = f"no decision within {handler.budget * 1000:.0f} ms"
        log.warning("%s for caller %s uniqueid %s; letting the call through to queue %s",
                    text, mask(call.caller_raw), call.uniqueid, call.queue)
        self._answered(handler._fallback(call, ReasonCode.FALLBACK_TIMEOUT, text),
                       ReasonCode.FALLBACK_TIMEOUT)

    def _answered(self, record: DecisionRecord, fallback: ReasonCode | None) -> None:
        decided, self._decided = self._decided, _nobody
        decided(record, fallback)  # and let go of it: it holds the session's answer

    def abandon(self) -> None:
        if self._over:
            return
        self._over = True
        self._decided = _nobody
        self._timer.cancel()
        self._task.cancel()
        self._task.add_done_callback(retrieve_exception)


def _routing_failed(call: InboundCall, exc: BaseException) -> None:
    log.error("routing failed for caller %s uniqueid %s (%s: %s); letting the call "
              "through to queue %s", mask(call.caller_raw), call.uniqueid,
              type(exc).__name__, exc, call.queue)


def _nobody(record: DecisionRecord, fallback: ReasonCode | None) -> None:
    """What a routing answers to once its answer was given or no longer wanted."""


async def converse(route: AgiRoute, channel: AgiChannel, env: AgiEnvironment,
                   peer_name: Callable[[], str] = str) -> None:
    """Run a route over an ``AgiChannel`` (the classic entry): wait for its answer, then set
    the variables with one command at a time."""
    answered: asyncio.Future[tuple[Mapping[str, str], Delivered]] = (
        asyncio.get_running_loop().create_future()
    )

    def answer(values: Mapping[str, str], delivered: Delivered) -> None:
        if not answered.done():
            answered.set_result((values, delivered))

    abandon = route(env, peer_name, answer)
    try:
        values, delivered = await answered
    except BaseException:
        if abandon is not None:
            abandon()
        raise
    await set_variables(channel, values)
    delivered()


def route_table(handler: RouteHandler) -> dict[str, AgiRoute]:
    """The one registration point for AGI routes: route name -> route."""
    return {"route": handler.start}
