"""RoutingService: gathers a call's inputs through the ports, runs decide, logs the result."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from callrouter.domain.decide import decide
from callrouter.domain.model import (
    Action,
    Caller,
    Decision,
    Incident,
    Operator,
    OperatorState,
    RoutingContext,
)
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.domain.rules import Rules
from callrouter.ids import new_id
from callrouter.numbers import NumberNormaliser, mask
from callrouter.service.decision_writer import DecisionWriter
from callrouter.service.ports import (
    CallerSnapshot,
    CallerSnapshotSource,
    DecisionRecord,
    InboundCall,
    IncidentSource,
    OperatorDirectory,
    Presence,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
DecisionObserver = Callable[[DecisionRecord], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


class NoPresence:
    """Presence when no AMI listener runs: every operator is ``unknown`` (so: the pool)."""

    def states(self) -> Mapping[str, OperatorState]:
        return {}


class RoutingService:
    """The one use case of the FastAGI route, also used by the CLI and the simulate API."""

    def __init__(
        self,
        *,
        rules: Callable[[], Rules],
        numbers: NumberNormaliser,
        snapshots: CallerSnapshotSource,
        directory: OperatorDirectory,
        presence: Presence,
        incidents: IncidentSource,
        writer: DecisionWriter | None = None,
        clock: Clock = utcnow,
        observers: list[DecisionObserver] | None = None,
    ) -> None:
        self._rules = rules
        self._numbers = numbers
        self._snapshots = snapshots
        self._directory = directory
        self._presence = presence
        self._incidents = incidents
        self._writer = writer
        self._clock = clock
        self.observers: list[DecisionObserver] = observers or []
        # What the ports can answer without waiting (route_now); None: they cannot.
        self._snapshot_now: Callable[[str, datetime, int], CallerSnapshot | None] | None = (
            getattr(snapshots, "snapshot_now", None))
        self._operators_now: Callable[[], Mapping[str, Operator] | None] | None = getattr(
            directory, "operators_now", None)
        self._incidents_now: Callable[[datetime], Sequence[Incident] | None] | None = (
            getattr(incidents, "active_now", None))

    # -- the FastAGI use case -----------------------------------------------------------

    async def route_call(self, call: InboundCall, now: datetime | None = None, *,
                         wanted: Callable[[], bool] | None = None) -> DecisionRecord:
        """Decide for a live call and log it. Store trouble gives the entry queue, never raises.

        ``wanted()`` false at the end (the adapter stopped waiting and gave the caller the
        queue): the decision is returned but neither recorded nor observed."""
        started = time.perf_counter()
        now = now or self._clock()
        rules, queue, caller = self._inbound(call)
        try:
            ctx = await self.gather(caller, queue, rules, now)
        except Exception as exc:  # the store is down or slow: the caller still gets the queue
            log.warning(
                "store unavailable for %s (%s: %s): letting the call through to %s",
                mask(caller.number or caller.raw), type(exc).__name__, exc, queue,
            )
            return self._finish(
                call, caller, queue, _fallback_decision(
                    queue, rules, ReasonCode.FALLBACK_STORE_DOWN,
                    "caller history unavailable: normal queue",
                ), started, now, {}, wanted,
            )
        decision = _decide(ctx, rules, now)
        return self._finish(call, caller, queue, decision, started, now, _summary(ctx), wanted)

    def route_now(self, call: InboundCall) -> DecisionRecord | None:
        """``route_call`` without waiting, when every input is at hand (the state replica
        live, the directory and incidents cached), else None: the FastAGI handler then
        runs ``route_call``. Deciding in the caller's own callback saves the task, the
        budget timer and the callbacks between them (~15 us of a ~300 us call)."""
        snapshot_now, operators_now, incidents_now = (
            self._snapshot_now, self._operators_now, self._incidents_now)
        if snapshot_now is None or operators_now is None or incidents_now is None:
            return None
        started = time.perf_counter()
        now = self._clock()
        operators = operators_now()
        incidents = incidents_now(now)
        if operators is None or incidents is None:
            return None
        rules, queue, caller = self._inbound(call)
        snapshot = _NO_HISTORY
        if caller.identified and caller.number is not None:
            held = snapshot_now(caller.number, now, rules.for_queue(queue).lookback)
            if held is None:
                return None
            snapshot = held
        ctx = _context(caller, queue, snapshot, operators, tuple(incidents),
                       self._presence.states())
        return self._finish(call, caller, queue, _decide(ctx, rules, now), started, now,
                            _summary(ctx))

    def fallback(self, call: InboundCall, code: ReasonCode, text: str) -> DecisionRecord:
        """The decision when the time budget ran out or the input was odd (no I/O)."""
        rules, queue, caller = self._inbound(call)
        decision = _fallback_decision(queue, rules, code, text)
        now = self._clock()
        return self._finish(call, caller, queue, decision, time.perf_counter(), now, {})

    # -- shared with the CLI and the API ------------------------------------------------

    async def gather(
        self,
        caller: Caller,
        queue: str,
        rules: Rules,
        now: datetime,
        states: Mapping[str, object] | None = None,
    ) -> RoutingContext:
        """Everything decide needs; ``states`` overrides live presence (simulations)."""
        snapshot = _NO_HISTORY
        if caller.identified and caller.number is not None:
            lookback = rules.for_queue(queue).lookback
            snapshot = await self._snapshots.snapshot(caller.number, now, lookback)
        operators: Mapping[str, Operator] = await self._directory.operators()
        incidents: tuple[Incident, ...] = tuple(await self._incidents.active_incidents(now))
        live = states if states is not None else self._presence.states()
        return _context(caller, queue, snapshot, operators, incidents, live)

    async def explain(
        self,
        caller_raw: str,
        queue: str,
        states: Mapping[str, object] | None = None,
        now: datetime | None = None,
    ) -> tuple[RoutingContext, Decision]:
        """What routing would do for this caller now, without side effects."""
        now = now or self._clock()
        rules = self._rules()
        queue = queue.strip() or rules.default_queue
        caller = self._numbers.caller(caller_raw)
        ctx = await self.gather(caller, queue, rules, now, states)
        return ctx, decide(ctx, rules, now)

    # -- internals ----------------------------------------------------------------------

    def _inbound(self, call: InboundCall) -> tuple[Rules, str, Caller]:
        """The rules now, the call's entry queue (the rules' default when it came with
        none) and who is calling."""
        rules = self._rules()
        return (rules, call.queue.strip() or rules.default_queue,
                self._numbers.caller(call.caller_raw, call.callingpres))

    def _finish(
        self,
        call: InboundCall,
        caller: Caller,
        queue: str,
        decision: Decision,
        started: float,
        now: datetime,
        inputs: Mapping[str, object],
        wanted: Callable[[], bool] | None = None,
    ) -> DecisionRecord:
        record = DecisionRecord(
            id=new_id(),
            decided_at=now,
            caller_raw=call.caller_raw,
            caller_number=caller.number if caller.identified else None,
            queue=queue,
            decision=decision,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            uniqueid=call.uniqueid,
            linkedid=call.linkedid,
            channel=call.channel,
            server_id=call.server_id,
            inputs=inputs,
        )
        if wanted is not None and not wanted():
            return record  # the caller already got the queue: this decision never happened
        if self._writer is not None:
            self._writer.submit(record)
        for observer in self.observers:
            try:
                observer(record)
            except Exception:
                log.exception("decision observer failed")
        # DEBUG, not INFO: every decision is in the decision log (GET /decisions), and a
        # log line per call costs as much as the decision itself at 1,500 calls/s.
        # Fallbacks are logged at WARNING where they happen.
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "call %s from %s in %s: %s %s (%s) in %.1f ms",
                call.uniqueid or "-", mask(caller.number or caller.raw), queue,
                decision.action, decision.target_interface or decision.queue,
                decision.reason_code, record.latency_ms,
            )
        return record


_NO_HISTORY = CallerSnapshot()


def _context(caller: Caller, queue: str, snapshot: CallerSnapshot,
             operators: Mapping[str, Operator], incidents: tuple[Incident, ...],
             states: Mapping[str, object]) -> RoutingContext:
    return RoutingContext(
        caller=caller,
        queue=queue,
        recent_calls=snapshot.recent_calls,
        open_ticket=snapshot.open_ticket,
        flags=snapshot.flags,
        operators=operators,
        operator_states=states,  # type: ignore[arg-type]
        incidents=incidents,
        escalations_today=snapshot.escalations_today,
    )


def _decide(ctx: RoutingContext, rules: Rules, now: datetime) -> Decision:
    try:
        return decide(ctx, rules, now)
    except Exception:  # decide is total; this is a bug, and the caller must not pay for it
        log.exception("decide() failed for %s: normal queue", mask(ctx.caller.number))
        return _fallback_decision(
            ctx.queue, rules, ReasonCode.FALLBACK_ERROR, "internal error: normal queue"
        )


def _fallback_decision(queue: str, rules: Rules, code: ReasonCode, text: str) -> Decision:
    return Decision(
        action=Action.QUEUE,
        queue=queue,
        priority=rules.for_queue(queue).base_priority,
        reasons=(Reason(code, text),),
    )


def _summary(ctx: RoutingContext) -> dict[str, object]:
    """The inputs summary of the audit log: enough to see why, not a copy of the store."""
    relevant = {c.operator_id for c in ctx.recent_calls if c.operator_id}
    if ctx.open_ticket and ctx.open_ticket.assignee_id:
        relevant.add(ctx.open_ticket.assignee_id)
    return {
        "recent_calls": len(ctx.recent_calls),
        "last_operator": next(
            (c.operator_id for c in sorted(
                ctx.recent_calls, key=lambda c: c.last_moment, reverse=True
            ) if c.operator_id),
            None,
        ),
        "ticket": (
            {"id": ctx.open_ticket.id, "status": str(ctx.open_ticket.status)}
            if ctx.open_ticket else None
        ),
        "vip_class": ctx.flags.vip_class,
        "abusive": ctx.flags.abusive,
        "opted_out": sorted(ctx.flags.opted_out_operators),
        "states": {op: str(ctx.state_of(op)) for op in sorted(relevant)},
        "incidents": [i.id for i in ctx.incidents],
        "escalations_today": ctx.escalations_today,
    }
