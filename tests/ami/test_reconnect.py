"""The AMI link breaks in every way the traces show; state is rebuilt, nothing is lost."""

from __future__ import annotations

import logging

import pytest

from callrouter.domain.model import OperatorState
from callrouter.simulator.ami import FakeMember
from tests.ami.conftest import trace, until


async def test_cut_mid_event_then_restart_with_other_members(make_listener, ami_server):
    listener, rec = await make_listener()
    assert listener.presence.states()["op2"] == OperatorState.AVAILABLE
    await ami_server.emit_queue_call("5550001", "support-q", "Local/op1@operators/n", 3)
    await rec.wait_records(1)
    logins = ami_server.logins
    await ami_server.cut_mid_event()
    await until(lambda: listener.status.state != "connected")
    assert listener.presence.states()["op1"] == OperatorState.UNKNOWN  # link down: unknown
    await ami_server.restart(members=[
        FakeMember("support-q", "Local/op1@operators/n", "Operator One", status=2,
                   in_call=True),
        FakeMember("support-q", "Local/op2@operators/n", "Operator Two", paused=True,
                   paused_reason="lunch"),
        FakeMember("support-q", "PJSIP/9999", "Stranger"),
    ])
    await ami_server.wait_login(count=logins + 1)
    await listener.wait_connected(5)
    states = listener.presence.states()
    assert states == {"op1": OperatorState.IN_CALL, "op2": OperatorState.PAUSED,
                      "op3": OperatorState.LOGGED_OFF}
    assert listener.presence.details()["op2"].paused_reason == "lunch"
    [unmapped] = listener.presence.unmapped()
    assert unmapped.interface == "PJSIP/9999" and unmapped.member_name == "Stranger"
    await ami_server.emit_queue_call("5550002", "support-q", "Local/op2@operators/n", 2)
    records = await rec.wait_records(2)
    assert [r.caller_number for r in records] == ["5550001", "5550002"]
    assert len({r.uniqueid for r in records}) == 2
    assert listener.status.reconnects == 1
    assert listener.anomaly.counts.get("connection ended inside a message") == 1


async def test_shutdown_then_eof_reconnects(make_listener, ami_server):
    listener, _rec = await make_listener()
    logins = ami_server.logins
    await ami_server.replay(trace("ami-shutdown-restart-now"))
    await ami_server.wait_login(count=logins + 1)
    await listener.wait_connected(5)
    assert listener.status.state == "connected" and listener.status.reconnects == 1


async def test_dead_socket_is_detected_by_ping(make_listener, ami_server):
    listener, _rec = await make_listener(ping_interval=0.1, ping_timeout=0.3)
    logins = ami_server.logins
    ami_server.answer_pings = False
    await until(lambda: listener.status.last_error == "ping timeout", timeout=5)
    ami_server.answer_pings = True
    await ami_server.wait_login(count=logins + 1)
    await listener.wait_connected(5)


async def test_wrong_secret_is_reported_and_not_logged(make_listener, ami_server, caplog):
    listener, _rec = await make_listener(secret="wrong-secret-xyz", wait=False)
    await until(lambda: listener.status.last_error == "authentication failed")
    assert "wrong-secret-xyz" not in caplog.text
    assert "wrong-secret-xyz" not in repr(listener.settings)


async def test_server_down_at_start_then_up(make_listener, ami_server):
    port = ami_server.port
    await ami_server.stop()
    listener, _rec = await make_listener(wait=False, port=port)
    await until(lambda: listener.status.last_error is not None)
    assert listener.status.state != "connected"
    await ami_server.start()
    await listener.wait_connected(5)
    assert listener.presence.states()["op1"] == OperatorState.AVAILABLE


async def test_garbage_and_stray_cr_are_survived(make_listener, ami_server):
    listener, rec = await make_listener()
    await ami_server.send(b"this is not a header\r\n\r\nEvent: Weird\r\nCommand: NOOP\r\r\n\r\n")
    await ami_server.emit_queue_call("5550003", "support-q", "Local/op1@operators/n", 1,
                                     decision_id="d-9", target="op1")
    [record] = await rec.wait_records(1)
    assert record.decision_id == "d-9" and record.sticky_hit is True
    assert listener.status.state == "connected"


@pytest.mark.parametrize(("name", "restart"), [("ami-shutdown-restart-now", "True"),
                                               ("ami-shutdown-stop-now-with-call", "False")])
async def test_announced_shutdown_is_a_warning_and_an_unannounced_loss_an_error(
        make_listener, ami_server, caplog, name, restart):
    caplog.set_level(logging.INFO, logger="callrouter.ami")
    listener, _rec = await make_listener()
    logins = ami_server.logins
    caplog.clear()
    await ami_server.replay(trace(name))  # Shutdown, then Asterisk closes the socket
    await ami_server.wait_login(count=logins + 1)
    await listener.wait_connected(5)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    [announced] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "announced its shutdown" in announced.getMessage()
    assert f"restart={restart}" in announced.getMessage()
    assert "reconnecting" in announced.getMessage()
    [closed] = [r for r in caplog.records if "link closed" in r.getMessage()]
    assert closed.levelno == logging.INFO
    assert "reconnecting in" in closed.getMessage()

    # Logged in again, the next end of the link was not announced: an error.
    caplog.clear()
    await ami_server.drop_clients()
    await ami_server.wait_login(count=logins + 2)
    await listener.wait_connected(5)
    [lost] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert lost.levelno == logging.ERROR
    assert "without a Shutdown event" in lost.getMessage()
    assert "reconnecting in" in lost.getMessage()
    assert "announced" not in caplog.text


async def test_ping_timeout_is_an_error_that_says_why(make_listener, ami_server, caplog):
    caplog.set_level(logging.INFO, logger="callrouter.ami")
    listener, _rec = await make_listener(ping_interval=0.1, ping_timeout=0.3)
    logins = ami_server.logins
    ami_server.answer_pings = False
    await until(lambda: listener.status.last_error == "ping timeout", timeout=5)
    ami_server.answer_pings = True
    await ami_server.wait_login(count=logins + 1)
    [lost] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "(ping timeout)" in lost.getMessage()
