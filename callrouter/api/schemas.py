"""Pydantic request and response models: the API's edge, never used by the domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from callrouter.domain.interfaces import INTERFACE_PATTERN, MAX_INTERFACE_LENGTH, check_interface
from callrouter.domain.model import Action, OperatorState, Outcome, TicketStatus, Tier
from callrouter.legs import LegEnd
from callrouter.store.records import Role

# Free text may hold anything a person types except control characters (PostgreSQL
# refuses NUL, and log lines must stay one line).
_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Text = Annotated[str, StringConstraints(max_length=4000, pattern=_TEXT)]
ShortText = Annotated[str, StringConstraints(max_length=200, pattern=_TEXT)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_TEXT)]
PhoneNumber = Annotated[
    str, StringConstraints(min_length=1, max_length=40, pattern=r"^[0-9+()\-. ]+$")
]
QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,80}$")]
OperatorId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


def _interface(value: str) -> str:
    """check_interface, with its message as the field's (no pydantic "Value error, " prefix)."""
    try:
        return check_interface(value)
    except ValueError as exc:
        raise PydanticCustomError("interface", "{expected}", {"expected": str(exc)}) from None


# Tech/resource as the dialplan can Dial it; checked by the same function as the CLI's, and
# described to OpenAPI clients with the same pattern and length.
Interface = Annotated[
    str,
    AfterValidator(_interface),
    WithJsonSchema(
        {"type": "string", "pattern": INTERFACE_PATTERN, "maxLength": MAX_INTERFACE_LENGTH}
    ),
]
VipClass = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,40}$")]
SoundName = Annotated[  # no '..': a sound must not climb out of the sounds directory
    str, StringConstraints(max_length=200, pattern=r"^[A-Za-z0-9_/\-]+(\.[A-Za-z0-9_/\-]+)*$")
]
Prefix = Annotated[str, StringConstraints(pattern=r"^\+[0-9]{1,15}$")]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- routing ---------------------------------------------------------------------------


class ReasonOut(BaseModel):
    code: str
    text: str


class DecisionOut(BaseModel):
    action: Action
    queue: str
    priority: int
    target_operator_id: str | None
    target_interface: str | None
    wait_seconds: int
    announcement: str | None
    escalated: bool
    reasons: list[ReasonOut]


class CallerOut(BaseModel):
    raw: str
    number: str | None
    identified: bool
    withheld: bool
    shared: bool


class SimulateIn(Input):
    caller: Annotated[str, StringConstraints(max_length=80, pattern=_TEXT)] = Field(
        description="The caller id as Asterisk would pass it ('8 912 345-67-89', 'anonymous')"
    )
    queue: QueueName | None = Field(None, description="Entry queue; default: the rules' default")
    operator_states: dict[OperatorId, OperatorState] | None = Field(
        None, description="Hypothetical states, laid over the live ones for these operators"
    )


class SimulateOut(BaseModel):
    caller: CallerOut
    queue: str
    decision: DecisionOut
    operator_states: dict[str, OperatorState]


class DecisionRecordOut(BaseModel):
    id: str
    decided_at: datetime
    caller_raw: str
    caller_number: str | None
    queue: str
    decision: DecisionOut
    latency_ms: float
    uniqueid: str | None
    server_id: str
    inputs: dict[str, Any]


# --- callers ---------------------------------------------------------------------------


class FlagsOut(BaseModel):
    name: str | None
    vip_class: str | None
    abusive: bool
    abusive_flagged_by: str | None
    abusive_flagged_at: datetime | None
    opted_out_operators: list[str]
    notes: str


class CallLegOut(BaseModel):
    """One party's part of a call: the first answer, then one per transfer."""

    seq: int
    operator_id: str | None = Field(description="null: a party no operator claims")
    operator_name: str | None
    interface: str | None
    via: str = Field(description="How they got the call: queue, dial (a direct Dial "
                                 "answered) or transfer (the target of an attended transfer)")
    answered_at: datetime | None
    ended_at: datetime | None = Field(description="null while this leg is live")
    hold_seconds: int = Field(description="The caller's wait before this leg")
    talk_seconds: int
    ended_how: LegEnd | None = Field(description="null while this leg is live")
    hangup_by: str | None = Field(description="caller or operator, when the call ended here")
    transferred_to: str | None = Field(description="The operator of the next leg")
    transferred_to_name: str | None
    transfer_target: str | None = Field(
        description="What the transfer named: Extension@Context of a blind transfer, the "
                    "target's interface of an attended one")


class CallNoteOut(BaseModel):
    """One handler's own follow-up on the call."""

    operator_id: str
    operator_name: str | None
    note: str | None
    resolved: bool | None
    updated_at: datetime


class CallOut(BaseModel):
    id: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    queue: str | None
    operator_id: str | None = Field(
        description="Who handled the call last (who answered, unless it was transferred)")
    operator_name: str | None
    outcome: Outcome
    talk_seconds: int = Field(description="Every party's time with the caller, added up")
    hold_seconds: int
    resolved: bool | None = Field(
        description="The call's verdict: that of the handler who had the caller latest "
                    "among those who gave one (or a supervisor's, set directly)")
    note: str | None = Field(
        description="The call's own note: a supervisor's, or one written before "
                    "per-operator notes; each handler's note is in notes")
    escalated: bool
    transferred: bool = False
    transferred_from: str | None = Field(None, description="Who answered first, after a transfer")
    handled_by: list[str] = Field(
        default_factory=list, description="Every operator who had the call, in order")
    legs: list[CallLegOut] = Field(default_factory=list,
                                   description="Empty for calls recorded before legs existed")
    notes: list[CallNoteOut] = Field(default_factory=list,
                                     description="Each handler's own note and verdict")


class TicketOut(BaseModel):
    id: str
    caller_number: str
    subject: str
    status: TicketStatus
    tier: Tier
    assignee_id: str | None
    external_ref: str | None
    created_at: datetime | None
    updated_at: datetime | None


class BindingOut(BaseModel):
    """The sticky binding: the last answered call's operator, until the window closes."""

    operator_id: str
    operator_name: str | None
    call_id: str
    queue: str
    mode: str
    since: datetime = Field(description="End of the call that made the binding")
    until: datetime
    seconds_left: int
    blocked: bool = Field(description="The operator opted out or is protected from this caller")


class BindingListItem(BindingOut):
    caller_number: str = Field(description="Masked for readonly tokens")


class RoutingNowOut(BaseModel):
    queue: str
    decision: DecisionOut


class CallerContextOut(BaseModel):
    number: str
    name: str | None
    vip_class: str | None
    flags: FlagsOut
    recent_calls: list[CallOut]
    open_ticket: TicketOut | None
    sticky: BindingOut | None
    routing_now: RoutingNowOut


class AbusiveIn(Input):
    abusive: bool


class ClassIn(Input):
    vip_class: VipClass | None


class NoteIn(Input):
    note: Text


class OptOutOut(BaseModel):
    caller_number: str
    operator_id: str
    opted_out: bool
    changed: bool


# --- calls and tickets -----------------------------------------------------------------


class ResolvedIn(Input):
    resolved: bool | None = Field(description="true, false, or null for 'not known'")


class CallNoteIn(Input):
    note: Text | None


class TicketCreate(Input):
    subject: Name
    tier: Tier = Tier.FIRST_LINE
    status: TicketStatus = TicketStatus.OPEN
    assignee_id: OperatorId | None = None
    external_ref: ShortText | None = None


class TicketUpdate(Input):
    """Only the fields given change; ``assignee_id: null`` unassigns."""

    status: TicketStatus | None = None
    assignee_id: OperatorId | None = None
    subject: Name | None = None
    tier: Tier | None = None


# --- operators -------------------------------------------------------------------------


class CurrentCallOut(BaseModel):
    call_id: str
    caller_number: str | None
    queue: str | None
    answered_at: datetime | None


class OperatorOut(BaseModel):
    id: str
    name: str
    tier: Tier
    queues: list[str]
    interfaces: list[str]
    active: bool
    state: OperatorState
    state_since: datetime | None
    paused_reason: str | None
    current_call: CurrentCallOut | None


class OperatorCreate(Input):
    id: OperatorId
    name: Name
    interfaces: list[Interface] = Field(default_factory=list, max_length=20)
    tier: Tier = Tier.FIRST_LINE
    queues: list[QueueName] = Field(default_factory=list, max_length=100)
    active: bool = True


class OperatorUpdate(Input):
    name: Name | None = None
    interfaces: list[Interface] | None = Field(None, max_length=20)
    tier: Tier | None = None
    queues: list[QueueName] | None = Field(None, max_length=100)
    active: bool | None = None


# --- rules, incidents, tokens, health --------------------------------------------------


class RejectedOut(BaseModel):
    at: datetime
    problems: list[str]


class RulesOut(BaseModel):
    version: int
    source: str | None
    loaded_at: datetime
    sha256: str | None
    rules: dict[str, Any]
    last_rejected: RejectedOut | None


class RulesValidateIn(Input):
    text: Annotated[str, StringConstraints(max_length=1_000_000)] = Field(
        description="A candidate rules file (TOML)"
    )


class RulesValidateOut(BaseModel):
    valid: bool
    problems: list[str]
    rules: dict[str, Any] | None


class IncidentIn(Input):
    announcement: SoundName
    title: ShortText = ""
    prefixes: list[Prefix] = Field(default_factory=list, max_length=100)


class IncidentOut(BaseModel):
    id: str
    title: str
    announcement: str
    prefixes: list[str]
    started_at: datetime | None
    ended_at: datetime | None
    active: bool


class TokenOut(BaseModel):
    id: str
    name: str
    role: Role
    operator_id: str | None
    created_at: datetime
    revoked_at: datetime | None


class TokenCreate(Input):
    name: Name
    role: Role
    operator_id: OperatorId | None = None


class TokenCreated(BaseModel):
    token: TokenOut
    plaintext: str = Field(description="Shown once; only its hash is stored")


class MeOut(BaseModel):
    token_id: str
    name: str
    role: Role
    operator_id: str | None
    operator_active: bool | None = Field(
        description="Whether the token's operator is active (its stream is refused when "
        "not); null for a token bound to no operator"
    )


class ComponentOut(BaseModel):
    ok: bool
    state: str
    detail: str | None


class HealthOut(BaseModel):
    status: str = Field(description="'ok' when routing works, else 'unavailable'")
    database: ComponentOut
    fastagi: ComponentOut
    ami: ComponentOut
    state_replica: ComponentOut = Field(
        description="callers' routing state in memory (PostgreSQL): 'live', or why not "
                    "('loading', 'down', 'off', 'disabled'); not live, calls read the "
                    "database")
    rules_version: int
