"""The classic AGI entry as a subprocess, the pipelining guard, and the real RoutingService."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from callrouter import channel_vars as cv
from callrouter.domain.model import OperatorState
from callrouter.domain.rules import QueueRules, Rules
from callrouter.fastagi import build_server
from callrouter.numbers import NumberNormaliser
from callrouter.service.routing import RoutingService
from callrouter.simulator.agi import ChannelModel, environment_block, parse_agi_args, run_call

from .fastagi_fakes import FakeRouter

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "agi" / "callrouter-route.agi"


def run_classic(caller: str, factory: str, *extra_env: tuple[str, str]) -> list[str]:
    """Run the script like Asterisk: env block on stdin, a reply after each command."""
    env = dict(os.environ, CALLROUTER_AGI_ROUTER=factory,
               PYTHONPATH=str(Path(__file__).parent), **dict(extra_env))
    proc = subprocess.Popen([sys.executable, str(SCRIPT)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdin and proc.stdout
    proc.stdin.write(b"".join(environment_block(network=False, caller=caller,
                                                script="callrouter-route.agi",
                                                args=["sales"])))
    proc.stdin.flush()
    model = ChannelModel(caller=caller)
    commands = []
    while line := proc.stdout.readline():
        commands.append(line.decode().rstrip("\n"))
        proc.stdin.write(model.answer(line.rstrip(b"\n")))
        proc.stdin.flush()
    proc.stdin.close()
    assert proc.wait(timeout=20) == 0
    return [f"{k}={v}" for k, v in model.set_by_agi.items()]


def test_classic_entry_routes_through_the_same_handler() -> None:
    got = run_classic("1234567", "fastagi_fakes:make_router")
    assert f"{cv.ACTION}=operator" in got and f"{cv.TARGET}=PJSIP/op7" in got
    assert f"{cv.QUEUE}=sales" in got


def test_classic_entry_fails_open_without_a_router() -> None:
    got = run_classic("1234567", "no_such_module:factory")
    assert f"{cv.ACTION}=queue" in got and f"{cv.QUEUE}=sales" in got
    assert f"{cv.REASON}=fallback_error" in got


async def test_server_never_pipelines() -> None:
    """Against the simulator's reproduction of Asterisk's fgets/poll bug, a server that sent
    two commands in one write would stall; ours gets every reply (odd values = 1 MSet + 2
    SET VARIABLEs in a row)."""
    srv = await build_server(FakeRouter(mode="odd"), port=0).start()
    try:
        res = await asyncio.wait_for(run_call("127.0.0.1", srv.port, caller="1234567",
                                              queue="support"), 5)
    finally:
        await srv.close()
    assert len(res.commands) == 3 and len(res.replies) == 3
    assert parse_agi_args(res.commands[1])[:2] == ["SET", "VARIABLE"]


class _Presence:
    def states(self) -> Mapping[str, OperatorState]:
        return {}


async def test_real_routing_service_on_sqlite(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    service = RoutingService(
        rules=lambda: Rules(defaults=QueueRules(), default_queue="support"),
        numbers=NumberNormaliser("RU"),
        snapshots=sqlite_store,
        directory=sqlite_store,
        presence=_Presence(),
        incidents=sqlite_store,
    )
    srv = await build_server(service, port=0, budget=2.0).start()
    try:
        new = await run_call("127.0.0.1", srv.port, caller="+79123456789", queue="support")
        withheld = await run_call("127.0.0.1", srv.port, caller="anonymous", callingpres=35,
                                  queue="support", uniqueid="1795425099.15")
    finally:
        await srv.close()
    assert new.variables[cv.ACTION] == "queue"
    assert new.variables[cv.REASON] == "new_caller"
    assert new.variables[cv.QUEUE] == "support"
    assert withheld.variables[cv.ACTION] == "queue"
    assert withheld.variables[cv.REASON] == "withheld"


def test_classic_entry_quiets_only_the_abandoned_connection_error() -> None:
    """Asterisk shows an AGI's stderr: the expected leftover of a router build abandoned at
    its time limit is not printed there; any other loop error still is."""
    from callrouter.fastagi.classic import _quiet_abandoned

    seen: list[dict[str, object]] = []

    class Loop:
        def default_exception_handler(self, context: dict[str, object]) -> None:
            seen.append(context)

    loop = Loop()
    _quiet_abandoned(loop, {"message": "Future exception was never retrieved",  # type: ignore[arg-type]
                            "exception": ConnectionError("unexpected connection_lost() call")})
    assert seen == []
    other = {"message": "Task exception was never retrieved", "exception": ValueError("x")}
    _quiet_abandoned(loop, other)  # type: ignore[arg-type]
    assert seen == [other]
