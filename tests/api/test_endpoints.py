"""Each endpoint does what docs/api.md says, on a real Store and the real RoutingService."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from callrouter.api import ComponentStatus
from callrouter.config.rules_holder import RulesHolder
from callrouter.domain.model import Action, Decision, OperatorState
from callrouter.domain.reasons import Reason, ReasonCode
from callrouter.service.ports import CallRecord, DecisionRecord
from callrouter.store import Store
from tests.api.conftest import ANNA_CALLER, BORIS_CALLER, NOW, World


@pytest.fixture
def api_store(store: Store) -> Store:
    """These run on SQLite and on PostgreSQL (the ``store`` fixture's two params)."""
    return store


def _decision(code: ReasonCode, target: str | None = None) -> Decision:
    action = Action.OPERATOR if target else Action.QUEUE
    return Decision(action, "support", 0, (Reason(code, str(code)),), target_operator_id=target,
                    target_interface=f"PJSIP/{target}" if target else None,
                    wait_seconds=20 if target else 0)


async def test_caller_context_has_binding_ticket_and_routing_now(world: World) -> None:
    world.presence.live["op1"] = OperatorState.AVAILABLE
    async with world.client("operator") as client:
        r = await client.get("/api/v1/callers/8 912 345-67-89")
    body = r.json()
    assert body["number"] == ANNA_CALLER
    assert [c["operator_name"] for c in body["recent_calls"]] == ["Anna"]
    assert body["recent_calls"][0]["talk_seconds"] == 120
    assert body["open_ticket"]["subject"] == "no internet"
    sticky = body["sticky"]
    assert sticky["operator_id"] == "op1"
    assert sticky["seconds_left"] == 90 * 60  # ended 30 min ago, 2 h window
    assert sticky["until"] == (NOW + timedelta(minutes=90)).isoformat().replace("+00:00", "Z")
    decision = body["routing_now"]["decision"]
    assert decision["action"] == "operator"
    assert decision["target_operator_id"] == "op1"
    assert decision["reasons"][0]["code"] == "sticky_available"


async def test_opt_out_changes_what_routing_would_do(world: World) -> None:
    world.presence.live["op1"] = OperatorState.AVAILABLE
    async with world.client("operator") as client:
        r = await client.put(f"/api/v1/callers/{ANNA_CALLER}/opt-out")
        assert r.json() == {"caller_number": ANNA_CALLER, "operator_id": "op1",
                            "opted_out": True, "changed": True}
        body = (await client.get(f"/api/v1/callers/{ANNA_CALLER}")).json()
    assert body["flags"]["opted_out_operators"] == ["op1"]
    assert body["sticky"]["blocked"] is True
    assert "opted_out" in [r["code"] for r in body["routing_now"]["decision"]["reasons"]]
    assert body["routing_now"]["decision"]["action"] == "queue"


async def test_simulate_uses_hypothetical_states_and_logs_nothing(world: World) -> None:
    async with world.client("supervisor") as client:
        busy = await client.post("/api/v1/route/simulate", json={
            "caller": "89123456789", "queue": "support", "operator_states": {"op1": "in_call"},
        })
        free = await client.post("/api/v1/route/simulate", json={
            "caller": "89123456789", "operator_states": {"op1": "available"},
        })
        withheld = await client.post("/api/v1/route/simulate", json={"caller": "anonymous"})
        log = await client.get("/api/v1/decisions")
    assert busy.json()["decision"]["reasons"][0]["code"] == "sticky_busy_wait"
    assert free.json()["decision"]["target_operator_id"] == "op1"
    assert free.json()["caller"]["number"] == ANNA_CALLER
    assert withheld.json()["decision"]["reasons"][0]["code"] == "withheld"
    assert log.json() == []


async def test_operators_list_live_state_and_current_call(world: World) -> None:
    world.presence.live["op2"] = OperatorState.IN_CALL
    start = NOW - timedelta(minutes=2)
    await world.store.write_call_records([CallRecord(
        uniqueid="u-live", caller_number=BORIS_CALLER, caller_raw=BORIS_CALLER, queue="support",
        started_at=start, answered_at=start + timedelta(seconds=5), operator_id="op2",
    )])
    async with world.client("supervisor") as sup, world.client("readonly") as ro:
        by_id = {o["id"]: o for o in (await sup.get("/api/v1/operators")).json()}
        masked = {o["id"]: o for o in (await ro.get("/api/v1/operators")).json()}
    assert by_id["op2"]["state"] == "in_call"
    assert by_id["op2"]["current_call"]["caller_number"] == BORIS_CALLER
    assert masked["op2"]["current_call"]["caller_number"] == "*********122"
    assert by_id["op1"]["state"] == "unknown"
    assert by_id["op1"]["current_call"] is None
    assert by_id["spec1"]["tier"] == "specialist"


async def test_operator_changes_invalidate_directory_after_commit(world: World) -> None:
    async with world.client("admin") as client:
        created = await client.post("/api/v1/operators", json={
            "id": "op9", "name": "Nina", "interfaces": ["PJSIP/1009"], "queues": ["support"],
        })
        duplicate = await client.post("/api/v1/operators", json={"id": "op9", "name": "N"})
        taken = await client.patch("/api/v1/operators/op1", json={"interfaces": ["PJSIP/1009"]})
        renamed = await client.patch("/api/v1/operators/op9", json={"tier": "specialist"})
        gone = await client.post("/api/v1/operators/op9/deactivate")
        missing = await client.patch("/api/v1/operators/nobody", json={"name": "x"})
    assert created.status_code == 201
    assert created.json()["interfaces"] == ["PJSIP/1009"]
    assert duplicate.status_code == 409
    assert taken.status_code == 409
    assert renamed.json()["tier"] == "specialist"
    assert renamed.json()["name"] == "Nina"
    assert gone.json()["active"] is False
    assert missing.status_code == 404
    assert world.invalidated.count("directory") == 3  # the refused changes did not commit


async def test_decisions_filters(world: World) -> None:
    records = [
        DecisionRecord(id="d1", decided_at=NOW - timedelta(hours=3), caller_raw=ANNA_CALLER,
                       caller_number=ANNA_CALLER, queue="support", latency_ms=1.0,
                       decision=_decision(ReasonCode.NEW_CALLER)),
        DecisionRecord(id="d2", decided_at=NOW - timedelta(hours=1), caller_raw=ANNA_CALLER,
                       caller_number=ANNA_CALLER, queue="support", latency_ms=1.0,
                       decision=_decision(ReasonCode.STICKY_AVAILABLE, "op1")),
        DecisionRecord(id="d3", decided_at=NOW, caller_raw=BORIS_CALLER,
                       caller_number=BORIS_CALLER, queue="support", latency_ms=1.0,
                       decision=_decision(ReasonCode.STICKY_AVAILABLE, "op2")),
    ]
    for record in records:
        await world.store.record(record)

    async def ids(**params: str | int) -> list[str]:
        async with world.client("supervisor") as client:
            r = await client.get("/api/v1/decisions", params=params)
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json()]

    assert await ids() == ["d3", "d2", "d1"]
    assert await ids(caller="8 912 345 67 89") == ["d2", "d1"]
    assert await ids(operator="op2") == ["d3"]
    assert await ids(reason="sticky_available") == ["d3", "d2"]
    since = (NOW - timedelta(hours=2)).isoformat()
    assert await ids(since=since, until=NOW.isoformat()) == ["d2"]
    assert await ids(limit=1) == ["d3"]


async def test_rules_get_validate_reload_audited(world: World, tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[rules]\ndefault_queue = "support"\n')
    world.deps.rules = RulesHolder.from_file(path)
    async with world.client("admin") as client:
        got = (await client.get("/api/v1/rules")).json()
        bad = (await client.post("/api/v1/rules/validate",
                                 json={"text": "[rules.defaults]\nring_seconds = 0\n"})).json()
        good = (await client.post("/api/v1/rules/validate",
                                  json={"text": '[rules]\ndefault_queue = "sales"\n'})).json()
        path.write_text('[rules]\ndefault_queue = "sales"\n')
        reloaded = await client.post("/api/v1/rules/reload")
        path.write_text("[rules.defaults]\nsticky_mode = 'sometimes'\n")
        refused = await client.post("/api/v1/rules/reload")
        after = (await client.get("/api/v1/rules")).json()
    assert got["version"] == 1
    assert got["rules"]["default_queue"] == "support"
    assert bad["valid"] is False
    assert "rules.defaults.ring_seconds" in bad["problems"][0]
    assert good == {"valid": True, "problems": [], "rules": good["rules"]}
    assert reloaded.json()["version"] == 2
    assert refused.status_code == 409
    assert "sticky_mode" in refused.json()["detail"]
    assert after["version"] == 2
    assert after["rules"]["default_queue"] == "sales"
    assert "sticky_mode" in after["last_rejected"]["problems"][0]
    async with world.store.transaction() as tx:
        audit = await tx.audit.list()
    actions = [(e.action, e.actor) for e in audit if e.action.startswith("rules.")]
    assert actions == [("rules.reload_refused", actions[0][1]), ("rules.reload", actions[0][1])]
    assert actions[0][1].startswith("token:test-admin#")


async def test_tickets_create_update_list(world: World) -> None:
    async with world.client("operator") as client:
        created = await client.post(f"/api/v1/callers/{ANNA_CALLER}/tickets",
                                    json={"subject": "slow wifi", "tier": "specialist"})
        ticket = created.json()["id"]
        assigned = await client.patch(f"/api/v1/tickets/{ticket}",
                                      json={"status": "pending", "assignee_id": "spec1"})
        unassigned = await client.patch(f"/api/v1/tickets/{ticket}", json={"assignee_id": None})
        listed = await client.get(f"/api/v1/callers/{ANNA_CALLER}/tickets")
    assert created.status_code == 201
    assert assigned.json()["status"] == "pending"
    assert assigned.json()["assignee_id"] == "spec1"
    assert unassigned.json()["assignee_id"] is None
    assert unassigned.json()["status"] == "pending"
    assert [t["subject"] for t in listed.json()] == ["slow wifi", "no internet"]


async def test_caller_and_call_actions(world: World) -> None:
    call = world.ids["anna_call"]
    async with world.client("operator") as op, world.client("supervisor") as sup:
        flagged = (await op.put(f"/api/v1/callers/{ANNA_CALLER}/abusive",
                                json={"abusive": True})).json()
        classed = (await sup.put(f"/api/v1/callers/{ANNA_CALLER}/class",
                                 json={"vip_class": "gold"})).json()
        noted = (await op.put(f"/api/v1/callers/{ANNA_CALLER}/note",
                              json={"note": "call after 6 pm"})).json()
        resolved = (await op.put(f"/api/v1/calls/{call}/resolved", json={"resolved": False}))
        call_note = (await op.put(f"/api/v1/calls/{call}/note", json={"note": "router reset"}))
        context = (await op.get(f"/api/v1/callers/{ANNA_CALLER}")).json()
    assert flagged["abusive"] is True
    assert flagged["abusive_flagged_by"] == "op1"
    assert classed["vip_class"] == "gold"
    assert noted["notes"] == "call after 6 pm"
    assert resolved.json()["resolved"] is False
    # The operator's note is their own (in notes); the call's own note stays empty.
    mine = {"operator_id": "op1", "operator_name": "Anna", "note": "router reset",
            "resolved": False, "updated_at": "2026-11-23T12:00:00Z"}
    assert call_note.json()["notes"] == [mine] and call_note.json()["note"] is None
    assert context["vip_class"] == "gold"
    assert context["recent_calls"][0]["resolved"] is False
    assert context["recent_calls"][0]["notes"] == [mine]
    assert context["recent_calls"][0]["handled_by"] == ["op1"]
    assert context["sticky"]["blocked"] is True  # flagged by op1: op1 is protected


async def test_incidents_start_list_end(world: World) -> None:
    async with world.client("supervisor") as client:
        started = await client.post("/api/v1/incidents", json={
            "announcement": "callrouter/outage-north", "title": "north", "prefixes": ["+7912"],
        })
        incident = started.json()["id"]
        listed = (await client.get("/api/v1/incidents")).json()
        ended = await client.post(f"/api/v1/incidents/{incident}/end")
        missing = await client.post("/api/v1/incidents/nope/end")
    assert started.status_code == 201
    assert started.json()["active"] is True
    assert incident in [i["id"] for i in listed]
    assert ended.json()["active"] is False
    assert missing.status_code == 404
    assert world.invalidated == ["incidents", "incidents"]


async def test_tokens_create_list_revoke(world: World) -> None:
    async with world.client("admin") as client:
        made = await client.post("/api/v1/tokens",
                                 json={"name": "anna-ui", "role": "operator", "operator_id": "op1"})
        no_op = await client.post("/api/v1/tokens", json={"name": "x", "role": "operator"})
        listed = (await client.get("/api/v1/tokens")).json()
    assert made.status_code == 201
    assert no_op.status_code == 409
    plaintext = made.json()["plaintext"]
    assert plaintext not in str(listed)
    async with world.client() as client:
        me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {plaintext}"})
    assert (me.json()["operator_id"], me.json()["operator_active"]) == ("op1", True)
    async with world.client("admin") as client:
        assert (await client.get("/api/v1/me")).json()["operator_active"] is None


async def test_metrics_text(world: World) -> None:
    world.deps.metrics.on_decision(DecisionRecord(
        id="d", decided_at=NOW, caller_raw="x", caller_number=None, queue="support",
        latency_ms=3.0, decision=_decision(ReasonCode.STICKY_AVAILABLE, "op1")))
    world.deps.metrics.on_call_record(CallRecord(uniqueid="u", outcome="answered",
                                                 sticky_hit=True))
    world.deps.metrics.set_ami_state("connected")
    async with world.client("readonly") as client:
        r = await client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'callrouter_decisions_total{action="operator",reason="sticky_available"} 1.0' in text
    assert 'callrouter_targeted_calls_total{result="hit"} 1.0' in text
    assert 'callrouter_calls_total{outcome="answered"} 1.0' in text
    assert "callrouter_ami_connected 1.0" in text
    assert "callrouter_decision_latency_seconds_bucket" in text


async def test_health_is_503_when_fastagi_is_down(world: World) -> None:
    world.deps.fastagi_status = lambda: ComponentStatus(ok=False, state="stopped")
    world.deps.ami_status = lambda: ComponentStatus(ok=False, state="down", detail="refused")
    async with world.client() as client:
        r = await client.get("/api/v1/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["database"]["ok"] is True
    assert body["ami"] == {"ok": False, "state": "down", "detail": "refused"}


async def test_health_ok_without_ami(world: World) -> None:
    world.deps.ami_status = lambda: ComponentStatus(ok=False, state="down")
    async with world.client() as client:
        r = await client.get("/api/v1/health")
    assert r.status_code == 200


async def test_health_reports_the_state_replica_without_failing_on_it(world: World) -> None:
    """Without the replica calls still route (reading the database), so it is reported,
    not required."""
    async with world.client() as client:
        body = (await client.get("/api/v1/health")).json()
    assert body["state_replica"]["state"] == "disabled"
    world.deps.state_replica_status = lambda: ComponentStatus(
        ok=False, state="down", detail="ConnectionRefusedError: ...")
    async with world.client() as client:
        r = await client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json()["state_replica"] == {"ok": False, "state": "down",
                                         "detail": "ConnectionRefusedError: ..."}


async def test_one_transaction_per_request(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []
    original = world.store.transaction

    def counting() -> Any:
        opened.append(1)
        return original()

    monkeypatch.setattr(world.store, "transaction", counting)
    async with world.client("admin") as client:
        r = await client.patch("/api/v1/operators/op2", json={"queues": ["support", "sales"]})
    assert r.status_code == 200
    assert len(opened) == 1  # token check and the change share the request's transaction


async def test_bindings_list(world: World) -> None:
    async with world.store.transaction() as tx:
        await tx.flags.add_opt_out(BORIS_CALLER, "op2")
    async with world.client("supervisor") as sup, world.client("readonly") as ro:
        full = (await sup.get("/api/v1/bindings")).json()
        masked = (await ro.get("/api/v1/bindings")).json()
    by_caller = {b["caller_number"]: b for b in full}
    assert set(by_caller) == {ANNA_CALLER, BORIS_CALLER}
    assert by_caller[ANNA_CALLER]["operator_name"] == "Anna"
    assert by_caller[ANNA_CALLER]["seconds_left"] == 90 * 60
    assert by_caller[ANNA_CALLER]["blocked"] is False
    assert by_caller[BORIS_CALLER]["blocked"] is True
    assert [b["caller_number"] for b in full] == [BORIS_CALLER, ANNA_CALLER]  # newest first
    assert {b["caller_number"] for b in masked} == {"*********122", "*********789"}
