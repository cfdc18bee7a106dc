"""The routing rule as a table: one row per rule and edge, every field of the decision checked."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from callrouter.domain.decide import decide
from callrouter.domain.model import (
    Action,
    CallerFlags,
    Operator,
    OperatorState,
    Outcome,
    RoutingContext,
    TicketStatus,
    Tier,
)
from callrouter.domain.reasons import ReasonCode as R
from callrouter.domain.rules import HistoryScope, QueueRules, Rules, StickyMode, VipRule

from .domain_builders import (
    DIRECTORY,
    NOW,
    ago,
    call,
    context,
    incident,
    rules,
    states,
    ticket,
    unresolved_calls,
    without,
)

IN_CALL = OperatorState.IN_CALL
RINGING = OperatorState.RINGING
PAUSED = OperatorState.PAUSED
LOGGED_OFF = OperatorState.LOGGED_OFF
UNKNOWN = OperatorState.UNKNOWN

YOUR_OPERATOR = "callrouter/your-operator"
YOUR_SPECIALIST = "callrouter/your-specialist"
OUTAGE = "incident/outage-north"

ANNA_30_MIN_AGO = call("anna", ended=ago(minutes=30))
SVETA_30_MIN_AGO = call("sveta", ended=ago(minutes=30))
DEFAULT = rules()
SECOND_LINE_GONE = states(sveta=LOGGED_OFF, oleg=LOGGED_OFF)


@dataclass(frozen=True)
class Expect:
    """The whole decision. Unlisted fields take the values of a plain queued call."""

    codes: tuple[R, ...]
    action: Action = Action.QUEUE
    queue: str = "support"
    priority: int = 0
    target: str | None = None
    wait: int = 0
    announcement: str | None = None
    escalated: bool = False


def case(
    id: str, ctx: RoutingContext, expect: Expect, rule_set: Rules = DEFAULT
) -> pytest.ParameterSet:
    return pytest.param(ctx, rule_set, expect, id=id)


def sticky(codes: tuple[R, ...], **kw: object) -> Expect:
    """Ringing Anna (available) after the 30-minutes-ago call: a repeat caller, priority 10."""
    fields: dict[str, object] = {
        "action": Action.OPERATOR,
        "target": "anna",
        "wait": 20,
        "announcement": YOUR_OPERATOR,
        "priority": 10,
    }
    fields.update(kw)
    return Expect(codes, **fields)  # type: ignore[arg-type]


def pool(codes: tuple[R, ...], **kw: object) -> Expect:
    """A repeat caller in the pool: entry queue, raised priority, nobody targeted."""
    fields: dict[str, object] = {"priority": 10}
    fields.update(kw)
    return Expect(codes, **fields)  # type: ignore[arg-type]


STICKY_CASES = [
    case("new-caller-pool-base-priority", context(), Expect((R.NEW_CALLER,))),
    case(
        "new-caller-keeps-configured-base-priority",
        context(),
        Expect((R.NEW_CALLER,), priority=5),
        rules(base_priority=5),
    ),
    case(
        "prefer-available-direct-with-announcement",
        context(calls=[ANNA_30_MIN_AGO]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
    ),
    case(
        "prefer-available-ring-wait-is-ring-seconds",
        context(calls=[ANNA_30_MIN_AGO]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY), wait=35),
        rules(ring_seconds=35, busy_wait_seconds=5),
    ),
    case(
        "prefer-available-ring-wait-capped-by-max-wait",
        context(calls=[ANNA_30_MIN_AGO]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY), wait=15),
        rules(ring_seconds=40, max_wait_seconds=15),
    ),
    case(
        "prefer-in-call-bounded-wait-no-announcement",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=IN_CALL)),
        sticky((R.STICKY_BUSY_WAIT, R.REPEAT_PRIORITY), announcement=None),
    ),
    case(
        "prefer-ringing-bounded-wait-no-announcement",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=RINGING)),
        sticky((R.STICKY_BUSY_WAIT, R.REPEAT_PRIORITY), announcement=None, wait=12),
        rules(busy_wait_seconds=12),
    ),
    case(
        "prefer-in-call-wait-capped-by-max-wait",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=IN_CALL)),
        sticky((R.STICKY_BUSY_WAIT, R.REPEAT_PRIORITY), announcement=None, wait=45),
        rules(busy_wait_seconds=90, max_wait_seconds=45),
    ),
    case(
        "prefer-paused-pool-no-announcement",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=PAUSED)),
        pool((R.STICKY_UNAVAILABLE, R.REPEAT_PRIORITY)),
    ),
    case(
        "prefer-logged-off-pool",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=LOGGED_OFF)),
        pool((R.STICKY_UNAVAILABLE, R.REPEAT_PRIORITY)),
    ),
    case(
        "prefer-unknown-state-pool",
        context(calls=[ANNA_30_MIN_AGO], states=without(states(), "anna")),
        pool((R.STICKY_UNAVAILABLE, R.REPEAT_PRIORITY)),
    ),
    case(
        "prefer-explicit-unknown-state-pool",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=OperatorState.UNKNOWN)),
        pool((R.STICKY_UNAVAILABLE, R.REPEAT_PRIORITY)),
    ),
    case(
        "prefer-inactive-operator-pool",
        context(
            calls=[ANNA_30_MIN_AGO],
            operators={
                **DIRECTORY,
                "anna": Operator("anna", "Anna", ("PJSIP/1001",), active=False),
            },
        ),
        pool((R.STICKY_OPERATOR_INACTIVE, R.REPEAT_PRIORITY)),
    ),
    case(
        "prefer-deleted-operator-pool",
        context(calls=[ANNA_30_MIN_AGO], operators=without(DIRECTORY, "anna")),
        pool((R.STICKY_OPERATOR_INACTIVE, R.REPEAT_PRIORITY)),
    ),
    case(
        "prefer-operator-without-interface-pool",
        context(
            calls=[ANNA_30_MIN_AGO],
            operators={**DIRECTORY, "anna": Operator("anna", "Anna", ())},
        ),
        pool((R.STICKY_OPERATOR_INACTIVE, R.REPEAT_PRIORITY)),
    ),
    case(
        "strict-available-falls-back-to-configured-queue",
        context(calls=[ANNA_30_MIN_AGO]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY), queue="callbacks"),
        rules(sticky_mode=StickyMode.STRICT, strict_fallback_queue="callbacks"),
    ),
    case(
        "strict-in-call-waits-then-configured-queue",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=IN_CALL)),
        sticky((R.STICKY_BUSY_WAIT, R.REPEAT_PRIORITY), queue="callbacks", announcement=None),
        rules(sticky_mode=StickyMode.STRICT, strict_fallback_queue="callbacks"),
    ),
    case(
        "strict-paused-goes-to-configured-queue",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=PAUSED)),
        pool(
            (R.STICKY_STRICT_FALLBACK, R.REPEAT_PRIORITY, R.STICKY_UNAVAILABLE),
            queue="callbacks",
        ),
        rules(sticky_mode=StickyMode.STRICT, strict_fallback_queue="callbacks"),
    ),
    case(
        "strict-deleted-operator-goes-to-configured-queue",
        context(calls=[ANNA_30_MIN_AGO], operators=without(DIRECTORY, "anna")),
        pool(
            (R.STICKY_STRICT_FALLBACK, R.REPEAT_PRIORITY, R.STICKY_OPERATOR_INACTIVE),
            queue="callbacks",
        ),
        rules(sticky_mode=StickyMode.STRICT, strict_fallback_queue="callbacks"),
    ),
    case(
        "strict-without-fallback-queue-uses-entry-queue",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=LOGGED_OFF)),
        pool((R.STICKY_STRICT_FALLBACK, R.REPEAT_PRIORITY, R.STICKY_UNAVAILABLE)),
        rules(sticky_mode=StickyMode.STRICT),
    ),
    case(
        "off-pool-with-raised-priority",
        context(calls=[ANNA_30_MIN_AGO]),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.STICKY_OFF)),
        rules(sticky_mode=StickyMode.OFF),
    ),
    case(
        "off-per-queue-override-beats-defaults",
        context(calls=[call("boris", ended=ago(minutes=30), queue="billing")], queue="billing"),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.STICKY_OFF), queue="billing"),
        rules(queues={"billing": QueueRules(sticky_mode=StickyMode.OFF)}),
    ),
    case(
        "window-measured-from-end-of-long-call",
        context(calls=[call("anna", started=ago(hours=3), ended=ago(hours=1, minutes=59))]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
    ),
    case(
        "window-just-inside-exactly-two-hours",
        context(calls=[call("anna", ended=ago(hours=2))]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
    ),
    case(
        "window-just-outside-new-caller",
        context(calls=[call("anna", ended=ago(hours=2, seconds=1))]),
        Expect((R.NEW_CALLER,)),
    ),
    case(
        "window-configured-shorter",
        context(calls=[ANNA_30_MIN_AGO]),
        Expect((R.NEW_CALLER,)),
        rules(sticky_window=20 * 60),
    ),
    case(
        "latest-answered-call-wins",
        context(calls=[ANNA_30_MIN_AGO, call("boris", ended=ago(minutes=5), resolved=True)]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY), target="boris"),
    ),
    case(
        "abandoned-call-skipped-for-earlier-answered-one",
        context(
            calls=[ANNA_30_MIN_AGO, call(None, ended=ago(minutes=5), outcome=Outcome.ABANDONED)]
        ),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
        rules(escalation_threshold=5),
    ),
    case(
        "only-abandoned-call-repeat-caller-in-pool",
        context(calls=[call(None, ended=ago(minutes=5), outcome=Outcome.ABANDONED)]),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY)),
    ),
    case(
        "min-talk-short-call-ignored-for-earlier-long-one",
        context(
            calls=[ANNA_30_MIN_AGO, call("boris", ended=ago(minutes=5), talk=8, resolved=True)]
        ),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY, R.SHORT_CALL_IGNORED)),
        rules(min_talk_seconds=30),
    ),
    case(
        "min-talk-only-short-call-pool-says-why",
        context(calls=[call("boris", ended=ago(minutes=5), talk=8)]),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.SHORT_CALL_IGNORED)),
        rules(min_talk_seconds=30),
    ),
    case(
        "min-talk-exactly-minimum-counts",
        context(calls=[call("anna", ended=ago(minutes=5), talk=30)]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
        rules(min_talk_seconds=30),
    ),
    # After a transfer the call's operator is who had it last; their own part of the talk
    # counts, not everyone's (docs/calls-and-transfers.md, "Sticky routing after a transfer").
    case(
        "min-talk-transferred-call-last-operators-own-part-too-short",
        # Anna talked ten minutes, transferred to Boris, who dropped the caller after 5 s
        context(calls=[call("boris", ended=ago(minutes=5), talk=605, own_talk=5)]),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.SHORT_CALL_IGNORED)),
        rules(min_talk_seconds=30),
    ),
    case(
        "min-talk-transferred-call-too-short-earlier-call-counts",
        context(
            calls=[ANNA_30_MIN_AGO,
                   call("boris", ended=ago(minutes=5), talk=605, own_talk=5, resolved=True)]
        ),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY, R.SHORT_CALL_IGNORED)),
        rules(min_talk_seconds=30),
    ),
    case(
        "min-talk-transferred-call-own-part-long-enough",
        context(calls=[call("anna", ended=ago(minutes=5), talk=620, own_talk=40)]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
        rules(min_talk_seconds=30),
    ),
    case(
        "min-talk-transferred-call-own-part-exactly-minimum",
        context(calls=[call("anna", ended=ago(minutes=5), talk=600, own_talk=30)]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
        rules(min_talk_seconds=30),
    ),
    case(
        "min-talk-own-part-unknown-whole-call-counts",
        # not transferred, or recorded before the own part was kept: the whole call's time
        context(calls=[call("anna", ended=ago(minutes=5), talk=40, own_talk=None)]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
        rules(min_talk_seconds=30),
    ),
    case(
        "min-talk-zero-transferred-call-with-a-zero-own-part-counts",
        context(calls=[call("anna", ended=ago(minutes=5), talk=300, own_talk=0)]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
    ),
    case(
        "min-talk-specialist-last-contact-own-part-too-short",
        # Anna passed the caller to Sveta, who dropped them at once: no continuity with
        # Sveta; the call before (with Anna) is the last contact that counts
        context(
            calls=[ANNA_30_MIN_AGO,
                   call("sveta", ended=ago(minutes=5), talk=400, own_talk=3, resolved=True)]
        ),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY, R.SHORT_CALL_IGNORED)),
        rules(min_talk_seconds=30),
    ),
    case(
        "history-any-queue-follows-other-queue-call",
        context(
            calls=[
                ANNA_30_MIN_AGO,
                call("boris", ended=ago(minutes=5), queue="billing", resolved=True),
            ]
        ),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY), target="boris"),
        rules(history_scope=HistoryScope.ANY_QUEUE),
    ),
    case(
        "history-same-queue-ignores-other-queue-call",
        context(
            calls=[
                ANNA_30_MIN_AGO,
                call("boris", ended=ago(minutes=5), queue="billing", resolved=True),
            ]
        ),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
        rules(history_scope=HistoryScope.SAME_QUEUE),
    ),
    case(
        "history-same-queue-only-other-queue-is-new-caller",
        context(calls=[call("boris", ended=ago(minutes=5), queue="billing")]),
        Expect((R.NEW_CALLER,)),
        rules(history_scope=HistoryScope.SAME_QUEUE),
    ),
    case(
        "repeat-priority-on-top-of-base",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=PAUSED)),
        pool((R.STICKY_UNAVAILABLE, R.REPEAT_PRIORITY), priority=17),
        rules(base_priority=5, repeat_priority_boost=12),
    ),
    case(
        "repeat-priority-boost-zero-no-reason",
        context(calls=[ANNA_30_MIN_AGO], states=states(anna=PAUSED)),
        pool((R.STICKY_UNAVAILABLE,), priority=0),
        rules(repeat_priority_boost=0),
    ),
]

SPECIALIST_CASES = [
    case(
        "specialist-last-contact-available",
        context(calls=[SVETA_30_MIN_AGO]),
        Expect(
            (R.SPECIALIST_LAST_CONTACT, R.REPEAT_PRIORITY),
            action=Action.SPECIALIST,
            target="sveta",
            wait=20,
            announcement=YOUR_SPECIALIST,
            queue="second-line",
            priority=10,
        ),
    ),
    case(
        "specialist-last-contact-in-call-waits-no-announcement",
        context(calls=[SVETA_30_MIN_AGO], states=states(sveta=IN_CALL)),
        Expect(
            (R.SPECIALIST_BUSY_WAIT, R.REPEAT_PRIORITY),
            action=Action.SPECIALIST,
            target="sveta",
            wait=20,
            queue="second-line",
            priority=10,
        ),
    ),
    case(
        "specialist-last-contact-ringing-wait-capped",
        context(calls=[SVETA_30_MIN_AGO], states=states(sveta=RINGING)),
        Expect(
            (R.SPECIALIST_BUSY_WAIT, R.REPEAT_PRIORITY),
            action=Action.SPECIALIST,
            target="sveta",
            wait=25,
            queue="second-line",
            priority=10,
        ),
        rules(busy_wait_seconds=120, max_wait_seconds=25),
    ),
    case(
        "specialist-last-contact-paused-specialist-queue",
        context(calls=[SVETA_30_MIN_AGO], states=states(sveta=PAUSED)),
        pool((R.SPECIALIST_UNAVAILABLE, R.REPEAT_PRIORITY), queue="second-line"),
    ),
    case(
        "specialist-last-contact-unknown-state-specialist-queue",
        context(calls=[SVETA_30_MIN_AGO], states=without(states(), "sveta")),
        pool((R.SPECIALIST_UNAVAILABLE, R.REPEAT_PRIORITY), queue="second-line"),
    ),
    case(
        "specialist-last-contact-no-second-line-uses-entry-queue",
        context(calls=[SVETA_30_MIN_AGO], states=states(sveta=LOGGED_OFF)),
        pool((R.SPECIALIST_UNAVAILABLE, R.REPEAT_PRIORITY)),
        rules(specialist_queue=None),
    ),
    case(
        "specialist-last-contact-available-no-second-line-falls-back-to-entry",
        context(calls=[SVETA_30_MIN_AGO]),
        Expect(
            (R.SPECIALIST_LAST_CONTACT, R.REPEAT_PRIORITY),
            action=Action.SPECIALIST,
            target="sveta",
            wait=20,
            announcement=YOUR_SPECIALIST,
            priority=10,
        ),
        rules(specialist_queue=None),
    ),
    case(
        "specialist-ticket-assignee-available",
        context(open_ticket=ticket("oleg")),
        Expect(
            (R.SPECIALIST_TICKET,),
            action=Action.SPECIALIST,
            target="oleg",
            wait=20,
            announcement=YOUR_SPECIALIST,
            queue="second-line",
        ),
    ),
    case(
        "specialist-ticket-assignee-logged-off-specialist-queue",
        context(open_ticket=ticket("oleg"), states=states(oleg=LOGGED_OFF)),
        Expect((R.SPECIALIST_UNAVAILABLE,), queue="second-line"),
    ),
    case(
        "specialist-ticket-beats-last-contact",
        context(calls=[ANNA_30_MIN_AGO], open_ticket=ticket("oleg")),
        Expect(
            (R.SPECIALIST_TICKET, R.REPEAT_PRIORITY),
            action=Action.SPECIALIST,
            target="oleg",
            wait=20,
            announcement=YOUR_SPECIALIST,
            queue="second-line",
            priority=10,
        ),
    ),
    case(
        "specialist-ticket-assignee-inactive-then-last-contact-specialist",
        context(
            calls=[SVETA_30_MIN_AGO],
            open_ticket=ticket("oleg"),
            operators={
                **DIRECTORY,
                "oleg": Operator(
                    "oleg", "Oleg", ("PJSIP/2002",), tier=Tier.SPECIALIST, active=False
                ),
            },
        ),
        Expect(
            (R.SPECIALIST_LAST_CONTACT, R.REPEAT_PRIORITY, R.SPECIALIST_UNAVAILABLE),
            action=Action.SPECIALIST,
            target="sveta",
            wait=20,
            announcement=YOUR_SPECIALIST,
            queue="second-line",
            priority=10,
        ),
    ),
    case(
        "specialist-ticket-pending-counts-as-open",
        context(open_ticket=ticket("oleg", status=TicketStatus.PENDING)),
        Expect(
            (R.SPECIALIST_TICKET,),
            action=Action.SPECIALIST,
            target="oleg",
            wait=20,
            announcement=YOUR_SPECIALIST,
            queue="second-line",
        ),
    ),
    case(
        "ticket-closed-inside-reopen-window-counts-as-open",
        context(open_ticket=ticket("oleg", status=TicketStatus.CLOSED, updated=ago(hours=23))),
        Expect(
            (R.SPECIALIST_TICKET,),
            action=Action.SPECIALIST,
            target="oleg",
            wait=20,
            announcement=YOUR_SPECIALIST,
            queue="second-line",
        ),
    ),
    case(
        "ticket-closed-exactly-at-reopen-window-counts",
        context(open_ticket=ticket("oleg", status=TicketStatus.CLOSED, updated=ago(hours=24))),
        Expect(
            (R.SPECIALIST_TICKET,),
            action=Action.SPECIALIST,
            target="oleg",
            wait=20,
            announcement=YOUR_SPECIALIST,
            queue="second-line",
        ),
    ),
    case(
        "ticket-closed-outside-reopen-window-ignored",
        context(open_ticket=ticket("oleg", status=TicketStatus.CLOSED, updated=ago(hours=25))),
        Expect((R.NEW_CALLER,)),
    ),
    case(
        "ticket-assigned-to-first-line-no-specialist-routing",
        context(open_ticket=ticket("anna", tier=Tier.FIRST_LINE)),
        Expect((R.NEW_CALLER,)),
    ),
    case(
        "ticket-assignee-unknown-to-directory-ignored",
        context(open_ticket=ticket("ghost")),
        Expect((R.NEW_CALLER,)),
    ),
    case(
        "specialist-routing-off-last-specialist-is-plain-sticky",
        context(calls=[SVETA_30_MIN_AGO], open_ticket=ticket("oleg")),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY), target="sveta"),
        rules(specialist_routing=False),
    ),
    # Everyone who takes the second-line queue logged off: its queue would hold the caller
    # for nobody, so an away specialist's call stays in the entry queue.
    case(
        "specialist-ticket-assignee-logged-off-second-line-empty-entry-queue",
        context(open_ticket=ticket("oleg"), states=SECOND_LINE_GONE),
        Expect((R.SPECIALIST_UNAVAILABLE, R.NO_SPECIALIST_AVAILABLE)),
    ),
    case(
        "specialist-last-contact-logged-off-second-line-empty-entry-queue",
        context(calls=[SVETA_30_MIN_AGO], states=SECOND_LINE_GONE),
        pool((R.SPECIALIST_UNAVAILABLE, R.REPEAT_PRIORITY, R.NO_SPECIALIST_AVAILABLE)),
    ),
    case(
        "specialist-last-contact-paused-others-logged-off-specialist-queue",
        # a pause ends (wrap-up, a break): the second line is not empty, only busy
        context(calls=[SVETA_30_MIN_AGO], states=states(sveta=PAUSED, oleg=LOGGED_OFF)),
        pool((R.SPECIALIST_UNAVAILABLE, R.REPEAT_PRIORITY), queue="second-line"),
    ),
    case(
        "specialist-away-second-line-presence-unknown-specialist-queue",
        # no AMI listener: nothing is known, so nothing changes
        context(calls=[SVETA_30_MIN_AGO], states={}),
        pool((R.SPECIALIST_UNAVAILABLE, R.REPEAT_PRIORITY), queue="second-line"),
    ),
    case(
        "specialist-outside-second-line-rung-then-entry-queue-when-it-is-empty",
        # Sveta works her own queue and is free; after her ring the caller must not land
        # in the second-line queue nobody is logged in to
        context(
            calls=[SVETA_30_MIN_AGO],
            operators={**DIRECTORY, "sveta": replace(DIRECTORY["sveta"], queues=("field",))},
            states=states(oleg=LOGGED_OFF),
        ),
        Expect(
            (R.SPECIALIST_LAST_CONTACT, R.REPEAT_PRIORITY, R.NO_SPECIALIST_AVAILABLE),
            action=Action.SPECIALIST,
            target="sveta",
            wait=20,
            announcement=YOUR_SPECIALIST,
            priority=10,
        ),
    ),
]

ESCALATION_CASES = [
    case(
        "escalation-third-call-last-unresolved",
        context(calls=unresolved_calls(2)),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "escalation-last-resolved-unknown-counts-as-unresolved",
        context(calls=unresolved_calls(2, resolved_last=None)),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "escalation-last-resolved-no-escalation",
        context(calls=unresolved_calls(2, resolved_last=True)),
        Expect((R.NEW_CALLER,)),
    ),
    case(
        "escalation-below-threshold",
        context(calls=unresolved_calls(1)),
        Expect((R.NEW_CALLER,)),
    ),
    case(
        "escalation-configured-threshold",
        context(calls=unresolved_calls(2)),
        Expect((R.NEW_CALLER,)),
        rules(escalation_threshold=4),
    ),
    case(
        "escalation-calls-outside-window-not-counted",
        context(calls=[call("boris", ended=ago(hours=3)), call("boris", ended=ago(hours=30))]),
        Expect((R.NEW_CALLER,)),
    ),
    case(
        "escalation-beats-sticky-and-keeps-priority",
        context(calls=[ANNA_30_MIN_AGO, *unresolved_calls(1)]),
        Expect(
            (R.ESCALATED_REPEAT, R.REPEAT_PRIORITY),
            queue="second-line",
            priority=10,
            escalated=True,
        ),
    ),
    case(
        "escalation-below-cap",
        context(calls=unresolved_calls(2), escalations_today=1),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "escalation-capped-per-day",
        context(calls=unresolved_calls(2), escalations_today=2),
        Expect((R.NEW_CALLER, R.ESCALATION_CAPPED)),
    ),
    case(
        "escalation-cap-zero-never-escalates",
        context(calls=unresolved_calls(2)),
        Expect((R.NEW_CALLER, R.ESCALATION_CAPPED)),
        rules(max_escalations_per_day=0),
    ),
    case(
        "no-second-line-escalation-falls-back-cleanly",
        context(calls=unresolved_calls(2)),
        Expect((R.NEW_CALLER, R.NO_SECOND_LINE)),
        rules(specialist_queue=None),
    ),
    case(
        "no-second-line-ticket-escalation-falls-back-cleanly",
        context(open_ticket=ticket(None)),
        Expect((R.NEW_CALLER, R.NO_SECOND_LINE)),
        rules(specialist_queue=None),
    ),
    case(
        "no-second-line-sticky-still-works",
        context(calls=[ANNA_30_MIN_AGO, *unresolved_calls(1)]),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY, R.NO_SECOND_LINE)),
        rules(specialist_queue=None),
    ),
    case(
        "ticket-escalated-to-second-line-unassigned",
        context(open_ticket=ticket(None)),
        Expect((R.TICKET_ESCALATED,), queue="second-line", escalated=True),
    ),
    case(
        "ticket-escalated-but-closed-long-ago-ignored",
        context(open_ticket=ticket(None, status=TicketStatus.CLOSED, updated=ago(hours=30))),
        Expect((R.NEW_CALLER,)),
    ),
    case(
        "incident-all-callers-suppresses-count-escalation",
        context(calls=unresolved_calls(2), incidents=[incident()]),
        Expect((R.NEW_CALLER, R.INCIDENT, R.ESCALATION_SUPPRESSED_INCIDENT), announcement=OUTAGE),
    ),
    case(
        "incident-matching-prefix-suppresses-count-escalation",
        context(calls=unresolved_calls(2), incidents=[incident(prefixes=("+7495", "+7912"))]),
        Expect((R.NEW_CALLER, R.INCIDENT, R.ESCALATION_SUPPRESSED_INCIDENT), announcement=OUTAGE),
    ),
    case(
        "incident-other-prefix-no-announcement-escalates",
        context(calls=unresolved_calls(2), incidents=[incident(prefixes=("+7495",))]),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "incident-not-yet-started-escalates",
        context(calls=unresolved_calls(2), incidents=[incident(started=ago(minutes=-10))]),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "incident-already-ended-escalates",
        context(
            calls=unresolved_calls(2),
            incidents=[incident(started=ago(hours=5), ended=ago(minutes=1))],
        ),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "incident-does-not-suppress-ticket-escalation",
        context(open_ticket=ticket(None), incidents=[incident()]),
        Expect(
            (R.TICKET_ESCALATED, R.INCIDENT),
            queue="second-line",
            escalated=True,
            announcement=OUTAGE,
        ),
    ),
    # Escalation when live presence shows nobody who takes the second-line queue
    case(
        "escalation-second-line-all-logged-off-stays-first-line",
        context(calls=unresolved_calls(2), states=SECOND_LINE_GONE),
        Expect((R.NEW_CALLER, R.NO_SPECIALIST_AVAILABLE)),
    ),
    case(
        "ticket-escalation-second-line-all-logged-off-stays-first-line",
        context(open_ticket=ticket(None), states=SECOND_LINE_GONE),
        Expect((R.NEW_CALLER, R.NO_SPECIALIST_AVAILABLE)),
    ),
    case(
        "escalation-second-line-all-logged-off-sticky-to-first-line-operator",
        context(calls=[ANNA_30_MIN_AGO, *unresolved_calls(1)], states=SECOND_LINE_GONE),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY, R.NO_SPECIALIST_AVAILABLE)),
    ),
    case(
        "escalation-second-line-all-logged-off-not-counted-at-cap-edge",
        # one escalation left today: not escalated (escalated=False is what the cap counts)
        context(calls=unresolved_calls(2), states=SECOND_LINE_GONE, escalations_today=1),
        Expect((R.NEW_CALLER, R.NO_SPECIALIST_AVAILABLE)),
    ),
    case(
        "escalation-capped-and-second-line-logged-off-says-capped",
        context(calls=unresolved_calls(2), states=SECOND_LINE_GONE, escalations_today=2),
        Expect((R.NEW_CALLER, R.ESCALATION_CAPPED)),
    ),
    case(
        "escalation-one-specialist-paused-still-escalates",
        context(calls=unresolved_calls(2), states=states(sveta=LOGGED_OFF, oleg=PAUSED)),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "escalation-one-specialist-in-call-still-escalates",
        context(calls=unresolved_calls(2), states=states(sveta=LOGGED_OFF, oleg=IN_CALL)),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "escalation-one-specialist-state-unknown-still-escalates",
        context(calls=unresolved_calls(2), states=without(SECOND_LINE_GONE, "oleg")),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "escalation-no-presence-at-all-escalates",
        context(calls=unresolved_calls(2), states={}),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "escalation-presence-all-unknown-escalates",
        # the AMI link is down: every state is unknown
        context(calls=unresolved_calls(2), states=dict.fromkeys(DIRECTORY, UNKNOWN)),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "escalation-first-line-operator-in-second-line-queue-escalates",
        # Boris also takes the second-line queue and is available
        context(
            calls=unresolved_calls(2),
            operators={
                **DIRECTORY,
                "boris": replace(DIRECTORY["boris"], queues=("support", "second-line")),
            },
            states=SECOND_LINE_GONE,
        ),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "escalation-specialist-without-recorded-queues-counts-as-second-line",
        context(
            calls=unresolved_calls(2),
            operators={**DIRECTORY, "sveta": replace(DIRECTORY["sveta"], queues=())},
            states=states(oleg=LOGGED_OFF),
        ),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
    case(
        "escalation-specialist-in-other-queue-only-does-not-count",
        context(
            calls=unresolved_calls(2),
            operators={**DIRECTORY, "sveta": replace(DIRECTORY["sveta"], queues=("field",))},
            states=states(oleg=LOGGED_OFF),
        ),
        Expect((R.NEW_CALLER, R.NO_SPECIALIST_AVAILABLE)),
    ),
    case(
        "escalation-first-line-without-recorded-queues-does-not-count",
        context(
            calls=unresolved_calls(2),
            operators={**DIRECTORY, "anna": replace(DIRECTORY["anna"], queues=())},
            states=SECOND_LINE_GONE,
        ),
        Expect((R.NEW_CALLER, R.NO_SPECIALIST_AVAILABLE)),
    ),
    case(
        "escalation-nobody-in-directory-takes-second-line-escalates",
        # no proof either way: the directory does not say who is in that queue
        context(
            calls=unresolved_calls(2),
            operators={k: v for k, v in DIRECTORY.items() if k in ("anna", "boris")},
        ),
        Expect((R.ESCALATED_REPEAT,), queue="second-line", escalated=True),
    ),
]

PROTECTION_CASES = [
    case(
        "abusive-never-straight-to-last-contact-specialist",
        context(calls=[SVETA_30_MIN_AGO], flags=CallerFlags(abusive=True)),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.ABUSIVE_PROTECTED)),
    ),
    case(
        "abusive-never-to-last-contact-specialist-even-with-specialist-routing-off",
        context(calls=[SVETA_30_MIN_AGO], flags=CallerFlags(abusive=True)),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.ABUSIVE_PROTECTED)),
        rules(specialist_routing=False),
    ),
    case(
        "abusive-never-straight-to-ticket-specialist",
        context(open_ticket=ticket("oleg"), flags=CallerFlags(abusive=True)),
        Expect((R.NEW_CALLER, R.ABUSIVE_PROTECTED)),
    ),
    case(
        "abusive-never-escalated-by-count",
        context(calls=unresolved_calls(2), flags=CallerFlags(abusive=True)),
        Expect((R.NEW_CALLER, R.ABUSIVE_PROTECTED)),
    ),
    case(
        "abusive-never-escalated-by-ticket",
        context(open_ticket=ticket(None), flags=CallerFlags(abusive=True)),
        Expect((R.NEW_CALLER, R.ABUSIVE_PROTECTED)),
    ),
    case(
        "abusive-never-sticky-to-operator-who-flagged",
        context(
            calls=[ANNA_30_MIN_AGO],
            flags=CallerFlags(abusive=True, abusive_flagged_by="anna"),
        ),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.ABUSIVE_PROTECTED)),
    ),
    case(
        "abusive-strict-flagger-goes-to-pool-not-strict-queue",
        context(
            calls=[ANNA_30_MIN_AGO],
            flags=CallerFlags(abusive=True, abusive_flagged_by="anna"),
        ),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.ABUSIVE_PROTECTED)),
        rules(sticky_mode=StickyMode.STRICT, strict_fallback_queue="callbacks"),
    ),
    case(
        "abusive-may-stay-with-first-line-operator-who-did-not-flag",
        context(
            calls=[ANNA_30_MIN_AGO],
            flags=CallerFlags(abusive=True, abusive_flagged_by="boris"),
        ),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY)),
    ),
    case(
        "opt-out-wins-over-sticky",
        context(
            calls=[ANNA_30_MIN_AGO], flags=CallerFlags(opted_out_operators=frozenset({"anna"}))
        ),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.OPTED_OUT)),
    ),
    case(
        "opt-out-wins-over-strict-sticky-pool-not-strict-queue",
        context(
            calls=[ANNA_30_MIN_AGO], flags=CallerFlags(opted_out_operators=frozenset({"anna"}))
        ),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.OPTED_OUT)),
        rules(sticky_mode=StickyMode.STRICT, strict_fallback_queue="callbacks"),
    ),
    case(
        "opt-out-wins-over-last-contact-specialist-one-reason",
        context(
            calls=[SVETA_30_MIN_AGO], flags=CallerFlags(opted_out_operators=frozenset({"sveta"}))
        ),
        pool((R.DEFAULT_QUEUE, R.REPEAT_PRIORITY, R.OPTED_OUT)),
    ),
    case(
        "opt-out-wins-over-ticket-specialist",
        context(
            open_ticket=ticket("oleg"), flags=CallerFlags(opted_out_operators=frozenset({"oleg"}))
        ),
        Expect((R.NEW_CALLER, R.OPTED_OUT)),
    ),
    case(
        "opt-out-ticket-specialist-then-last-contact-specialist",
        context(
            calls=[SVETA_30_MIN_AGO],
            open_ticket=ticket("oleg"),
            flags=CallerFlags(opted_out_operators=frozenset({"oleg"})),
        ),
        Expect(
            (R.SPECIALIST_LAST_CONTACT, R.REPEAT_PRIORITY, R.OPTED_OUT),
            action=Action.SPECIALIST,
            target="sveta",
            wait=20,
            announcement=YOUR_SPECIALIST,
            queue="second-line",
            priority=10,
        ),
    ),
]

CALLER_CASES = [
    case(
        "vip-class-queue-and-priority",
        context(flags=CallerFlags(vip_class="gold")),
        Expect((R.NEW_CALLER, R.VIP), queue="vip", priority=50),
        rules(vip_classes={"gold": VipRule(queue="vip", priority=50)}),
    ),
    case(
        "vip-class-priority-only",
        context(flags=CallerFlags(vip_class="gold")),
        Expect((R.NEW_CALLER, R.VIP), priority=50),
        rules(vip_classes={"gold": VipRule(priority=50)}),
    ),
    case(
        "vip-class-queue-only",
        context(flags=CallerFlags(vip_class="gold")),
        Expect((R.NEW_CALLER, R.VIP), queue="vip"),
        rules(vip_classes={"gold": VipRule(queue="vip")}),
    ),
    case(
        "vip-priority-never-lowers-base",
        context(flags=CallerFlags(vip_class="gold")),
        Expect((R.NEW_CALLER, R.VIP), priority=5),
        rules(base_priority=5, vip_classes={"gold": VipRule(priority=1)}),
    ),
    case(
        "vip-class-unconfigured-ignored",
        context(flags=CallerFlags(vip_class="platinum")),
        Expect((R.NEW_CALLER,)),
        rules(vip_classes={"gold": VipRule(queue="vip", priority=50)}),
    ),
    case(
        "vip-sticky-fallback-goes-to-vip-queue-with-higher-priority",
        context(
            calls=[ANNA_30_MIN_AGO],
            states=states(anna=PAUSED),
            flags=CallerFlags(vip_class="gold"),
        ),
        Expect((R.STICKY_UNAVAILABLE, R.VIP), queue="vip", priority=50),
        rules(vip_classes={"gold": VipRule(queue="vip", priority=50)}),
    ),
    case(
        "vip-sticky-available-falls-back-to-vip-queue",
        context(calls=[ANNA_30_MIN_AGO], flags=CallerFlags(vip_class="gold")),
        sticky((R.STICKY_AVAILABLE, R.VIP, R.REPEAT_PRIORITY), queue="vip", priority=10),
        rules(vip_classes={"gold": VipRule(queue="vip", priority=3)}),
    ),
    case(
        "withheld-with-history-is-a-new-caller",
        context(
            calls=[ANNA_30_MIN_AGO, *unresolved_calls(2)],
            withheld=True,
            open_ticket=ticket("oleg"),
            flags=CallerFlags(vip_class="gold"),
        ),
        Expect((R.WITHHELD,)),
        rules(vip_classes={"gold": VipRule(queue="vip", priority=50)}),
    ),
    case(
        "unknown-number-is-withheld",
        context(calls=[ANNA_30_MIN_AGO], number=None),
        Expect((R.WITHHELD,)),
    ),
    case(
        "withheld-gets-all-callers-incident-announcement",
        context(calls=[ANNA_30_MIN_AGO], number=None, incidents=[incident()]),
        Expect((R.WITHHELD, R.INCIDENT), announcement=OUTAGE),
    ),
    case(
        "withheld-not-in-prefix-incident",
        context(number=None, incidents=[incident(prefixes=("+7912",))]),
        Expect((R.WITHHELD,)),
    ),
    case(
        "incident-and-your-operator-announcements-joined",
        context(calls=[ANNA_30_MIN_AGO], incidents=[incident()]),
        sticky(
            (R.STICKY_AVAILABLE, R.INCIDENT, R.REPEAT_PRIORITY),
            announcement=f"{OUTAGE}&{YOUR_OPERATOR}",
        ),
    ),
    case(
        "incident-and-busy-operator-only-incident-announcement",
        context(calls=[ANNA_30_MIN_AGO], incidents=[incident()], states=states(anna=IN_CALL)),
        sticky((R.STICKY_BUSY_WAIT, R.INCIDENT, R.REPEAT_PRIORITY), announcement=OUTAGE),
    ),
    case(
        "incident-and-your-specialist-announcements-joined",
        context(open_ticket=ticket("oleg"), incidents=[incident()]),
        Expect(
            (R.SPECIALIST_TICKET, R.INCIDENT),
            action=Action.SPECIALIST,
            target="oleg",
            wait=20,
            announcement=f"{OUTAGE}&{YOUR_SPECIALIST}",
            queue="second-line",
        ),
    ),
    case(
        "unknown-entry-queue-uses-defaults",
        context(calls=[ANNA_30_MIN_AGO], queue="night"),
        sticky((R.STICKY_AVAILABLE, R.REPEAT_PRIORITY), queue="night"),
        rules(queues={"billing": QueueRules(sticky_mode=StickyMode.OFF)}),
    ),
    case(
        # the validation run's scenario 12: the entry queue is kept, never default_queue
        "entry-queue-without-a-rules-table-is-kept",
        context(queue="nosuchqueue"),
        Expect((R.NEW_CALLER,), queue="nosuchqueue"),
        Rules(queues={"support": QueueRules()}, default_queue="support"),
    ),
    case(
        "no-entry-queue-named-goes-to-default-queue",
        context(queue=""),
        Expect((R.NEW_CALLER,), queue="frontdesk"),
        Rules(queues={"support": QueueRules()}, default_queue="frontdesk"),
    ),
]


@pytest.mark.parametrize(
    ("ctx", "rule_set", "expect"),
    [*STICKY_CASES, *SPECIALIST_CASES, *ESCALATION_CASES, *PROTECTION_CASES, *CALLER_CASES],
)
def test_decide(ctx: RoutingContext, rule_set: Rules, expect: Expect) -> None:
    d = decide(ctx, rule_set, NOW)

    assert d.codes == expect.codes, [str(r) for r in d.reasons]
    assert d.reason_code is expect.codes[0]
    assert d.action is expect.action
    assert d.queue == expect.queue
    assert d.priority == expect.priority
    assert d.target_operator_id == expect.target
    expected_interface = ctx.operators[expect.target].interface if expect.target else None
    assert d.target_interface == expected_interface
    assert d.wait_seconds == expect.wait
    assert d.announcement == expect.announcement
    assert d.escalated is expect.escalated
    assert all(r.text for r in d.reasons)


def test_target_interface_is_first_listed() -> None:
    d = decide(context(calls=[ANNA_30_MIN_AGO]), DEFAULT, NOW)
    assert d.target_interface == "PJSIP/1001"


def test_primary_reason_is_first_and_human_sentence_says_who() -> None:
    d = decide(context(calls=[ANNA_30_MIN_AGO]), DEFAULT, NOW)
    assert d.reason_code is R.STICKY_AVAILABLE
    assert d.reasons[0].text == "spoke with Anna 30 min ago"
    assert str(d.reasons[0]) == "sticky_available: spoke with Anna 30 min ago"


def test_per_queue_rules_do_not_leak_to_other_queues() -> None:
    rule_set = rules(queues={"billing": QueueRules(sticky_mode=StickyMode.OFF)})
    assert decide(context(calls=[ANNA_30_MIN_AGO]), rule_set, NOW).target_operator_id == "anna"
    billing = decide(context(calls=[ANNA_30_MIN_AGO], queue="billing"), rule_set, NOW)
    assert billing.target_operator_id is None
    assert R.STICKY_OFF in billing.codes
