"""API tokens: only the SHA-256 of a token is stored; the plaintext is shown once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.ids import new_id
from callrouter.store.errors import NotFound
from callrouter.store.models import ApiTokenRow
from callrouter.store.records import IssuedToken, Role, TokenInfo
from callrouter.store.sql import utcnow

TOKEN_PREFIX = "cr_"


def token_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def to_info(row: ApiTokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        created_at=row.created_at,
        operator_id=row.operator_id,
        revoked_at=row.revoked_at,
    )


class TokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def create(
        self,
        name: str,
        role: Role,
        *,
        operator_id: str | None = None,
        now: datetime | None = None,
    ) -> IssuedToken:
        """A new random token (256 bits); the plaintext is in the result and nowhere else."""
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiTokenRow(
            id=new_id(),
            name=name,
            token_sha256=token_hash(plaintext),
            role=Role(role).value,
            operator_id=operator_id,
            created_at=now or utcnow(),
            revoked_at=None,
        )
        self._session.add(row)
        await self._session.flush()
        return IssuedToken(info=to_info(row), plaintext=plaintext)

    async def verify(self, plaintext: str) -> TokenInfo | None:
        """The token's info if it exists and is not revoked, else None.

        Looking up by the hash (not comparing plaintexts) leaks nothing through timing.
        """
        if not plaintext:
            return None
        row = await self._session.scalar(
            select(ApiTokenRow).where(
                ApiTokenRow.token_sha256 == token_hash(plaintext),
                ApiTokenRow.revoked_at.is_(None),
            )
        )
        return to_info(row) if row is not None else None

    async def revoke(self, token_id: str, now: datetime | None = None) -> TokenInfo:
        """Revoke it; revoking twice keeps the first revocation time."""
        row = await self._session.get(ApiTokenRow, token_id, populate_existing=True)
        if row is None:
            raise NotFound(f"no token {token_id!r}")
        if row.revoked_at is None:
            row.revoked_at = now or utcnow()
            await self._session.flush()
        return to_info(row)

    async def list(self, *, include_revoked: bool = True) -> list[TokenInfo]:
        stmt = select(ApiTokenRow).order_by(ApiTokenRow.created_at, ApiTokenRow.id)
        if not include_revoked:
            stmt = stmt.where(ApiTokenRow.revoked_at.is_(None))
        return [to_info(r) for r in await self._session.scalars(stmt)]
