"""API tokens, the audit log, incidents, and aware timestamps on both databases."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from callrouter.domain.model import Operator
from callrouter.store import NotFound, Role, Store
from callrouter.store.models import ApiTokenRow

from .builders import CALLER, NOW, ago


async def test_token_create_verify_revoke(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.operators.add(Operator("alice", "Alice", ("PJSIP/1001",)))
        issued = await tx.tokens.create("alice's browser", Role.OPERATOR, operator_id="alice")
        other = await tx.tokens.create("grafana", Role.READONLY)
        stored = await tx.session.scalar(
            select(ApiTokenRow.token_sha256).where(ApiTokenRow.id == issued.info.id)
        )
    assert stored == hashlib.sha256(issued.plaintext.encode()).hexdigest()
    assert issued.plaintext not in (stored, issued.info.id)

    async with store.transaction() as tx:
        info = await tx.tokens.verify(issued.plaintext)
        assert info == issued.info
        assert info is not None and info.role is Role.OPERATOR and info.operator_id == "alice"
        assert await tx.tokens.verify(issued.plaintext + "x") is None
        assert await tx.tokens.verify("") is None

        revoked = await tx.tokens.revoke(issued.info.id, now=NOW)
        assert revoked.revoked and revoked.revoked_at == NOW
        assert (await tx.tokens.revoke(issued.info.id)).revoked_at == NOW  # first time kept
        assert await tx.tokens.verify(issued.plaintext) is None
        assert await tx.tokens.verify(other.plaintext) == other.info

        assert [t.id for t in await tx.tokens.list(include_revoked=False)] == [other.info.id]
        assert {t.id for t in await tx.tokens.list()} == {issued.info.id, other.info.id}
        with pytest.raises(NotFound):
            await tx.tokens.revoke("nope")


async def test_audit_append_and_list(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.audit.append("admin", "rules.reload", details={"version": 3}, now=ago(hours=1))
        await tx.audit.append("sup", "flags.abusive", subject=CALLER, details={"abusive": True})
        entries = await tx.audit.list()
        assert [e.action for e in entries] == ["flags.abusive", "rules.reload"]
        assert entries[1].details == {"version": 3} and entries[1].at == ago(hours=1)
        assert [e.actor for e in await tx.audit.list(subject=CALLER)] == ["sup"]
        assert [e.actor for e in await tx.audit.list(action="rules.reload")] == ["admin"]


async def test_incidents_active_window(store: Store) -> None:
    async with store.transaction() as tx:
        outage = await tx.incidents.start(
            "callrouter/outage",
            title="Fibre cut",
            prefixes=["+7912"],
            started_by="sup",
            now=ago(hours=1),
        )
        await tx.incidents.start("callrouter/later", now=NOW + timedelta(hours=1))
    assert await store.active_incidents(NOW) == [outage]
    assert outage.prefixes == ("+7912",) and outage.title == "Fibre cut"

    async with store.transaction() as tx:
        ended = await tx.incidents.end(outage.id, now=NOW)
        assert (await tx.incidents.end(outage.id, now=NOW + timedelta(hours=5))) == ended
    assert await store.active_incidents(NOW - timedelta(minutes=1)) == [ended]
    assert await store.active_incidents(NOW) == []
    assert len(await store.active_incidents(NOW + timedelta(hours=2))) == 1


async def test_aware_datetimes_round_trip_as_utc(store: Store) -> None:
    vladivostok = timezone(timedelta(hours=10))
    local = datetime(2025, 1, 1, 9, 30, 15, 654321, tzinfo=vladivostok)
    async with store.transaction() as tx:
        ticket = await tx.tickets.create(CALLER, "tz", now=local)
    async with store.transaction() as tx:
        again = await tx.tickets.get(ticket.id)
    assert again is not None and again.created_at is not None
    assert again.created_at == local
    assert again.created_at.tzinfo is UTC
    assert again.created_at.hour == 23 and again.created_at.day == 31


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        async with store.transaction() as tx:
            await tx.tickets.create(CALLER, "naive", now=datetime(2025, 1, 1, 12, 0))
