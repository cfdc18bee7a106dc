"""The Store facade: one transaction per use case, implementing the service ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callrouter.aio import retrieve_exception
from callrouter.domain.model import Incident, Operator
from callrouter.service.ports import CallerSnapshot, CallRecord, DecisionRecord, RecordRejected
from callrouter.store.audit import AuditRepository
from callrouter.store.calls import CallRepository
from callrouter.store.decisions import DecisionRepository
from callrouter.store.errors import refused_for_data
from callrouter.store.flags import CallerFlagsRepository
from callrouter.store.incidents import IncidentRepository
from callrouter.store.operators import OperatorRepository
from callrouter.store.pg_snapshot import pg_snapshot
from callrouter.store.snapshot import load_snapshot
from callrouter.store.tickets import TicketRepository
from callrouter.store.tokens import TokenRepository


@dataclass(frozen=True, slots=True)
class Transaction:
    """The repositories of one unit of work, all on the same session."""

    session: AsyncSession
    operators: OperatorRepository
    calls: CallRepository
    tickets: TicketRepository
    flags: CallerFlagsRepository
    decisions: DecisionRepository
    incidents: IncidentRepository
    tokens: TokenRepository
    audit: AuditRepository

    @classmethod
    def on(cls, session: AsyncSession) -> Transaction:
        return cls(
            session=session,
            operators=OperatorRepository(session),
            calls=CallRepository(session),
            tickets=TicketRepository(session),
            flags=CallerFlagsRepository(session),
            decisions=DecisionRepository(session),
            incidents=IncidentRepository(session),
            tokens=TokenRepository(session),
            audit=AuditRepository(session),
        )


class Store:
    """Owns the sessionmaker. The ports (snapshot, operators, active_incidents, record,
    write_call_records) each run in their own transaction; for anything else use
    ``async with store.transaction() as tx:`` and the repositories on ``tx`` — it commits
    when the block ends and rolls back if it raises.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._postgres: bool | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._sessions() as session, session.begin():
            yield Transaction.on(session)

    # CallerSnapshotSource
    async def snapshot(self, number: str, now: datetime, lookback_seconds: int) -> CallerSnapshot:
        if self._postgres is None:
            self._postgres = _dialect(self._sessions) == "postgresql"
        if self._postgres:
            # The FastAGI hot path: one statement straight on the asyncpg connection, no
            # BEGIN/COMMIT (a single statement reads one consistent snapshot anyway).
            session = self._sessions()
            try:
                conn = await session.connection()  # waiting for the pool may be cancelled
                raw = await conn.get_raw_connection()
            except BaseException:
                await session.close()
                raise
            # ...the query may not: a call past its time budget is cancelled, and a query
            # cancelled mid-flight costs the connection (asyncpg drops it, the pool opens
            # a new one — under load, a reconnect storm). Finish it, discard the answer.
            read = asyncio.ensure_future(
                _read_and_close(session, raw.driver_connection, number, now, lookback_seconds)
            )
            read.add_done_callback(retrieve_exception)
            return await asyncio.shield(read)
        async with self._sessions() as session, session.begin():
            return await load_snapshot(session, number, now, lookback_seconds)

    # OperatorDirectory
    async def operators(self) -> Mapping[str, Operator]:
        async with self.transaction() as tx:
            return await tx.operators.all()

    async def operators_version(self) -> tuple[int, datetime | None]:
        """A cheap fingerprint of the directory (see ``OperatorRepository.version``)."""
        async with self.transaction() as tx:
            return await tx.operators.version()

    # IncidentSource
    async def active_incidents(self, now: datetime) -> Sequence[Incident]:
        async with self.transaction() as tx:
            return await tx.incidents.active(now)

    # DecisionLog
    async def record(self, record: DecisionRecord) -> None:
        """The decision row and the call row it opens, in one transaction."""
        await self.record_many([record])

    async def record_many(self, records: Sequence[DecisionRecord]) -> None:
        """Several decisions and their call rows in one transaction (the decision writer's
        batches: one commit for many calls under load)."""
        if not records:
            return
        try:
            async with self._sessions() as session, session.begin():
                decisions = DecisionRepository(session)
                await decisions.insert_many(records)
                await decisions.open_calls(records)
        except DBAPIError as exc:
            if refused_for_data(exc):  # the same rows would fail again
                raise RecordRejected(str(exc.orig)) from exc
            raise

    # CallRecordSink
    async def write_call_records(self, records: Sequence[CallRecord]) -> None:
        """The records in order, in one transaction; ``RecordRejected`` when one of them is
        refused for its data (nothing of the batch is written then)."""
        if not records:
            return
        try:
            async with self._sessions() as session, session.begin():
                await CallRepository(session).apply_records(records)
        except ValueError as exc:  # found invalid before writing (``apply_records``)
            raise RecordRejected(str(exc)) from exc
        except DBAPIError as exc:
            if refused_for_data(exc):
                raise RecordRejected(str(exc.orig)) from exc
            raise


def _dialect(sessions: async_sessionmaker[AsyncSession]) -> str:
    bind = sessions.kw.get("bind")
    return bind.dialect.name if bind is not None else ""


async def _read_and_close(
    session: AsyncSession, conn: object, number: str, now: datetime, lookback_seconds: int
) -> CallerSnapshot:
    try:
        return await pg_snapshot(conn, number, now, lookback_seconds)
    finally:
        await session.close()
