"""The whole runtime from the composition root: FastAGI, AMI listener, call records, API.

A simulated Asterisk plays both sides (FastAGI calls in, AMI events of who answered), and
the next call of the same caller must go back to that operator, through real sockets and
a real SQLite file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from callrouter.app import Runtime, prepare_database
from callrouter.simulator.agi import run_call
from callrouter.simulator.ami import FakeAmiServer
from tests.app.conftest import (
    answered_call,
    fake_asterisk,
    free_port,
    make_settings,
    rules_holder,
    running,
    seed_operators,
    until,
)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Runtime, FakeAmiServer]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"
    async with fake_asterisk() as ami:
        # operators first: the AMI listener maps interfaces to operators at start
        settings = make_settings(url, ami.port, tmp_path, api_port=free_port())
        await prepare_database(settings)
        await seed_operators(url)
        async with running(settings, rules_holder(tmp_path)) as runtime:
            yield runtime, ami


async def agi(runtime: Runtime, caller: str | None, uniqueid: str, callingpres: int = 0,
              ) -> dict[str, str]:
    result = await run_call("127.0.0.1", runtime.fastagi.port, caller=caller, queue="support",
                            uniqueid=uniqueid, callingpres=callingpres, session_timeout=5)
    assert result.agistatus == "SUCCESS", result
    return result.variables


async def test_repeat_caller_goes_back_to_operator(
    served: tuple[Runtime, FakeAmiServer],
) -> None:
    runtime, ami = served
    first = await agi(runtime, "89123456789", "1795425001.11")
    assert first["CALLROUTER_ACTION"] == "queue"
    assert first["CALLROUTER_REASON"] == "new_caller"
    assert first["CALLROUTER_TARGET"] == "" and first["CALLROUTER_ANNOUNCE"] == ""

    await ami.emit_queue_call("89123456789", "support", "PJSIP/1002", talk_seconds=95,
                              hold_seconds=4, member_name="Boris", uniqueid="1795425001.11")
    call = await answered_call(runtime, "1795425001.11")
    assert call.operator_id == "boris" and call.talk_seconds == 95 and call.hold_seconds == 4
    assert call.caller_number == "+79123456789"
    assert call.decision_id == first["CALLROUTER_DECISION"]

    second = await agi(runtime, "+7 (912) 345-67-89", "1795425002.12")
    assert second["CALLROUTER_ACTION"] == "operator"
    assert second["CALLROUTER_REASON"] == "sticky_available"
    assert second["CALLROUTER_OPERATOR"] == "boris"
    assert second["CALLROUTER_TARGET"] == "PJSIP/1002"
    assert second["CALLROUTER_ANNOUNCE"] == "callrouter/your-operator"
    assert int(second["CALLROUTER_WAIT"]) == 15

    async with httpx.AsyncClient(timeout=5) as client:
        port = runtime.settings.api.port
        health = await client.get(f"http://127.0.0.1:{port}/api/v1/health")
    assert health.status_code == 200, health.text

    # the FastAGI server reports to the metrics, and the event loop's lag is watched
    sample = runtime.metrics.registry.get_sample_value
    assert sample("callrouter_fastagi_sessions_total", {"outcome": "ok"}) == 2
    assert sample("callrouter_fastagi_session_seconds_count") == 2
    assert sample("callrouter_fastagi_active_sessions") == 0
    assert runtime.loop_lag is not None and runtime.loop_lag._handle is not None


async def test_busy_operator_is_waited_for(served: tuple[Runtime, FakeAmiServer]) -> None:
    runtime, ami = served
    await agi(runtime, "89123456700", "1795425101.1")
    await ami.emit_queue_call("89123456700", "support", "PJSIP/1001", talk_seconds=30,
                              uniqueid="1795425101.1")
    await answered_call(runtime, "1795425101.1")
    await ami.emit_member_status("PJSIP/1001", status=2, in_call=True)

    async def busy() -> bool:
        return str(runtime.presence.states().get("anna")) == "in_call"

    await until(busy, what="anna in a call")
    v = await agi(runtime, "89123456700", "1795425102.1")
    assert v["CALLROUTER_REASON"] == "sticky_busy_wait"
    assert v["CALLROUTER_TARGET"] == "PJSIP/1001" and v["CALLROUTER_ANNOUNCE"] == ""


async def test_withheld_caller_is_not_matched_by_ami_number(
    served: tuple[Runtime, FakeAmiServer],
) -> None:
    """Presentation prohibited (35): the AGI route saw no number; AMI's CallerIDNum still
    shows it. The call record must not carry it, or the next call would be sticky."""
    runtime, ami = served
    first = await agi(runtime, "89123450000", "1795425201.1", callingpres=35)
    assert first["CALLROUTER_REASON"] == "withheld"

    await ami.emit_queue_call("89123450000", "support", "PJSIP/1001", talk_seconds=60,
                              uniqueid="1795425201.1")
    call = await answered_call(runtime, "1795425201.1")
    assert call.operator_id == "anna"
    assert call.caller_number is None

    second = await agi(runtime, "89123450000", "1795425202.1")
    assert second["CALLROUTER_ACTION"] == "queue"
    assert second["CALLROUTER_REASON"] == "new_caller"
    assert second["CALLROUTER_TARGET"] == ""


async def test_call_without_decision_is_keyed_by_normalised_number(
    served: tuple[Runtime, FakeAmiServer],
) -> None:
    """A queue call that never passed the FastAGI route still becomes history, in E.164."""
    runtime, ami = served
    await ami.emit_queue_call("8 912 345-00-01", "support", "PJSIP/1002", talk_seconds=40,
                              uniqueid="1795425301.1")
    call = await answered_call(runtime, "1795425301.1")
    assert call.caller_number == "+79123450001" and call.decision_id is None
    v = await agi(runtime, "+79123450001", "1795425302.1")
    assert v["CALLROUTER_REASON"] == "sticky_available" and v["CALLROUTER_OPERATOR"] == "boris"


async def test_the_directory_reload_settings_reach_the_listener(
    served: tuple[Runtime, FakeAmiServer],
) -> None:
    runtime, _ = served
    assert runtime.ami is not None
    assert runtime.ami.settings.directory_interval == 45.0
    assert runtime.ami.settings.directory_miss_interval == 2.0


@pytest.mark.parametrize("field", ["directory_reload_seconds", "directory_miss_seconds"])
def test_directory_reload_settings_refuse_zero(field: str) -> None:
    from pydantic import ValidationError

    from callrouter.config.settings import AmiSettings

    with pytest.raises(ValidationError):
        AmiSettings(**{field: 0})
