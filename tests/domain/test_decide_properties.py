"""Properties of the routing rule over arbitrary contexts and valid rules (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from callrouter.domain.decide import decide
from callrouter.domain.model import (
    Action,
    Caller,
    CallerFlags,
    Decision,
    Incident,
    Operator,
    OperatorState,
    Outcome,
    PastCall,
    RoutingContext,
    Ticket,
    TicketStatus,
    Tier,
)
from callrouter.domain.reasons import ReasonCode as R
from callrouter.domain.rules import HistoryScope, QueueRules, Rules, StickyMode, VipRule

from .domain_builders import NOW

OPERATOR_IDS = ("anna", "boris", "sveta", "oleg", "ghost")
QUEUES = ("support", "billing", "vip")
NUMBERS = ("+79123456789", "+74951234567", "+442071234567")
SECOND_LINE = "second-line"  # never an entry, VIP or strict fallback queue here

# the codes a withheld caller may see: nothing about their (or anyone's) history
WITHHELD_CODES = {R.WITHHELD, R.INCIDENT}
MACHINERY_CODES = {
    R.FALLBACK_TIMEOUT,
    R.FALLBACK_STORE_DOWN,
    R.FALLBACK_BAD_INPUT,
    R.FALLBACK_ERROR,
}

# mostly the last few hours (where sticky, specialist and escalation rules bite), sometimes days
seconds_ago = st.one_of(
    st.integers(min_value=-600, max_value=4 * 3600),
    st.integers(min_value=-600, max_value=3 * 24 * 3600),
)
moments = seconds_ago.map(lambda s: NOW - timedelta(seconds=s))


@st.composite
def callers(draw: st.DrawFn) -> Caller:
    number = draw(st.sampled_from([*NUMBERS, *NUMBERS, None]))
    withheld = draw(st.sampled_from([False] * 5 + [True]))
    return Caller(raw=number or "anonymous", number=number, withheld=withheld)


OUTCOMES = [Outcome.ANSWERED] * 4 + list(Outcome)


@st.composite
def past_calls(draw: st.DrawFn) -> PastCall:
    """Mostly plausible calls (answered ones have an operator), with odd ones mixed in."""
    ended = draw(moments)
    duration = draw(st.integers(min_value=0, max_value=2 * 3600))
    outcome = draw(st.sampled_from(OUTCOMES))
    operator = st.sampled_from(OPERATOR_IDS)
    if outcome is Outcome.ANSWERED:
        operator_id = (
            draw(st.one_of(operator, st.none())) if draw(st.booleans()) else draw(operator)
        )
    else:
        operator_id = draw(st.one_of(st.none(), operator))
    in_progress = outcome is Outcome.IN_PROGRESS and draw(st.booleans())
    talk = draw(st.integers(min_value=0, max_value=duration))
    return PastCall(
        id=f"c{draw(st.integers(0, 10**6))}",
        queue=draw(st.sampled_from(["support", *QUEUES])),
        started_at=ended - timedelta(seconds=duration),
        ended_at=None if in_progress else ended,
        operator_id=operator_id,
        outcome=outcome,
        talk_seconds=talk,
        resolved=draw(st.one_of(st.none(), st.booleans())),
        escalated=draw(st.booleans()),
        # after a transfer, the last operator's own part of the talk
        operator_talk_seconds=draw(st.one_of(st.none(), st.integers(0, talk))),
    )


@st.composite
def tickets(draw: st.DrawFn) -> Ticket:
    return Ticket(
        id="T-1",
        caller_number=NUMBERS[0],
        subject="fault",
        status=draw(st.sampled_from(TicketStatus)),
        tier=draw(st.sampled_from(Tier)),
        assignee_id=draw(st.one_of(st.none(), st.sampled_from(OPERATOR_IDS))),
        created_at=draw(st.one_of(st.none(), moments)),
        updated_at=draw(st.one_of(st.none(), moments)),
    )


@st.composite
def flags(draw: st.DrawFn, abusive: bool | None = None) -> CallerFlags:
    """Flags are the exception: most callers have none, a few have one or two."""
    if abusive is None:
        abusive = draw(st.sampled_from([False, False, False, True]))
    return CallerFlags(
        vip_class=draw(st.sampled_from([None, None, "gold", "silver", "platinum"])),
        abusive=abusive,
        abusive_flagged_by=draw(st.sampled_from([None, None, *OPERATOR_IDS])),
        opted_out_operators=draw(st.frozensets(st.sampled_from(OPERATOR_IDS), max_size=2)),
    )


@st.composite
def operators(draw: st.DrawFn, op_id: str) -> Operator:
    interfaces = draw(st.lists(st.sampled_from(["PJSIP/1", "PJSIP/2", "SIP/3"]), max_size=2))
    if draw(st.integers(0, 3)):  # mostly operators who can take calls
        interfaces = interfaces or ["PJSIP/1"]
    return Operator(
        id=op_id,
        name=op_id.title(),
        interfaces=tuple(interfaces),
        tier=draw(st.sampled_from(Tier)),
        queues=tuple(draw(st.lists(st.sampled_from([*QUEUES, SECOND_LINE]), max_size=2))),
        active=draw(st.sampled_from([True, True, True, False])),
    )


@st.composite
def incidents(draw: st.DrawFn) -> Incident:
    return Incident(
        id=f"INC-{draw(st.integers(0, 99))}",
        announcement=draw(st.sampled_from(["incident/outage", "incident/storm"])),
        prefixes=tuple(draw(st.lists(st.sampled_from(["+7912", "+7495", "+44"]), max_size=2))),
        started_at=draw(st.one_of(st.none(), moments)),
        ended_at=draw(st.one_of(st.none(), moments)),
    )


@st.composite
def contexts(draw: st.DrawFn, abusive: bool | None = None) -> RoutingContext:
    directory_ids = draw(st.frozensets(st.sampled_from(OPERATOR_IDS), min_size=2))
    state_ids = draw(st.frozensets(st.sampled_from(OPERATOR_IDS), min_size=2))
    live = st.sampled_from([*OperatorState, OperatorState.AVAILABLE, OperatorState.IN_CALL])
    return RoutingContext(
        caller=draw(callers()),
        queue=draw(st.sampled_from(["support", *QUEUES])),
        recent_calls=tuple(draw(st.lists(past_calls(), max_size=6))),
        open_ticket=draw(st.one_of(st.none(), tickets())),
        flags=draw(flags(abusive)),
        operators={op_id: draw(operators(op_id)) for op_id in sorted(directory_ids)},
        operator_states={op_id: draw(live) for op_id in sorted(state_ids)},
        incidents=tuple(draw(st.lists(incidents(), max_size=2))),
        escalations_today=draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4])),
    )


positive = st.integers(min_value=1, max_value=3600)
windows = st.one_of(
    st.sampled_from([1800, 2 * 3600, 24 * 3600]), st.integers(min_value=1, max_value=3 * 24 * 3600)
)
priorities = st.integers(min_value=0, max_value=100)


@st.composite
def queue_rules(draw: st.DrawFn) -> QueueRules:
    """Any rules the configuration loader accepts: positive durations, named queues."""
    vip = draw(
        st.dictionaries(
            st.sampled_from(["gold", "silver"]),
            st.builds(
                VipRule,
                queue=st.one_of(st.none(), st.sampled_from(QUEUES)),
                priority=st.one_of(st.none(), priorities),
            ),
            max_size=2,
        )
    )
    return QueueRules(
        sticky_mode=draw(st.sampled_from(StickyMode)),
        sticky_window=draw(windows),
        min_talk_seconds=draw(st.sampled_from([0, 0, 30, 120])),
        history_scope=draw(st.sampled_from(HistoryScope)),
        ring_seconds=draw(positive),
        busy_wait_seconds=draw(positive),
        max_wait_seconds=draw(positive),
        strict_fallback_queue=draw(st.one_of(st.none(), st.just("callbacks"))),
        base_priority=draw(priorities),
        repeat_priority_boost=draw(priorities),
        specialist_queue=draw(st.one_of(st.none(), st.just(SECOND_LINE))),
        specialist_routing=draw(st.booleans()),
        escalation_threshold=draw(st.integers(min_value=1, max_value=6)),
        escalation_window=draw(windows),
        reopen_window=draw(windows),
        max_escalations_per_day=draw(st.integers(min_value=0, max_value=3)),
        vip_classes=vip,
    )


@st.composite
def rule_sets(draw: st.DrawFn) -> Rules:
    overrides = draw(st.dictionaries(st.sampled_from(QUEUES), queue_rules(), max_size=2))
    return Rules(defaults=draw(queue_rules()), queues=overrides, default_queue="support")


def decision_is_always_valid(
    ctx: RoutingContext, rules: Rules, d: Decision, qr: QueueRules
) -> None:
    assert d.reasons, "every decision says why"
    assert all(r.text for r in d.reasons)
    assert d.reason_code is d.reasons[0].code
    assert not MACHINERY_CODES & set(d.codes), "fallback_* codes belong to the adapters"
    assert d.queue
    assert (d.action is Action.QUEUE) == (d.target_operator_id is None)
    if d.target_operator_id is None:
        assert d.target_interface is None
        assert d.wait_seconds == 0
    else:
        target = ctx.operators.get(d.target_operator_id)
        assert target is not None, "the target is in the directory"
        assert target.active
        assert d.target_interface is not None
        assert d.target_interface == target.interface
        assert 1 <= d.wait_seconds <= qr.max_wait_seconds
        assert ctx.state_of(target.id) in (
            OperatorState.AVAILABLE,
            OperatorState.IN_CALL,
            OperatorState.RINGING,
        )
        if d.action is Action.SPECIALIST:
            assert target.tier is Tier.SPECIALIST
    if d.escalated:
        assert d.action is Action.QUEUE
        assert d.queue == qr.specialist_queue
    if d.announcement is not None:
        assert d.announcement.split("&"), "announcements are joined with &"


def wait_never_exceeds_configured_bound(
    ctx: RoutingContext, rules: Rules, d: Decision, qr: QueueRules
) -> None:
    assert 0 <= d.wait_seconds <= qr.max_wait_seconds


def withheld_callers_are_never_matched_to_history(
    ctx: RoutingContext, rules: Rules, d: Decision, qr: QueueRules
) -> None:
    if ctx.caller.identified:
        return
    assert d.target_operator_id is None
    assert d.action is Action.QUEUE
    assert not d.escalated
    assert d.reason_code is R.WITHHELD
    assert set(d.codes) <= WITHHELD_CODES
    assert d.priority == qr.base_priority


def opted_out_operator_is_never_the_target(
    ctx: RoutingContext, rules: Rules, d: Decision, qr: QueueRules
) -> None:
    assert d.target_operator_id not in ctx.flags.opted_out_operators


def abusive_caller_never_to_a_specialist_nor_escalated(
    ctx: RoutingContext, rules: Rules, d: Decision, qr: QueueRules
) -> None:
    if not ctx.flags.abusive:
        return
    assert not d.escalated
    assert d.action is not Action.SPECIALIST
    if d.target_operator_id is not None:
        assert ctx.operators[d.target_operator_id].tier is not Tier.SPECIALIST
        assert d.target_operator_id != ctx.flags.abusive_flagged_by


def announcement_only_when_the_call_really_goes_to_their_operator(
    ctx: RoutingContext, rules: Rules, d: Decision, qr: QueueRules
) -> None:
    sounds = d.announcement.split("&") if d.announcement else []
    personal = {qr.announcement, qr.specialist_announcement} & set(sounds)
    if personal:
        assert d.target_operator_id is not None
        assert ctx.state_of(d.target_operator_id) is OperatorState.AVAILABLE
    incident_sounds = [i.announcement for i in ctx.incidents if i.covers(ctx.caller, NOW)]
    if incident_sounds:
        assert sounds[0] == incident_sounds[0], "the incident is heard first"


def a_call_followed_back_was_long_enough_for_its_operator(
    ctx: RoutingContext, rules: Rules, d: Decision, qr: QueueRules
) -> None:
    """Sticky and last-contact targets come from an answered call on which that operator
    (the last handler) talked at least ``min_talk_seconds`` themselves."""
    if d.reason_code not in (R.STICKY_AVAILABLE, R.STICKY_BUSY_WAIT, R.SPECIALIST_LAST_CONTACT):
        return
    assert any(
        c.operator_id == d.target_operator_id and c.outcome is Outcome.ANSWERED
        and c.handler_talk_seconds >= qr.min_talk_seconds
        for c in ctx.recent_calls
    )


def decide_is_deterministic(ctx: RoutingContext, rules: Rules, d: Decision, qr: QueueRules) -> None:
    assert decide(ctx, rules, NOW) == d, "same inputs, same decision"


def escalation_is_capped_and_suppressed(
    ctx: RoutingContext, rules: Rules, d: Decision, qr: QueueRules
) -> None:
    if not d.escalated:
        return
    assert ctx.escalations_today < qr.max_escalations_per_day
    assert qr.specialist_queue
    if d.reason_code is R.ESCALATED_REPEAT:
        assert not any(i.covers(ctx.caller, NOW) for i in ctx.incidents)


def never_sent_to_a_second_line_everyone_left(
    ctx: RoutingContext, rules: Rules, d: Decision, qr: QueueRules
) -> None:
    """Presence showing every taker of the specialist queue logged off keeps the call out of
    it (no escalation, not even after a specialist's ring); presence not known never does."""
    queue = qr.specialist_queue
    takers = [
        op for op in ctx.operators.values()
        if queue in op.queues or (not op.queues and op.tier is Tier.SPECIALIST)
    ]
    if queue and takers and all(ctx.state_of(op.id) is OperatorState.LOGGED_OFF for op in takers):
        assert not d.escalated
        assert d.queue != queue
    else:
        assert R.NO_SPECIALIST_AVAILABLE not in d.codes
    blind = decide(replace(ctx, operator_states={}), rules, NOW)
    assert R.NO_SPECIALIST_AVAILABLE not in blind.codes, "unknown presence blocks nothing"


PROPERTIES = [
    decision_is_always_valid,
    wait_never_exceeds_configured_bound,
    never_sent_to_a_second_line_everyone_left,
    withheld_callers_are_never_matched_to_history,
    opted_out_operator_is_never_the_target,
    abusive_caller_never_to_a_specialist_nor_escalated,
    announcement_only_when_the_call_really_goes_to_their_operator,
    decide_is_deterministic,
    escalation_is_capped_and_suppressed,
    a_call_followed_back_was_long_enough_for_its_operator,
]


def check_all(ctx: RoutingContext, rules: Rules) -> None:
    d = decide(ctx, rules, NOW)  # never raises
    qr = rules.for_queue(ctx.queue)
    for check in PROPERTIES:
        check(ctx, rules, d, qr)


@settings(max_examples=400, deadline=None)
@given(contexts(), rule_sets())
def test_routing_properties(ctx: RoutingContext, rules: Rules) -> None:
    """One generated case checked against every property (generation is the costly part)."""
    check_all(ctx, rules)


@settings(max_examples=200, deadline=None)
@given(contexts(abusive=True), rule_sets())
def test_routing_properties_for_abusive_callers(ctx: RoutingContext, rules: Rules) -> None:
    """The protections only bite for flagged callers, so they get a run of their own."""
    check_all(ctx, rules)


@st.composite
def second_line_logged_off(draw: st.DrawFn) -> RoutingContext:
    """Contexts where live presence shows everyone who takes the second-line queue gone."""
    ctx = draw(contexts())
    gone = {
        op.id: OperatorState.LOGGED_OFF for op in ctx.operators.values()
        if SECOND_LINE in op.queues or (not op.queues and op.tier is Tier.SPECIALIST)
    }
    return replace(ctx, operator_states={**ctx.operator_states, **gone})


@settings(max_examples=200, deadline=None)
@given(second_line_logged_off(), rule_sets())
def test_routing_properties_with_the_second_line_logged_off(
    ctx: RoutingContext, rules: Rules
) -> None:
    """Escalations and specialist fallbacks are rare in arbitrary contexts: a run of their own."""
    check_all(ctx, rules)
