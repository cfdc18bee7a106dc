"""``callrouter demo`` end to end: a short run leaves answered calls and decisions behind."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from rich.console import Console

from callrouter.simulator.demo import OPERATORS, run_demo
from callrouter.store.db import make_engine, make_sessionmaker
from callrouter.store.store import Store
from tests.app.conftest import free_port


async def test_demo_runs_and_leaves_history(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    output = io.StringIO()
    await asyncio.wait_for(
        run_demo(database=database, api_port=free_port(), agi_port=0, calls=6, interval=0.2,
                 console=Console(file=output, width=200), time_scale=0.001),
        20,
    )
    printed = output.getvalue()
    assert "callrouter demo" in printed and "admin dashboard" in printed
    assert sum(1 for line in printed.splitlines() if line.startswith("#")) == 6

    engine = make_engine(f"sqlite+aiosqlite:///{database}")
    try:
        store = Store(make_sessionmaker(engine))
        async with store.transaction() as tx:
            calls = await tx.calls.recent(limit=100)
            decisions = await tx.decisions.list()
    finally:
        await engine.dispose()
    known = {op.id for op in OPERATORS}
    answered = [c for c in calls if c.operator_id and c.ended_at is not None]
    assert answered, calls
    assert {c.operator_id for c in answered} <= known
    assert all(c.talk_seconds > 0 for c in answered)
    assert all(c.caller_number and c.caller_number.startswith("+7912") for c in answered)
    assert decisions
    assert {d.decision.reasons[0].code for d in decisions} <= {
        "new_caller", "sticky_available", "sticky_busy_wait", "sticky_unavailable",
        "default_queue", "escalated_repeat", "specialist_last_contact",
        "specialist_busy_wait", "specialist_unavailable",
    }


async def test_demo_does_not_wait_for_an_operator_break(tmp_path: Path) -> None:
    """Every 7th call sends an operator on an 8-20 s break; the end of a finite demo must
    not wait for the break to finish (it did: the break was gathered with the calls)."""
    output = io.StringIO()
    await asyncio.wait_for(
        run_demo(database=tmp_path / "demo.db", api_port=free_port(), agi_port=0, calls=7,
                 interval=0.05, console=Console(file=output, width=200), time_scale=0.001),
        7.5,  # a break lasts at least 8 s
    )
    assert "pauses (break)" in output.getvalue()
