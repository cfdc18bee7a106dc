"""A routed caller who hangs up before any Dial or Queue: the call ends, as abandoned.

Recorded on a real Asterisk 22.10.1 (``tests/fixtures/asterisk22-live``): the caller hangs
up during the announcement (early-media ``Playback``), during the busy-operator wait
(music on hold), or cancels over SIP during the announcement. The daemon had told the
listener the channel's decision (``expect()``), and the only event of the caller's
channel the tracker follows is its ``Hangup``. The call row used to stay ``in_progress``
for ever, and the expectation was never released.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from callrouter.ami.interfaces import InterfaceMap
from callrouter.ami.message import AmiMessage, parse_block
from callrouter.ami.tracker import CallTracker
from callrouter.domain.model import Action, Decision
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.metrics import Metrics
from callrouter.service.ports import CallRecord, DecisionRecord
from callrouter.simulator.ami import FakeAmiServer
from callrouter.store import Store
from callrouter.store.models import CallRow
from tests.ami.conftest import OPERATORS

LIVE = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk22-live"


@dataclass(frozen=True)
class Case:
    uniqueid: str  # the caller's channel: the one that ran the AGI
    number: str


CASES = {
    "pjsip-cancel-during-announcement": Case("1795448408.29", "89123456735"),
    # Local channels: the ;2 half runs callrouter-inbound (the ;1 half is the "phone").
    "hangup-during-announcement": Case("1795447072.117", "89123456712"),
    "hangup-during-busy-wait": Case("1795447101.121", "89123456713"),
}
DECIDED = datetime(2026, 11, 23, 9, 12, tzinfo=UTC).timestamp()
WAITED = 2.5  # seconds between the decision and the Hangup, in these tests


def raws(name: str) -> list[bytes]:
    """The captured bytes, one AMI message each (CRLF kept)."""
    data = (LIVE / f"{name}.ami").read_bytes()
    return [block + b"\r\n\r\n" for block in data.split(b"\r\n\r\n") if block.strip()]


def messages(name: str) -> list[AmiMessage]:
    out = []
    for raw in raws(name):
        msg = parse_block(raw.decode().removesuffix("\r\n\r\n"))
        assert msg is not None
        out.append(msg)
    return out


def replay(name: str, *, expect: bool = True) -> tuple[CallTracker, list[CallRecord]]:
    """Feed the capture to a tracker, the Hangup ``WAITED`` s after the decision; no tick,
    so a record must come on the events themselves."""
    records: list[CallRecord] = []
    tracker = CallTracker(InterfaceMap(OPERATORS), on_record=records.append,
                          on_progress=records.append)
    if expect:
        tracker.expect(CASES[name].uniqueid, f"d-{CASES[name].uniqueid}", "op1", DECIDED)
    for ev in messages(name):
        tracker.feed(ev, DECIDED + WAITED)
    return tracker, records


def test_the_captures_hold_only_the_hangup_for_the_caller() -> None:
    """What makes the case: none of the events the tracker follows but the Hangup names
    the caller's channel (no Dial of it, no queue, no bridge)."""
    for name, case in CASES.items():
        followed = [m.name for m in messages(name)
                    if m.get("Uniqueid") == case.uniqueid and m.name in CallTracker(
                        InterfaceMap(OPERATORS)).handlers]
        assert followed == ["Hangup"], name


@pytest.mark.parametrize("name", list(CASES))
def test_the_call_ends_abandoned_by_the_caller(name: str) -> None:
    case = CASES[name]
    tracker, records = replay(name)
    [record] = records  # the final record, on the Hangup; no live record
    assert record.uniqueid == case.uniqueid
    assert record.outcome == "abandoned" and record.hangup_by == "caller"
    assert record.ended_at == datetime.fromtimestamp(DECIDED + WAITED, UTC)
    # The wait before hanging up is the caller's hold time; the call began at the
    # decision at the latest.
    assert record.started_at == datetime.fromtimestamp(DECIDED, UTC)
    assert (record.hold_seconds, record.talk_seconds) == (3, 0)
    assert record.operator_id is None and record.answered_at is None
    assert record.decision_id == f"d-{case.uniqueid}" and record.caller_number == case.number
    assert record.fallback_cause is None and not record.transferred
    # op1 was the decision's target but never rung: not a sticky miss
    assert record.sticky_hit is None
    # Nothing is left behind: no expectation, no call.
    assert tracker.expected == 0 and tracker.calls == {}
    # ...and the call is over: a late event for it changes nothing.
    for ev in messages(name):
        tracker.feed(ev, DECIDED + 10)
    tracker.tick(DECIDED + 1e6)
    assert len(records) == 1


@pytest.mark.parametrize("name", list(CASES))
def test_a_channel_nobody_routed_is_not_recorded(name: str) -> None:
    tracker, records = replay(name, expect=False)
    tracker.tick(DECIDED + 1e6)
    assert records == [] and tracker.calls == {}


def test_expectations_of_calls_never_seen_stay_bounded() -> None:
    tracker = CallTracker(InterfaceMap(OPERATORS), remember_finished=3)
    for i in range(10):
        tracker.expect(f"u{i}", f"d{i}", None, float(i))
    assert tracker.expected == 3


@pytest.mark.parametrize("name", list(CASES))
async def test_replayed_through_the_listener(make_listener, ami_server: FakeAmiServer,
                                             name: str) -> None:
    case = CASES[name]
    listener, rec = await make_listener()
    listener.expect(case.uniqueid, "dec-1", "op1")
    assert listener.tracker.expected == 1
    await ami_server.replay(raws(name))
    [record] = await rec.wait_records(1)
    assert rec.live == [] and rec.answered == []
    assert (record.uniqueid, record.server_id, record.outcome, record.hangup_by) == (
        case.uniqueid, "ast1", "abandoned", "caller")
    assert record.ended_at is not None and record.started_at is not None
    assert record.started_at <= record.ended_at
    assert record.decision_id == "dec-1" and record.operator_id is None
    assert listener.tracker.expected == 0 and listener.tracker.calls == {}


def test_it_counts_as_an_abandoned_call_in_the_metrics() -> None:
    m = Metrics()
    for name in CASES:
        _tracker, records = replay(name)
        for r in records:
            m.on_call_record(r)
    assert m.registry.get_sample_value("callrouter_calls_total",
                                       {"outcome": "abandoned"}) == len(CASES)
    for result in ("hit", "miss"):  # the sticky hit rate counts operators rung
        assert not m.registry.get_sample_value("callrouter_targeted_calls_total",
                                               {"result": result})


# --- through the store (SQLite, and PostgreSQL when available) ----------------------


def _decision(case: Case) -> DecisionRecord:
    return DecisionRecord(
        id=f"d-{case.uniqueid}", decided_at=datetime.fromtimestamp(DECIDED, UTC),
        caller_raw=case.number, caller_number=case.number, queue="support",
        latency_ms=1.0, uniqueid=case.uniqueid,
        decision=Decision(Action.OPERATOR, "support", 0,
                          (Reason(ReasonCode.STICKY_AVAILABLE, "spoke with op1"),),
                          target_operator_id="op1", target_interface="PJSIP/1001"),
    )


async def _row(store: Store, uid: str) -> CallRow:
    async with store.transaction() as tx:
        return (await tx.session.execute(
            select(CallRow).where(CallRow.uniqueid == uid, CallRow.server_id == "default")
            .execution_options(populate_existing=True))).scalar_one()


@pytest.mark.parametrize("name", list(CASES))
async def test_the_call_row_is_closed(store: Store, name: str) -> None:
    case = CASES[name]
    await store.record(_decision(case))  # the routing decision opened the row
    opened = await _row(store, case.uniqueid)
    assert (opened.outcome, opened.ended_at) == ("in_progress", None)
    _tracker, records = replay(name)
    assert records, "no record: the row would stay in_progress"
    await store.write_call_records(records)
    row = await _row(store, case.uniqueid)
    assert row.outcome == "abandoned" and row.hangup_by == "caller"
    assert row.ended_at == datetime.fromtimestamp(DECIDED, UTC) + timedelta(seconds=WAITED)
    assert row.started_at == opened.started_at  # still the decision's time
    assert row.decision_id == f"d-{case.uniqueid}" and row.operator_id is None
    assert (row.hold_seconds, row.talk_seconds) == (3, 0)
