"""Bearer tokens and roles: who is calling, and the one table of what each role may do.

A token comes in ``Authorization: Bearer <token>`` or, for browsers' ``EventSource``
(which cannot set headers), as ``?access_token=<token>``. Only its SHA-256 is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from callrouter.api.deps import ApiDeps
from callrouter.api.errors import FORBIDDEN_DETAIL, Forbidden, Unauthorized
from callrouter.store.records import Role, TokenInfo
from callrouter.store.store import Transaction


class Permission(StrEnum):
    """What an endpoint needs. Operators' access to callers is narrowed further by
    ``callrouter.api.services.access`` (only callers of their own calls)."""

    READ_STATE = "read_state"  # operators list, incidents list, rules, metrics, dashboard
    READ_DECISIONS = "read_decisions"  # the audit log (caller numbers masked for readonly)
    READ_CALLER = "read_caller"  # a caller's context, tickets
    SIMULATE = "simulate"
    CALLER_ACTIONS = "caller_actions"  # flag abusive, note, tickets, call resolved/note
    SET_CLASS = "set_class"  # a caller's VIP class
    OPT_OUT = "opt_out"  # "do not route this caller to me": the token's own operator
    INCIDENTS = "incidents"  # start/end
    VALIDATE_RULES = "validate_rules"
    ADMIN = "admin"  # rules reload, operators, tokens
    READ_INCIDENTS = "read_incidents"  # every role: operators hear the announcement too
    OWN_STREAM = "own_stream"
    WHOAMI = "whoami"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.SUPERVISOR: frozenset(Permission) - {P.ADMIN},
    Role.OPERATOR: frozenset(
        {P.READ_CALLER, P.CALLER_ACTIONS, P.OPT_OUT, P.OWN_STREAM, P.WHOAMI, P.READ_INCIDENTS}
    ),
    Role.READONLY: frozenset({P.READ_STATE, P.READ_DECISIONS, P.READ_INCIDENTS, P.WHOAMI}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified token behind a request."""

    token: TokenInfo

    @property
    def role(self) -> Role:
        return self.token.role

    @property
    def operator_id(self) -> str | None:
        return self.token.operator_id

    @property
    def is_operator(self) -> bool:
        """Narrowed to their own callers: operator-role tokens."""
        return self.token.role is Role.OPERATOR

    @property
    def sees_pii(self) -> bool:
        return self.token.role is not Role.READONLY

    @property
    def actor(self) -> str:
        """Who did it, for the audit log: the token's name and id."""
        return f"token:{self.token.name}#{self.token.id[:8]}"

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.token.role]


def get_deps(request: Request) -> ApiDeps:
    deps: ApiDeps = request.app.state.deps
    return deps


Deps = Annotated[ApiDeps, Depends(get_deps)]


async def transaction(deps: Deps) -> AsyncIterator[Transaction]:
    """The request's one unit of work; commits when the endpoint returns, before the response."""
    async with deps.store.transaction() as tx:
        yield tx


Tx = Annotated[Transaction, Depends(transaction, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="A token from `callrouter token create`")
_query = APIKeyQuery(
    name="access_token",
    auto_error=False,
    description="The same token as a query parameter, for EventSource (cannot set headers)",
)


async def authenticate(
    tx: Tx,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    query_token: Annotated[str | None, Security(_query)],
) -> Principal:
    plaintext = bearer.credentials if bearer is not None else query_token
    if not plaintext:
        raise Unauthorized("a bearer token is required")
    info = await tx.tokens.verify(plaintext)
    if info is None:
        raise Unauthorized("unknown or revoked token")
    return Principal(info)


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency giving the Principal if its role has ``permission``, else 403."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.may(permission):
            raise Forbidden(FORBIDDEN_DETAIL)
        return principal

    check.__name__ = f"require_{permission.value}"
    return check
