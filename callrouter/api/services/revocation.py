"""Access that ends: a revoked token or a deactivated operator closes the streams it holds.

A request is checked once, when it comes in; an event stream lasts for hours. So a stream
asks again (``access_lost``) every ``ApiDeps.stream_recheck_seconds``, which also catches
revocations made outside this process (``callrouter token revoke``, another daemon), and
at once when this API revokes a token or deactivates an operator (``announce``, on the
``access`` topic, after the change has committed).
"""

from __future__ import annotations

from sqlalchemy import select

from callrouter.api.deps import ApiDeps
from callrouter.api.errors import Forbidden
from callrouter.api.services.queries import after_commit
from callrouter.events import ACCESS
from callrouter.store.models import ApiTokenRow
from callrouter.store.store import Transaction

TOKEN_REVOKED = "token_revoked"
OPERATOR_DEACTIVATED = "operator_deactivated"
DEACTIVATED_DETAIL = "this token's operator is deactivated"


async def access_lost(tx: Transaction, token_id: str, operator_id: str | None) -> str | None:
    """Why the token may no longer read its stream (``token_revoked``,
    ``operator_deactivated``), or None while it still may. A token or operator that no
    longer exists counts as revoked / deactivated."""
    live = await tx.session.scalar(
        select(ApiTokenRow.id).where(ApiTokenRow.id == token_id, ApiTokenRow.revoked_at.is_(None))
    )
    if live is None:
        return TOKEN_REVOKED
    if operator_id is not None:
        operator = await tx.operators.get(operator_id)
        if operator is None or not operator.active:
            return OPERATOR_DEACTIVATED
    return None


async def require_active_operator(tx: Transaction, operator_id: str) -> None:
    """403 for a deactivated operator's stream: it would only be closed again."""
    operator = await tx.operators.get(operator_id)
    if operator is None or not operator.active:
        raise Forbidden(DEACTIVATED_DETAIL)


def announce(
    deps: ApiDeps, tx: Transaction, *, token_id: str | None = None,
    operator_id: str | None = None,
) -> None:
    """Once ``tx`` commits, tell open streams of this token / operator to check again.

    After the commit, not before: the stream re-reads the database, and must see the change.
    """
    payload = {"event": "access_changed", "token_id": token_id, "operator_id": operator_id}

    def publish() -> None:
        deps.events.publish(ACCESS, payload)

    after_commit(tx, publish)
