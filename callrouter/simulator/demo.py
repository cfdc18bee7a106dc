"""``callrouter demo``: the whole service on SQLite, driven by the built-in Asterisk simulator.

Each simulated call plays Asterisk's side of the FastAGI route (the real env block and
replies), then does what the shipped dialplan would do with the variables: ring the target
if it is free, else join the queue. The outcome is played as AMI events (the field order of
the real traces) to the service's own AMI listener, which writes the call record that the
next decision for the same caller reads. So repeat callers go back to their operator
without any Asterisk.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from callrouter.config.rules_holder import RulesHolder
from callrouter.config.settings import (
    AmiSettings,
    ApiSettings,
    DatabaseSettings,
    FastAgiSettings,
    Settings,
)
from callrouter.domain.model import Operator, Tier
from callrouter.simulator.agi import run_call
from callrouter.simulator.ami import FakeAmiServer, FakeMember

DEMO_RULES = """\
# Rules of the demo (see callrouter.sample.toml for every setting, commented).
[rules]
default_queue = "support"

[rules.defaults]
sticky_mode = "prefer"
sticky_window = "2h"
ring_seconds = 15
busy_wait_seconds = 20
specialist_queue = "specialists"
escalation_threshold = 4
max_escalations_per_day = 2

[rules.defaults.vip_classes.gold]
priority = 50

[rules.queues.support]
[rules.queues.specialists]
"""

OPERATORS = [
    Operator("anna", "Anna Petrova", ("PJSIP/1001",), Tier.FIRST_LINE, ("support",)),
    Operator("boris", "Boris Ivanov", ("PJSIP/1002",), Tier.FIRST_LINE, ("support",)),
    Operator("chen", "Chen Wei", ("PJSIP/1003",), Tier.FIRST_LINE, ("support",)),
    Operator("dina", "Dina Sokolova", ("PJSIP/1004",), Tier.FIRST_LINE, ("support",)),
    Operator("sam", "Sam Specialist", ("PJSIP/2001",), Tier.SPECIALIST, ("specialists",)),
    Operator("tara", "Tara Engineer", ("PJSIP/2002",), Tier.SPECIALIST, ("specialists",)),
]
CALLERS = [f"8912000{n:04d}" for n in range(1, 13)]  # national form, normalised to +7912...


@dataclass
class DemoState:
    busy: set[str] = field(default_factory=set)  # interfaces in a call
    paused: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    on_call: set[str] = field(default_factory=set)  # callers whose call is not over


def demo_settings(database: Path, api_port: int, agi_port: int, ami_port: int) -> Settings:
    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{database}"),
        fastagi=FastAgiSettings(port=agi_port),
        api=ApiSettings(port=api_port),
        ami=AmiSettings(enabled=True, host="127.0.0.1", port=ami_port, username="callrouter",
                        secret="demo-secret", server_id="demo"),  # type: ignore[arg-type]
    )


async def seed_store(settings: Settings) -> dict[str, str]:
    """Operators and tokens for a fresh demo database; returns {who: token}."""
    from callrouter.app import prepare_database
    from callrouter.store.db import make_engine, make_sessionmaker
    from callrouter.store.records import Role
    from callrouter.store.store import Store

    await prepare_database(settings)
    engine = make_engine(settings.database.url)
    tokens: dict[str, str] = {}
    try:
        store = Store(make_sessionmaker(engine))
        async with store.transaction() as tx:
            for op in OPERATORS:
                await tx.operators.add(op)
            tokens["admin"] = (await tx.tokens.create("demo admin", Role.ADMIN)).plaintext
            for op in OPERATORS:
                issued = await tx.tokens.create(f"demo {op.id}", Role.OPERATOR, operator_id=op.id)
                tokens[op.id] = issued.plaintext
    finally:
        await engine.dispose()
    return tokens


def reset_files(database: Path) -> Path:
    """A demo starts from nothing: its own SQLite file, journal and rules file."""
    for suffix in ("", "-wal", "-shm", ".call-journal", ".call-journal.offset"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{database}{suffix}").unlink()
    rules_file = database.with_suffix(".toml")
    rules_file.write_text(DEMO_RULES, encoding="utf-8")
    return rules_file


def members() -> list[FakeMember]:
    return [FakeMember(queue=q, interface=op.interfaces[0], name=op.name)
            for op in OPERATORS for q in op.queues]


async def run_demo(
    *,
    database: Path,
    api_port: int = 8000,
    agi_port: int = 0,
    calls: int = 0,
    interval: float = 2.0,
    seed: int = 7,
    console: Console | None = None,
    ready: asyncio.Event | None = None,
    time_scale: float = 0.03,
) -> None:
    """Run until ``calls`` calls were made (0: forever)."""
    from callrouter.app import build_runtime

    console = console or Console()
    rng = random.Random(seed)
    rules_file = reset_files(database)

    ami = FakeAmiServer(members=members(), username="callrouter", secret="demo-secret")
    await ami.start()
    settings = demo_settings(database, api_port, agi_port, ami.port)
    tokens = await seed_store(settings)
    runtime = await build_runtime(settings, RulesHolder.from_file(rules_file))
    assert runtime.ami is not None and runtime.fastagi is not None
    await runtime.ami.wait_connected(10)

    base = f"http://{settings.api.host}:{settings.api.port}"
    console.print(f"[bold]callrouter demo[/] — FastAGI on 127.0.0.1:{runtime.fastagi.port}, "
                  f"simulated AMI on 127.0.0.1:{ami.port}, store {database}")
    console.print(f"  admin dashboard  {base}/admin   token: {tokens['admin']}")
    console.print(f"  operator console {base}/console  tokens:")
    for op in OPERATORS:
        console.print(f"    {op.id:<6} {tokens[op.id]}")
    console.print("  Ctrl-C stops.\n")
    if ready is not None:
        ready.set()

    state = DemoState()
    tasks: set[asyncio.Task[None]] = set()
    pauses: set[asyncio.Task[None]] = set()  # breaks last 8-20 s: never waited for at the end
    made = 0
    try:
        while calls == 0 or made < calls:
            made += 1
            task = asyncio.create_task(
                one_call(made, rng, runtime.fastagi.port, ami, state, console, time_scale)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if made % 7 == 0:
                pause = asyncio.create_task(pause_someone(rng, ami, state, console))
                pauses.add(pause)
                pause.add_done_callback(pauses.discard)
            await asyncio.sleep(interval)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(1.5)  # let the call-record writer flush
    finally:
        for task in tasks | pauses:
            task.cancel()
        await runtime.close()
        await ami.stop()


def pick_caller(rng: random.Random, state: DemoState) -> str:
    """Mostly people who called before: that is what the demo is about. Never someone
    whose call is still going on: a person does not call twice at once, and a repeat call
    made before the first one ended has no answered call to go back to (the demo's first
    repeat calls all showed ``default_queue`` for that reason)."""
    free = [c for c in CALLERS if c not in state.on_call] or list(CALLERS)
    called = [c for c in free if state.counts.get(c)]
    if called and rng.random() < 0.6:
        return rng.choice(called)
    return rng.choice(free)


async def one_call(n: int, rng: random.Random, agi_port: int, ami: FakeAmiServer,
                   state: DemoState, console: Console, time_scale: float) -> None:
    caller = pick_caller(rng, state)
    state.counts[caller] = state.counts.get(caller, 0) + 1
    state.on_call.add(caller)
    try:
        await _one_call(n, caller, rng, agi_port, ami, state, console, time_scale)
    finally:
        state.on_call.discard(caller)


async def _one_call(n: int, caller: str, rng: random.Random, agi_port: int,
                    ami: FakeAmiServer, state: DemoState, console: Console,
                    time_scale: float) -> None:
    uniqueid = f"{time.time():.0f}.{n}"
    result = await run_call("127.0.0.1", agi_port, caller=caller, queue="support",
                            uniqueid=uniqueid, channel=f"PJSIP/trunk-{n:08x}")
    v = result.variables
    action, target = v.get("CALLROUTER_ACTION", ""), v.get("CALLROUTER_TARGET", "")
    queue, reason = v.get("CALLROUTER_QUEUE", "support"), v.get("CALLROUTER_REASON", "")
    answered_by = None
    how = ""
    if target and target not in state.busy and target not in state.paused:
        answered_by, how = target, "direct"
    elif target and target in state.busy and rng.random() < 0.5:
        await asyncio.sleep(min(3.0, 20 * time_scale * 4))  # their operator frees up in time
        if target not in state.busy:
            answered_by, how = target, "after waiting"
    free: list[str] = []
    for _ in range(20):  # the caller waits in the queue for up to ~10 s
        if answered_by is not None:
            break
        free = [m.interface for m in ami.members
                if m.queue == queue and m.interface not in state.busy | state.paused]
        if free:
            break
        await asyncio.sleep(0.5)
    if answered_by is None:
        if not free:
            console.print(f"#{n:<3} {caller}  {action:<10} {reason:<26} → no one free, "
                          "caller hangs up", highlight=False)
            return
        answered_by, how = rng.choice(free), f"from queue {queue}"
    name = next((op.name for op in OPERATORS if answered_by in op.interfaces), answered_by)
    console.print(f"#{n:<3} {caller}  {action:<10} {reason:<26} → {name} ({how})",
                  highlight=False)
    state.busy.add(answered_by)
    await ami.emit_member_status(answered_by, status=2, in_call=True)
    try:
        await ami.emit_queue_call(
            caller, queue, answered_by, talk_seconds=rng.randint(60, 400),
            hold_seconds=rng.randint(1, 15), member_name=name, uniqueid=uniqueid,
            reason=rng.choice(["caller", "agent"]), time_scale=time_scale,
        )
    finally:
        state.busy.discard(answered_by)
        await ami.emit_member_status(answered_by, status=1, in_call=False)


async def pause_someone(rng: random.Random, ami: FakeAmiServer, state: DemoState,
                        console: Console) -> None:
    op = rng.choice(OPERATORS[:4])
    interface = op.interfaces[0]
    state.paused.add(interface)
    await ami.emit_member_status(interface, paused=True, paused_reason="break")
    console.print(f"     {op.name} pauses (break)", style="dim", highlight=False)
    await asyncio.sleep(rng.uniform(8, 20))
    state.paused.discard(interface)
    await ami.emit_member_status(interface, paused=False, paused_reason="")
    console.print(f"     {op.name} is back", style="dim", highlight=False)

