"""Transfer scenarios built from the bytes of the recorded Asterisk 22.10.1 sessions.

No trace in ``shared/asterisk`` has a transfer (the recorder had no phones to press a
transfer key on), so these scenarios are assembled, and everything that can come from a
trace does:

* Every event that also occurs in a call without a transfer is a recorded event, byte for
  byte, with only header *values* rewritten (channel names, uniqueids, caller id) and its
  ``Timestamp`` shifted; the header names and their order are Asterisk's.
  - The queue call answered by op1 is ``ami-queue-answered-agent-hangup`` (Bob Caller,
    5551002, support-q) up to the caller's ``BridgeEnter``; op1's leg leaving the bridge
    and hanging up, the caller's ``BridgeLeave`` and ``BridgeDestroy`` are that trace's
    teardown events, and its ``AgentComplete`` with ``Reason: transfer``.
  - A channel's own ``Dial()`` reaching an operator (the caller dialling op2 after a
    blind transfer; op1's consult call to op2 before an attended one) and the end of
    that conversation are ``ami-direct-dial-answered`` (a ``Dial(Local/op1@operators/n)``
    from ``Local/s@route-...;2``), re-addressed to op2. Its queue-member and device-state
    events are left out: they describe op1's memberships, not op2's.
* The two transfer events are built with the header layout of Asterisk 22.10.1's source
  (``git show 22.10.1:...`` of github.com/asterisk/asterisk):
  - ``BlindTransfer``: ``main/stasis_bridges.c`` ``blind_transfer_to_ami()``:
    ``Result`` (``result_strs``: Fail, Invalid, Not Permitted, Success), the
    ``Transferer`` channel block, the ``Transferee`` block, the bridge block (no prefix),
    ``IsExternal`` (Yes for a SIP REFER), ``Context``, ``Extension``.
  - ``AttendedTransfer``: ``attended_transfer_to_ami()``: ``Result``,
    ``OrigTransferer`` block, ``OrigBridge`` block, ``SecondTransferer`` block,
    ``SecondBridge`` block, ``Transferee`` block, ``TransferTarget`` block,
    ``IsExternal``, then ``DestType: Bridge`` + ``DestBridgeUniqueid`` (or ``App`` +
    ``DestApp``, ``Link`` + ``LocalOne``/``LocalTwo`` blocks, ``Threeway`` +
    ``DestBridgeUniqueid`` + ``DestTransfererChannel``, ``Fail``). ``Transferee`` and
    ``TransferTarget`` are the peers of the two transferer legs
    (``ast_attended_transfer_message_create()``).
  - A channel block is ``main/manager_channels.c``
    ``ast_manager_build_channel_state_string_prefix()``: Channel, ChannelState,
    ChannelStateDesc, CallerIDNum, CallerIDName, ConnectedLineNum, ConnectedLineName,
    Language, AccountCode, Context, Exten, Priority, Uniqueid, Linkedid, each with the
    prefix; a bridge block is ``main/manager_bridges.c``
    ``ast_manager_build_bridge_state_string_prefix()``: BridgeUniqueid, BridgeType,
    BridgeTechnology, BridgeCreator, BridgeName, BridgeNumChannels,
    BridgeVideoSourceMode. The *values* of both are copied from the recorded
    ``BridgeEnter`` events of the same channels and bridges.
  - ``Event``/``Privilege: call,all`` (EVENT_FLAG_CALL)/``Timestamp`` come first, as
    ``main/manager.c`` writes every event.
* The sequence around them follows the source too: ``ast_bridge_transfer_blind()``
  (``main/bridge.c``) sends the transferee to Context/Extension, removes the transferer
  from the bridge, then publishes ``BlindTransfer``; ``app_queue``'s
  ``handle_blind_transfer()``/``handle_attended_transfer()`` answer with
  ``AgentComplete`` ``Reason: transfer`` (``send_agent_complete()``, TRANSFER). For two
  two-party basic bridges ``two_bridge_attended_transfer()`` swaps the target's peer
  into the transferee's bridge (``bridge_swap_attended_transfer()``), kicks the
  transferer legs, and reports ``DestType: Bridge`` with the transferee's bridge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from callrouter.simulator.ami_traces import asterisk_events
from tests.ami.conftest import trace

QUEUE_TRACE = "ami-queue-answered-agent-hangup"
DIAL_TRACE = "ami-direct-dial-answered"

CALLER_NUMBER = "5551002"
CALLER_UID = "1795425142.75"  # Local/s@queue-entry-00000025;2, the channel in Queue()
CALLER_HALF_UID = "1795425142.74"  # its ;1 half (the originated "customer")
OP1_LEG_UID = "1795425142.76"  # Local/op1@operators-00000026;1, bridged with the caller
QUEUE_BRIDGE = "30defae5-818c-4448-b1ec-5444e8ab8e93"
OP2_LEG_UID = "1795425142.80"
OP2_LEG = "Local/op2@operators-00000028;1"

CHANNEL_FIELDS = ("Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum",
                  "CallerIDName", "ConnectedLineNum", "ConnectedLineName", "Language",
                  "AccountCode", "Context", "Exten", "Priority", "Uniqueid", "Linkedid")
BRIDGE_FIELDS = ("BridgeUniqueid", "BridgeType", "BridgeTechnology", "BridgeCreator",
                 "BridgeName", "BridgeNumChannels", "BridgeVideoSourceMode")

Pairs = list[tuple[str, str]]

# The direct-dial trace's parties, re-addressed (value -> value, whole header values).
_DIAL_TO_OP2 = {
    "Local/op1@operators-0000002d;1": OP2_LEG,
    "Local/op1@operators-0000002d;2": "Local/op2@operators-00000028;2",
    "1795425171.90": OP2_LEG_UID,
    "1795425171.91": "1795425142.81",
    "op1@operators/n": "op2@operators/n",  # DialString
    "op1": "op2",  # Exten of the operator's ;2 half
}
_DIAL_CALLER_IS_QUEUE_CALLER = {
    "Local/s@route-0000002c;2": "Local/s@queue-entry-00000025;2",
    "Local/s@route-0000002c;1": "Local/s@queue-entry-00000025;1",
    "1795425171.89": CALLER_UID,
    "1795425171.88": CALLER_HALF_UID,
    "5551005": CALLER_NUMBER,
    "Erin Caller": "Bob Caller",
    "route": "transfer",  # the context the blind transfer sent the caller to
}
# op1's consult call (attended transfer): the direct-dial trace's calling channel.
CONSULT = "Local/s@consult-00000027;2"
CONSULT_UID = "1795425142.79"
_DIAL_CALLER_IS_CONSULT = {
    "Local/s@route-0000002c;2": CONSULT,
    "Local/s@route-0000002c;1": "Local/s@consult-00000027;1",
    "1795425171.89": CONSULT_UID,
    "1795425171.88": "1795425142.78",
    "5551005": "1001",
    "Erin Caller": "Operator One",
    "route": "consult",
}


def pairs(raw: bytes) -> Pairs:
    out: Pairs = []
    for line in raw.decode().split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            out.append((key, value))
    return out


def render(items: Iterable[tuple[str, str]]) -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n").encode()


def value(raw: bytes, key: str) -> str | None:
    return next((v for k, v in pairs(raw) if k == key), None)


def rewrite(raw: bytes, values: Mapping[str, str], shift: float = 0.0,
            **set_headers: str) -> bytes:
    """The same event with whole header values replaced and its Timestamp shifted."""
    out: Pairs = []
    for k, v in pairs(raw):
        if k == "Timestamp":
            v = f"{float(v) + shift:.6f}"
        elif k in set_headers:
            v = set_headers[k]
        else:
            v = values.get(v, v)
        out.append((k, v))
    return render(out)


def channel_block(raw: bytes, prefix: str, source_prefix: str = "") -> Pairs:
    h = dict(pairs(raw))
    return [(prefix + f, h[source_prefix + f]) for f in CHANNEL_FIELDS]


def bridge_block(raw: bytes, prefix: str = "", channels: int | None = None) -> Pairs:
    h = dict(pairs(raw))
    block = [(prefix + f, h[f]) for f in BRIDGE_FIELDS]
    if channels is not None:
        block[5] = (prefix + "BridgeNumChannels", str(channels))
    return block


def _event(name: str, ts: float, body: Pairs) -> bytes:
    return render([("Event", name), ("Privilege", "call,all"), ("Timestamp", f"{ts:.6f}"),
                   *body])


def _events(name: str) -> list[bytes]:
    return [m.raw for m in asterisk_events(trace(name))]


def _index(evs: list[bytes], event: str, **match: str) -> int:
    for i, raw in enumerate(evs):
        h = dict(pairs(raw))
        if h.get("Event") == event and all(h.get(k) == v for k, v in match.items()):
            return i
    raise LookupError(f"{event} {match}")


def _ts(raw: bytes) -> float:
    return float(value(raw, "Timestamp") or 0)


def _queue_call_answered_by_op1() -> tuple[list[bytes], list[bytes]]:
    """The recorded queue call up to the caller's BridgeEnter, and the rest of the trace."""
    evs = _events(QUEUE_TRACE)
    enter = _index(evs, "BridgeEnter", Uniqueid=CALLER_UID)
    return evs[: enter + 1], evs[enter + 1:]


def _teardown(tail: list[bytes]) -> dict[str, bytes]:
    """The recorded end of op1's part of the queue call, by role."""
    def pick(event: str, **match: str) -> bytes:
        return tail[_index(tail, event, **match)]
    return {
        "soft_op1_2": pick("SoftHangupRequest", Channel="Local/op1@operators-00000026;2"),
        "hangup_request_op1_1": pick("HangupRequest", Uniqueid=OP1_LEG_UID),
        "hangup_op1_2": pick("Hangup", Channel="Local/op1@operators-00000026;2"),
        "complete": pick("AgentComplete"),
        "leave_op1": pick("BridgeLeave", Uniqueid=OP1_LEG_UID),
        "hangup_op1_1": pick("Hangup", Uniqueid=OP1_LEG_UID),
        "leave_caller": pick("BridgeLeave", Uniqueid=CALLER_UID),
        "destroy": pick("BridgeDestroy"),
    }


def _retime(evs: Iterable[bytes], start: float, step: float = 0.0001) -> list[bytes]:
    """Events in this order, ``step`` seconds apart from ``start``."""
    return [rewrite(raw, {}, start + i * step - _ts(raw)) for i, raw in enumerate(evs)]


def _dial_part(values: Mapping[str, str], start: float, *, end: bool,
               bridge: str | None = None, to: Mapping[str, str] = _DIAL_TO_OP2,
               ) -> list[bytes]:
    """The direct-dial trace from the operator's Newchannel: the dial, the answer and the
    bridge; with ``end`` also the operator hanging up and the calling channel after it.
    ``bridge`` replaces its bridge id (the swap moved op2 into that bridge); ``to`` says
    which operator is dialled (op2 unless told)."""
    evs = _events(DIAL_TRACE)
    first = _index(evs, "Newchannel", Channel="Local/op1@operators-0000002d;1")
    enter = _index(evs, "BridgeEnter", Uniqueid="1795425171.89")
    mapping = {**to, **values}
    if bridge is not None:
        mapping["467a1e67-7ddf-46bd-b8fc-6ca2991cf105"] = bridge
    out = []
    chosen = evs[enter + 1:] if end else evs[first: enter + 1]
    base = (evs[_index(evs, "SoftHangupRequest", Channel="Local/op1@operators-0000002d;2")]
            if end else evs[first])
    shift = start - _ts(base)
    for raw in chosen:
        name = value(raw, "Event")
        if name in ("QueueMemberStatus", "DeviceStateChange"):
            continue  # op1's memberships and device, not op2's
        if name in ("DialEnd", "Newstate") and value(raw, "Uniqueid") in (None, "1795425171.88"):
            continue  # the Originate's own ;1 half: answered long ago in the queue trace
        out.append(rewrite(raw, mapping, shift))
    return out


def blind_transfer_to_op2(result: str = "Success") -> list[bytes]:
    """op1 answers the queue call, talks 2 s, blind-transfers it to ``op2@transfer``;
    the caller's channel dials op2, op2 answers after 1 s, talks 3 s and hangs up."""
    head, tail = _queue_call_answered_by_op1()
    caller_enter, op1_enter = head[-1], head[-2]
    at = _ts(caller_enter) + 2.0
    transfer = _event("BlindTransfer", 0.0, [
        ("Result", result),
        *channel_block(op1_enter, "Transferer"),
        *channel_block(caller_enter, "Transferee"),
        *bridge_block(caller_enter),
        ("IsExternal", "Yes"), ("Context", "transfer"), ("Extension", "op2"),
    ])
    if result != "Success":  # nothing moved: op1 talks on and hangs up, as recorded
        return [*head, *_retime([transfer], at), *tail]
    t = _teardown(tail)
    complete = rewrite(t["complete"], {}, TalkTime="2", Reason="transfer")
    # ast_bridge_transfer_blind(): the transferer is removed from the bridge, then the
    # event is published; app_queue answers it with AgentComplete; the caller leaves the
    # bridge to run transfer,op2,1; the phone hangs up its leg.
    leave = _retime([t["leave_op1"], transfer, complete, t["leave_caller"], t["destroy"],
                     t["soft_op1_2"], t["hangup_request_op1_1"], t["hangup_op1_2"],
                     t["hangup_op1_1"]], at)
    dial = _dial_part(_DIAL_CALLER_IS_QUEUE_CALLER, at + 0.5, end=False)
    answered = _ts(dial[-1])
    rest = _dial_part(_DIAL_CALLER_IS_QUEUE_CALLER, answered + 3.0, end=True)
    return [*head, *leave, *dial, *rest]


def attended_transfer_to_op2(*, refer_on_consult: bool = False,
                             dest_type: str = "Bridge") -> list[bytes]:
    """op1 answers the queue call, puts it on hold after 2 s and calls op2 from a second
    channel; op2 answers; op1 completes the transfer 1 s later; op2 talks to the caller
    for 3 s and hangs up.

    ``refer_on_consult``: the phone sent its REFER on the consult dialog, so Asterisk's
    "to transferee" leg is the consult call: Transferee is op2, TransferTarget the caller.
    """
    head, tail = _queue_call_answered_by_op1()
    caller_enter, op1_enter = head[-1], head[-2]
    consult = _dial_part(_DIAL_CALLER_IS_CONSULT, _ts(caller_enter) + 2.0, end=False)
    consult_enter = consult[-1]  # the consult channel's BridgeEnter
    op2_enter = consult[-2]
    at = _ts(consult_enter) + 1.0
    first_leg = [*channel_block(op1_enter, "OrigTransferer"),
                 *bridge_block(caller_enter, "Orig")]
    second_leg = [*channel_block(consult_enter, "SecondTransferer"),
                  *bridge_block(consult_enter, "Second")]
    caller, op2 = channel_block(caller_enter, ""), channel_block(op2_enter, "")
    if refer_on_consult:
        first_leg, second_leg = ([(k.replace("Second", "Orig", 1), v) for k, v in second_leg],
                                 [(k.replace("Orig", "Second", 1), v) for k, v in first_leg])
        transferee, target = op2, caller
    else:
        transferee, target = caller, op2
    dest: Pairs = [("DestType", dest_type)]
    if dest_type == "Bridge":
        dest.append(("DestBridgeUniqueid", QUEUE_BRIDGE))
    elif dest_type == "Threeway":
        dest += [("DestBridgeUniqueid", QUEUE_BRIDGE),
                 ("DestTransfererChannel", "Local/op1@operators-00000026;1")]
    event = _event("AttendedTransfer", 0.0, [
        ("Result", "Success"), *first_leg, *second_leg,
        *[("Transferee" + k, v) for k, v in transferee],
        *[("TransferTarget" + k, v) for k, v in target],
        ("IsExternal", "Yes"), *dest,
    ])
    if dest_type == "Threeway":  # op1 stays with the caller and hangs up, as recorded
        return [*head, *consult, *_retime([event], at), *tail]
    t = _teardown(tail)
    complete = rewrite(t["complete"], {}, TalkTime=str(int(at - _ts(caller_enter))),
                       Reason="transfer")
    # The swap: op2's leg leaves the consult bridge and enters the queue's bridge (its
    # recorded BridgeEnter, re-addressed), op1's leg is swapped out, the consult leg is
    # kicked; then the event; then app_queue's AgentComplete; then the hangups.
    op2_from_consult = rewrite(op2_enter, {}, Event="BridgeLeave", BridgeNumChannels="1")
    op2_into_queue = rewrite(op2_enter, {"467a1e67-7ddf-46bd-b8fc-6ca2991cf105": QUEUE_BRIDGE},
                             BridgeNumChannels="3")
    consult_gone = rewrite(consult_enter, {}, Event="BridgeLeave", BridgeNumChannels="0")
    consult_hangup = next(raw for raw in _dial_part(_DIAL_CALLER_IS_CONSULT, 0.0, end=True)
                          if value(raw, "Event") == "Hangup"
                          and value(raw, "Uniqueid") == CONSULT_UID)
    swap = _retime([op2_from_consult, op2_into_queue, t["leave_op1"], consult_gone, event,
                    complete, t["soft_op1_2"], t["hangup_request_op1_1"], t["hangup_op1_2"],
                    t["hangup_op1_1"], consult_hangup], at - 0.0004)
    end = _dial_part(_DIAL_CALLER_IS_QUEUE_CALLER, at + 3.0, end=True, bridge=QUEUE_BRIDGE)
    return [*head, *consult, *swap, *end]


REQUEUE_TRACE = "ami-queue-ringnoanswer-then-other"
_REQUEUE_CALLER_IS_QUEUE_CALLER = {
    "Local/s@queue-entry-00000027;2": "Local/s@queue-entry-00000025;2",
    "Local/s@queue-entry-00000027;1": "Local/s@queue-entry-00000025;1",
    "1795425150.79": CALLER_UID,
    "1795425150.78": CALLER_HALF_UID,
    "5551003": CALLER_NUMBER,
    "Carol Caller": "Bob Caller",
    "queue-entry": "transfer",  # the caller's context after the transfer
}


def blind_transfer_back_to_queue() -> list[bytes]:
    """op1 answers the queue call, talks 2 s and blind-transfers it to ``queue@transfer``,
    which runs ``Queue(support-q)`` again: op1 is rung and does not answer, op2 answers
    (``ami-queue-ringnoanswer-then-other`` from its QueueCallerJoin on, re-addressed to
    this caller), talks 3.5 s and hangs up."""
    head, tail = _queue_call_answered_by_op1()
    caller_enter, op1_enter = head[-1], head[-2]
    at = _ts(caller_enter) + 2.0
    transfer = _event("BlindTransfer", 0.0, [
        ("Result", "Success"),
        *channel_block(op1_enter, "Transferer"),
        *channel_block(caller_enter, "Transferee"),
        *bridge_block(caller_enter),
        ("IsExternal", "Yes"), ("Context", "transfer"), ("Extension", "queue"),
    ])
    t = _teardown(tail)
    complete = rewrite(t["complete"], {}, TalkTime="2", Reason="transfer")
    leave = _retime([t["leave_op1"], transfer, complete, t["leave_caller"], t["destroy"],
                     t["soft_op1_2"], t["hangup_request_op1_1"], t["hangup_op1_2"],
                     t["hangup_op1_1"]], at)
    evs = _events(REQUEUE_TRACE)
    join = _index(evs, "QueueCallerJoin")
    shift = at + 0.5 - _ts(evs[join])
    requeue = [rewrite(raw, _REQUEUE_CALLER_IS_QUEUE_CALLER, shift) for raw in evs[join:]
               if value(raw, "Event") not in ("QueueMemberStatus", "DeviceStateChange")]
    return [*head, *leave, *requeue]


# op3, for a second transfer: the direct-dial trace's operator re-addressed again.
OP3_LEG_UID = "1795425142.82"
OP3_LEG = "Local/op3@operators-00000029;1"
_DIAL_TO_OP3 = {
    "Local/op1@operators-0000002d;1": OP3_LEG,
    "Local/op1@operators-0000002d;2": "Local/op3@operators-00000029;2",
    "1795425171.90": OP3_LEG_UID,
    "1795425171.91": "1795425142.83",
    "op1@operators/n": "op3@operators/n",
    "op1": "op3",
}
OP3_BRIDGE = "5b0c3d8e-9a51-4c7e-8f0e-2d6a1c4b7e90"


def blind_transfer_chain() -> list[bytes]:
    """op1 -> op2 -> op3: ``blind_transfer_to_op2`` up to op2 answering the caller's Dial;
    3 s later op2 blind-transfers the caller to ``op3@transfer`` (the same
    ``BlindTransfer`` layout, op2's leg as the transferer, the caller as the transferee,
    op2's bridge; op2's part of the recorded teardown without the caller's hangup); the
    caller's channel dials op3, who answers after 1 s, talks 3 s and hangs up."""
    raws = blind_transfer_to_op2()
    op2_answered = max(i for i, r in enumerate(raws) if value(r, "Event") == "BridgeEnter"
                       and value(r, "Uniqueid") == CALLER_UID)
    head, tail = raws[: op2_answered + 1], raws[op2_answered + 1:]
    caller_enter = head[-1]
    op2_enter = next(r for r in reversed(head) if value(r, "Event") == "BridgeEnter"
                     and value(r, "Uniqueid") == OP2_LEG_UID)
    at = _ts(caller_enter) + 3.0
    transfer = _event("BlindTransfer", 0.0, [
        ("Result", "Success"),
        *channel_block(op2_enter, "Transferer"),
        *channel_block(caller_enter, "Transferee"),
        *bridge_block(caller_enter),
        ("IsExternal", "Yes"), ("Context", "transfer"), ("Extension", "op3"),
    ])
    # op2's leg leaves first (main/bridge.c), then the event, then the caller leaves the
    # bridge; op2's channels hang up. The caller's own hangup is op3's part, at the end.
    def of(event: str, **match: str) -> bytes:
        return tail[_index(tail, event, **match)]
    leave = _retime([
        of("BridgeLeave", Uniqueid=OP2_LEG_UID), transfer,
        of("BridgeLeave", Uniqueid=CALLER_UID), of("BridgeDestroy"),
        of("SoftHangupRequest", Channel="Local/op2@operators-00000028;2"),
        of("HangupRequest", Uniqueid=OP2_LEG_UID),
        of("Hangup", Channel="Local/op2@operators-00000028;2"),
        of("Hangup", Uniqueid=OP2_LEG_UID)], at)
    dial = _dial_part(_DIAL_CALLER_IS_QUEUE_CALLER, at + 0.5, end=False, to=_DIAL_TO_OP3,
                      bridge=OP3_BRIDGE)
    answered = _ts(dial[-1])
    rest = _dial_part(_DIAL_CALLER_IS_QUEUE_CALLER, answered + 3.0, end=True, to=_DIAL_TO_OP3,
                      bridge=OP3_BRIDGE)
    return [*head, *leave, *dial, *rest]


def blind_transfer_nobody_takes() -> list[bytes]:
    """op1 blind-transfers the call to ``op2@transfer`` as in ``blind_transfer_to_op2``;
    op2's phone rings for 4 s and is not answered (the recorded ``DialEnd`` with
    ``DialStatus: NOANSWER``), and the caller hangs up (the recorded caller hangup)."""
    raws = blind_transfer_to_op2()
    dial_begin = next(i for i, r in enumerate(raws) if value(r, "Event") == "DialBegin"
                      and value(r, "DestUniqueid") == OP2_LEG_UID)
    dial_end = next(r for r in raws if value(r, "Event") == "DialEnd"
                    and value(r, "DestUniqueid") == OP2_LEG_UID)
    at = _ts(raws[dial_begin]) + 4.0
    caller_gone = [r for r in raws[dial_begin:] if value(r, "Event") in (
        "SoftHangupRequest", "HangupRequest", "Hangup")
        and value(r, "Uniqueid") in (CALLER_UID, CALLER_HALF_UID)]
    op2_gone = [r for r in raws[dial_begin:] if value(r, "Event") == "Hangup"
                and value(r, "Uniqueid") in (OP2_LEG_UID, "1795425142.81")]
    no_answer = rewrite(dial_end, {}, DialStatus="NOANSWER")
    return [*raws[: dial_begin + 1], *_retime([no_answer, *op2_gone, *caller_gone], at)]
