"""/operators: the team with live state; admins create, change and deactivate them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from callrouter.api import schemas as s
from callrouter.api.auth import Deps, Permission, Principal, Tx, require
from callrouter.api.errors import responses
from callrouter.api.services import operators as ops

Reader = Annotated[Principal, Depends(require(Permission.READ_STATE))]
Admin = Annotated[Principal, Depends(require(Permission.ADMIN))]
OperatorIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


def build_router() -> APIRouter:
    router = APIRouter(prefix="/operators", tags=["operators"], responses=responses(401, 403))

    @router.get("", response_model=list[s.OperatorOut], responses=responses(422))
    async def list_operators(
        who: Reader, deps: Deps, tx: Tx,
        active_only: Annotated[bool, Query()] = False,
    ) -> list[s.OperatorOut]:
        """Tier, queues, live state (from AMI) and the call each one is on."""
        return await ops.list_operators(deps, tx, who, active_only)

    @router.get("/{operator_id}", response_model=s.OperatorOut, responses=responses(404, 422))
    async def get_operator(
        operator_id: OperatorIdPath, who: Reader, deps: Deps, tx: Tx
    ) -> s.OperatorOut:
        return await ops.get_operator(deps, tx, who, operator_id)

    @router.post("", response_model=s.OperatorOut, status_code=status.HTTP_201_CREATED,
                 responses=responses(409, 422))
    async def create_operator(
        body: s.OperatorCreate, who: Admin, deps: Deps, tx: Tx
    ) -> s.OperatorOut:
        return await ops.create_operator(deps, tx, who, body)

    @router.patch("/{operator_id}", response_model=s.OperatorOut,
                  responses=responses(404, 409, 422))
    async def update_operator(
        operator_id: OperatorIdPath, body: s.OperatorUpdate, who: Admin, deps: Deps, tx: Tx
    ) -> s.OperatorOut:
        """Only the fields given change."""
        return await ops.update_operator(deps, tx, who, operator_id, body)

    @router.post("/{operator_id}/deactivate", response_model=s.OperatorOut,
                 responses=responses(404, 422))
    async def deactivate_operator(
        operator_id: OperatorIdPath, who: Admin, deps: Deps, tx: Tx
    ) -> s.OperatorOut:
        """Operators are never deleted: their calls and decisions keep pointing at them."""
        return await ops.deactivate_operator(deps, tx, who, operator_id)

    return router
