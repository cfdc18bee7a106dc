"""The ``callrouter`` command line: serve, demo, db, rules, operators, history, route, tokens."""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from callrouter.config.errors import RulesError, SettingsError
from callrouter.config.rules_file import load_rules
from callrouter.config.rules_holder import RulesHolder
from callrouter.config.rules_schema import QUEUE_NAME, QUEUE_NAME_HINT
from callrouter.config.settings import Settings, load_settings
from callrouter.domain.interfaces import check_interface
from callrouter.domain.model import Operator, OperatorState, Outcome, TicketStatus, Tier
from callrouter.numbers import NumberError, NumberNormaliser
from callrouter.service.ports import CallRecord
from callrouter.store.errors import StoreError
from callrouter.store.store import Store, Transaction

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__,
                  pretty_exceptions_show_locals=False)
db_app = typer.Typer(no_args_is_help=True, help="Database migrations.")
rules_app = typer.Typer(no_args_is_help=True, help="Routing rules files.")
ops_app = typer.Typer(no_args_is_help=True, help="Operators and their Asterisk interfaces.")
calls_app = typer.Typer(no_args_is_help=True, help="Call history (normally written by AMI).")
tickets_app = typer.Typer(no_args_is_help=True, help="Built-in tickets.")
callers_app = typer.Typer(no_args_is_help=True, help="Caller flags: VIP class, abusive, opt-out.")
incidents_app = typer.Typer(no_args_is_help=True, help="Mass-outage incidents.")
token_app = typer.Typer(no_args_is_help=True, help="API bearer tokens.")
for sub, name in [
    (db_app, "db"), (rules_app, "rules"), (ops_app, "operators"), (calls_app, "calls"),
    (tickets_app, "tickets"), (callers_app, "callers"), (incidents_app, "incidents"),
    (token_app, "token"),
]:
    app.add_typer(sub, name=name)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file (default: $CALLROUTER_CONFIG)",
                 envvar="CALLROUTER_CONFIG"),
]


def fail(message: str) -> typer.Exit:
    """One clear line on stderr, exit 2; never a traceback for a user's mistake."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def friendly(func: Callable[..., T]) -> Callable[..., T]:
    """Turn the errors a user can cause into one line each."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except (SettingsError, RulesError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (StoreError, NumberError, ValueError) as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            raise fail(f"cannot reach a required service: {exc}") from None

    return wrapper


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def settings_and_rules(config: Path | None) -> tuple[Settings, RulesHolder]:
    settings = load_settings(config)
    holder = RulesHolder.from_file(settings.config_file)
    return settings, holder


async def with_store(settings: Settings, use: Callable[[Any], Awaitable[T]]) -> T:
    from callrouter.app import prepare_database
    from callrouter.store.db import make_engine, make_sessionmaker
    from callrouter.store.store import Store

    await prepare_database(settings)
    engine = make_engine(settings.database.url)
    try:
        return await use(Store(make_sessionmaker(engine)))
    finally:
        await engine.dispose()


def in_transaction(settings: Settings, action: Callable[[Transaction], Awaitable[T]]) -> T:
    """Run one store use case in one transaction (commit on success, rollback on error)."""

    async def use(store: Store) -> T:
        async with store.transaction() as tx:
            return await action(tx)

    return run(with_store(settings, use))


def normaliser(settings: Settings) -> NumberNormaliser:
    return NumberNormaliser(settings.numbers.default_region, settings.numbers.shared_numbers)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


# --- serve / demo ------------------------------------------------------------------------


@app.command()
@friendly
def serve(config: ConfigOpt = None) -> None:
    """Run the FastAGI route, the AMI listener (if enabled) and the HTTP side service."""
    settings, holder = settings_and_rules(config)
    setup_logging(settings.log_level)

    async def main() -> None:
        from callrouter.app import build_runtime, serve_forever, settle_heap

        runtime = await build_runtime(settings, holder)
        settle_heap()
        out.print(
            f"callrouter serving: FastAGI {settings.fastagi.host}:{runtime.fastagi.port}, "
            f"HTTP http://{settings.api.host}:{settings.api.port}, "
            f"store {settings.database.safe_url}, "
            f"AMI {'on' if runtime.ami else 'off'}"
        )
        await serve_forever(runtime)

    from callrouter import aio

    aio.run(main())  # uvloop where installed: the FastAGI route's per-call cost halves


@app.command()
@friendly
def demo(
    calls: Annotated[int, typer.Option(help="calls to simulate (0: until Ctrl-C)")] = 0,
    interval: Annotated[float, typer.Option(help="seconds between simulated calls")] = 2.0,
    database: Annotated[Path, typer.Option(help="SQLite file")] = Path("callrouter-demo.db"),
    api_port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    agi_port: Annotated[int, typer.Option(help="FastAGI port (0: any free)")] = 0,
    seed: Annotated[int, typer.Option(help="random seed for the call generator")] = 7,
) -> None:
    """Run the service on SQLite with the built-in Asterisk simulator driving demo calls."""
    from callrouter.simulator.demo import run_demo

    setup_logging("WARNING")
    from callrouter import aio

    aio.run(run_demo(database=database, api_port=api_port, agi_port=agi_port, calls=calls,
                 interval=interval, seed=seed, console=out))


# --- db / rules ------------------------------------------------------------------------


@db_app.command("upgrade")
@friendly
def db_upgrade(config: ConfigOpt = None) -> None:
    """Bring the database to the newest schema."""
    from callrouter.store.migrate import upgrade

    settings = load_settings(config)
    run(upgrade(settings.database.url))
    out.print(f"database {settings.database.safe_url} is at the newest schema")


@rules_app.command("check")
@friendly
def rules_check(file: Path) -> None:
    """Validate a rules file; prints one line per problem."""
    rules = load_rules(file)
    queues = ", ".join(sorted(rules.queues)) or "(defaults only)"
    out.print(f"{file}: OK — default queue {rules.default_queue!r}; queues: {queues}")


# --- operators ---------------------------------------------------------------------------


@ops_app.command("add")
@friendly
def operators_add(
    operator_id: str,
    name: Annotated[str, typer.Option(help="display name")],
    interface: Annotated[
        list[str], typer.Option(help="Asterisk interface Tech/resource, e.g. PJSIP/1001")
    ],
    tier: Annotated[Tier, typer.Option()] = Tier.FIRST_LINE,
    queue: Annotated[list[str] | None, typer.Option(help="queue membership")] = None,
    config: ConfigOpt = None,
) -> None:
    """Add an operator (one or more --interface, any number of --queue)."""
    for given in interface:
        try:
            check_interface(given)
        except ValueError as exc:
            # escaped: the value may hold '[', which rich would read as markup
            raise fail(f"--interface {escape(repr(given))}: {escape(str(exc))}") from None
    settings = load_settings(config)
    op = Operator(operator_id, name, tuple(interface), tier, tuple(queue or ()))

    added = in_transaction(settings, lambda tx: tx.operators.add(op))
    out.print(f"added {added.id} ({added.name}, {added.tier}) on {', '.join(added.interfaces)}")


@ops_app.command("list")
@friendly
def operators_list(config: ConfigOpt = None) -> None:
    """List operators."""
    settings = load_settings(config)

    table = Table("id", "name", "tier", "interfaces", "queues", "active")
    for op in in_transaction(settings, lambda tx: tx.operators.list()):
        table.add_row(op.id, op.name, str(op.tier), ", ".join(op.interfaces),
                      ", ".join(op.queues), "yes" if op.active else "no")
    out.print(table)


@ops_app.command("deactivate")
@friendly
def operators_deactivate(operator_id: str, config: ConfigOpt = None) -> None:
    """Deactivate an operator (kept for history; never a routing target)."""
    settings = load_settings(config)

    op = in_transaction(settings, lambda tx: tx.operators.deactivate(operator_id))
    out.print(f"deactivated {op.id}")


# --- history, tickets, flags, incidents (for trying the rules by hand) -------------------


def parse_ago(text: str) -> timedelta:
    """'40m', '2h', '1h30m', '90s' or plain minutes."""
    from callrouter.config.durations import parse_duration

    try:
        return timedelta(seconds=parse_duration(text if not text.isdigit() else f"{text}m"))
    except ValueError:
        raise ValueError(f"--ended {text!r}: expected 40m, 2h, 1h30m, 90s or minutes") from None


async def require_operator(tx: Any, operator_id: str | None, option: str) -> None:
    """A typo in an operator id is refused here, not stored (or a foreign-key traceback)."""
    if operator_id and await tx.operators.get(operator_id) is None:
        raise ValueError(f"{option} {operator_id!r}: no such operator (see operators list)")


@calls_app.command("add")
@friendly
def calls_add(
    caller: str,
    operator: Annotated[str | None, typer.Option(help="operator who answered")] = None,
    queue: Annotated[str, typer.Option()] = "support",
    ended: Annotated[str, typer.Option(help="how long ago the call ended: 40m, 2h")] = "30m",
    talk: Annotated[int, typer.Option(help="talk seconds")] = 180,
    outcome: Annotated[Outcome, typer.Option()] = Outcome.ANSWERED,
    resolved: Annotated[bool | None, typer.Option("--resolved/--unresolved")] = None,
    config: ConfigOpt = None,
) -> None:
    """Record a past call (what the AMI listener would write) to try the rules."""
    settings = load_settings(config)
    number = normaliser(settings).normalise(caller)
    end = datetime.now(UTC) - parse_ago(ended)
    start = end - timedelta(seconds=talk + 20)
    uniqueid = f"cli-{uuid.uuid4().hex[:12]}"
    record = CallRecord(
        uniqueid=uniqueid, caller_raw=caller, caller_number=number, queue=queue,
        started_at=start, answered_at=start + timedelta(seconds=20) if operator else None,
        ended_at=end, operator_id=operator, talk_seconds=talk if operator else 0,
        outcome=str(outcome),
    )

    async def use(store: Any) -> str:
        async with store.transaction() as tx:
            await require_operator(tx, operator, "--operator")
        await store.write_call_records([record])
        async with store.transaction() as tx:
            call = await tx.calls.get_by_uniqueid(uniqueid)
            if resolved is not None and call is not None:
                await tx.calls.mark_resolved(call.id, resolved)
            return call.id if call is not None else uniqueid

    call_id = run(with_store(settings, use))
    out.print(f"call {call_id}: {number} {outcome} with {operator or 'nobody'}, ended {ended} ago")


@tickets_app.command("add")
@friendly
def tickets_add(
    caller: str,
    subject: str,
    status: Annotated[TicketStatus, typer.Option()] = TicketStatus.OPEN,
    tier: Annotated[Tier, typer.Option()] = Tier.FIRST_LINE,
    assignee: Annotated[str | None, typer.Option(help="operator id")] = None,
    config: ConfigOpt = None,
) -> None:
    """Open a ticket for a caller."""
    settings = load_settings(config)
    number = normaliser(settings).normalise(caller)

    async def use(store: Any) -> Any:
        async with store.transaction() as tx:
            await require_operator(tx, assignee, "--assignee")
            return await tx.tickets.create(number, subject, status=status, tier=tier,
                                           assignee_id=assignee)

    ticket = run(with_store(settings, use))
    out.print(f"ticket {ticket.id} for {number}: {ticket.status}, {ticket.tier}, "
              f"assignee {ticket.assignee_id or '-'}")


@callers_app.command("flag")
@friendly
def callers_flag(
    caller: str,
    vip: Annotated[str | None, typer.Option(help="VIP class name ('' clears)")] = None,
    abusive: Annotated[bool | None, typer.Option("--abusive/--not-abusive")] = None,
    by: Annotated[str, typer.Option(help="who sets the flag (operator id)")] = "cli",
    opt_out: Annotated[str | None, typer.Option(help="operator id: do not route to me")] = None,
    note: Annotated[str | None, typer.Option()] = None,
    config: ConfigOpt = None,
) -> None:
    """Set a caller's VIP class, abusive flag, an operator's opt-out, or notes."""
    settings = load_settings(config)
    number = normaliser(settings).normalise(caller)

    async def use(store: Any) -> Any:
        async with store.transaction() as tx:
            await require_operator(tx, opt_out, "--opt-out")
            if vip is not None:
                await tx.flags.set_vip_class(number, vip or None)
            if abusive is not None:
                await tx.flags.set_abusive(number, abusive, by)
            if opt_out:
                await tx.flags.add_opt_out(number, opt_out)
            if note is not None:
                await tx.flags.set_notes(number, note)
            await tx.audit.append(actor=f"cli:{by}", action="caller.flag", subject=number,
                                  details={"vip": vip, "abusive": abusive, "opt_out": opt_out})
            return await tx.flags.get(number)

    flags = run(with_store(settings, use))
    out.print(f"{number}: vip={flags.vip_class or '-'} abusive={flags.abusive} "
              f"opted out: {', '.join(sorted(flags.opted_out_operators)) or '-'}")


@incidents_app.command("start")
@friendly
def incidents_start(
    announcement: str,
    title: Annotated[str, typer.Option()] = "",
    prefix: Annotated[list[str] | None, typer.Option(help="E.164 prefix in scope")] = None,
    config: ConfigOpt = None,
) -> None:
    """Start an incident: callers in scope hear the announcement, no count escalation."""
    settings = load_settings(config)

    incident = in_transaction(settings, lambda tx: tx.incidents.start(
        announcement, title=title, prefixes=prefix or (), started_by="cli"))
    out.print(f"incident {incident.id} started ({', '.join(incident.prefixes) or 'all callers'})")


@incidents_app.command("end")
@friendly
def incidents_end(incident_id: str, config: ConfigOpt = None) -> None:
    """End an incident."""
    settings = load_settings(config)

    in_transaction(settings, lambda tx: tx.incidents.end(incident_id))
    out.print(f"incident {incident_id} ended")


# --- route ---------------------------------------------------------------------------------


def parse_states(values: list[str]) -> dict[str, OperatorState]:
    states: dict[str, OperatorState] = {}
    for item in values:
        op, sep, state = item.partition("=")
        if not sep:
            raise ValueError(f"--state {item!r}: expected OPERATOR=STATE")
        try:
            states[op] = OperatorState(state)
        except ValueError:
            choices = ", ".join(s.value for s in OperatorState)
            raise ValueError(f"--state {item!r}: {state!r} is not one of {choices}") from None
    return states


@app.command()
@friendly
def route(
    caller: str,
    queue: Annotated[str | None, typer.Option(help="entry queue (default: rules' default)")] = None,
    state: Annotated[list[str] | None, typer.Option(help="OPERATOR=STATE, repeatable")] = None,
    presence: Annotated[
        OperatorState, typer.Option(help="state of operators not named by --state")
    ] = OperatorState.AVAILABLE,
    config: ConfigOpt = None,
) -> None:
    """Print what routing would do for CALLER now, and why, from the store."""
    settings, holder = settings_and_rules(config)
    rules = holder.rules
    entry = queue or rules.default_queue
    if not QUEUE_NAME.fullmatch(entry):
        raise fail(f"queue {entry!r}: expected {QUEUE_NAME_HINT}")
    numbers = normaliser(settings)
    parsed = numbers.caller(caller)
    if parsed.number is None and not parsed.withheld:
        numbers.normalise(caller)  # raises NumberError with the reason

    explicit = parse_states(state or [])

    async def use(store: Any) -> Any:
        from callrouter.service.routing import RoutingService

        operators = await store.operators()
        states = {op: presence for op in operators} | explicit
        service = RoutingService(
            rules=lambda: rules, numbers=numbers, snapshots=store, directory=store,
            presence=_Static(states), incidents=store,
        )
        return await service.explain(caller, entry, states=states)

    ctx, decision = run(with_store(settings, use))
    who = ctx.caller.number or f"{caller!r} (not identified)"
    out.print(f"[bold]{who}[/] calling [bold]{entry}[/]: "
              f"[bold green]{decision.action}[/]", highlight=False)
    if decision.target_interface:
        out.print(f"  target    {decision.target_operator_id} on {decision.target_interface}, "
                  f"wait {decision.wait_seconds} s, then queue {decision.queue}")
    else:
        out.print(f"  queue     {decision.queue}")
    out.print(f"  priority  {decision.priority}")
    out.print(f"  announce  {decision.announcement or '-'}")
    out.print("  reasons:")
    for reason in decision.reasons:
        out.print(f"    {reason.code:<32} {reason.text}", highlight=False)
    assumed = "" if not ctx.operators else f" (operators assumed {presence} unless --state)"
    out.print(f"  history   {len(ctx.recent_calls)} recent calls{assumed}", highlight=False)
    if rules.queues and entry not in rules.queues:
        # routing keeps an entry queue it has no table for (a real queue with no
        # overrides); say so, since a typo looks the same
        known = ", ".join(sorted(rules.queues))
        out.print(f"  note      the rules have no table for {entry!r} (they have {known}): "
                  "the defaults apply, and Asterisk must know the queue", highlight=False)


class _Static:
    def __init__(self, states: dict[str, OperatorState]) -> None:
        self._states = states

    def states(self) -> dict[str, OperatorState]:
        return self._states


# --- tokens --------------------------------------------------------------------------------


@token_app.command("create")
@friendly
def token_create(
    role: Annotated[str, typer.Option(help="admin, supervisor, operator or readonly")],
    operator: Annotated[str | None, typer.Option(help="operator id (role operator)")] = None,
    name: Annotated[str, typer.Option(help="what the token is for")] = "",
    config: ConfigOpt = None,
) -> None:
    """Create an API token; the token is printed once and stored only as a hash."""
    from callrouter.store.records import Role

    try:
        chosen = Role(role)
    except ValueError:
        choices = "admin, supervisor, operator, readonly"
        raise fail(f"--role {role!r}: expected one of {choices}") from None
    if chosen is Role.OPERATOR and not operator:
        raise fail("--role operator needs --operator ID")
    settings = load_settings(config)

    async def use(store: Any) -> Any:
        async with store.transaction() as tx:
            if operator and await tx.operators.get(operator) is None:
                raise ValueError(f"unknown operator {operator!r}")
            return await tx.tokens.create(name or f"{role} token", chosen, operator_id=operator)

    issued = run(with_store(settings, use))
    err.print(f"token {issued.info.id} ({issued.info.role}); shown once:")
    out.print(issued.plaintext)


@token_app.command("list")
@friendly
def token_list(config: ConfigOpt = None) -> None:
    """List tokens (never their values)."""
    settings = load_settings(config)

    table = Table("id", "name", "role", "operator", "created", "revoked")
    for t in in_transaction(settings, lambda tx: tx.tokens.list()):
        table.add_row(t.id, t.name, str(t.role), t.operator_id or "-",
                      f"{t.created_at:%Y-%m-%d %H:%M}",
                      f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "-")
    out.print(table)


@token_app.command("revoke")
@friendly
def token_revoke(token_id: str, config: ConfigOpt = None) -> None:
    """Revoke a token."""
    settings = load_settings(config)

    in_transaction(settings, lambda tx: tx.tokens.revoke(token_id))
    out.print(f"token {token_id} revoked")


def main() -> None:
    app()
