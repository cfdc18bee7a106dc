"""/rules, /incidents, /tokens and /me."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status
from fastapi.responses import JSONResponse

from callrouter.api import schemas as s
from callrouter.api.auth import Deps, Permission, Principal, Tx, require
from callrouter.api.errors import ApiError, responses
from callrouter.api.services import admin
from callrouter.api.services.convert import token_out

Reader = Annotated[Principal, Depends(require(Permission.READ_STATE))]
Validator = Annotated[Principal, Depends(require(Permission.VALIDATE_RULES))]
Admin = Annotated[Principal, Depends(require(Permission.ADMIN))]
IncidentReader = Annotated[Principal, Depends(require(Permission.READ_INCIDENTS))]
IncidentManager = Annotated[Principal, Depends(require(Permission.INCIDENTS))]
Anyone = Annotated[Principal, Depends(require(Permission.WHOAMI))]
Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


def build_router() -> APIRouter:
    router = APIRouter(responses=responses(401, 403))

    @router.get("/rules", response_model=s.RulesOut, tags=["rules"])
    async def get_rules(who: Reader, deps: Deps) -> s.RulesOut:
        """The rules in force (every queue fully merged), and the last refused reload."""
        return admin.rules_state(deps)

    @router.post("/rules/validate", response_model=s.RulesValidateOut, tags=["rules"],
                 responses=responses(422))
    async def validate_rules(
        body: s.RulesValidateIn, who: Validator, deps: Deps
    ) -> s.RulesValidateOut:
        """Check a candidate file without putting it in force; problems name key and line."""
        return admin.validate_rules(deps, body.text)

    @router.post("/rules/reload", response_model=s.RulesOut, tags=["rules"],
                 responses=responses(409))
    async def reload_rules(who: Admin, deps: Deps, tx: Tx) -> s.RulesOut | JSONResponse:
        """Re-read the rules file; a bad file is refused (409) and the old rules stay."""
        result = await admin.reload_rules(deps, tx, who)
        if isinstance(result, ApiError):
            return JSONResponse({"detail": result.detail}, status_code=result.status)
        return result

    @router.get("/incidents", response_model=list[s.IncidentOut], tags=["incidents"],
                responses=responses(422))
    async def list_incidents(
        who: IncidentReader, deps: Deps, tx: Tx,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[s.IncidentOut]:
        return await admin.list_incidents(deps, tx, limit)

    @router.post("/incidents", response_model=s.IncidentOut, tags=["incidents"],
                 status_code=status.HTTP_201_CREATED, responses=responses(422))
    async def start_incident(
        body: s.IncidentIn, who: IncidentManager, deps: Deps, tx: Tx
    ) -> s.IncidentOut:
        """Callers in scope (number prefixes; none: everybody) hear the announcement and are
        not escalated for calling repeatedly."""
        return await admin.start_incident(deps, tx, who, body)

    @router.post("/incidents/{incident_id}/end", response_model=s.IncidentOut,
                 tags=["incidents"], responses=responses(404, 422))
    async def end_incident(
        incident_id: Id, who: IncidentManager, deps: Deps, tx: Tx
    ) -> s.IncidentOut:
        return await admin.end_incident(deps, tx, who, incident_id)

    @router.get("/tokens", response_model=list[s.TokenOut], tags=["tokens"])
    async def list_tokens(who: Admin, tx: Tx) -> list[s.TokenOut]:
        return await admin.list_tokens(tx)

    @router.post("/tokens", response_model=s.TokenCreated, tags=["tokens"],
                 status_code=status.HTTP_201_CREATED, responses=responses(409, 422))
    async def create_token(body: s.TokenCreate, who: Admin, tx: Tx) -> s.TokenCreated:
        """The plaintext is in this response only; operator tokens need ``operator_id``."""
        return await admin.create_token(tx, who, body)

    @router.post("/tokens/{token_id}/revoke", response_model=s.TokenOut, tags=["tokens"],
                 responses=responses(404, 422))
    async def revoke_token(token_id: Id, who: Admin, deps: Deps, tx: Tx) -> s.TokenOut:
        """Revoked at once; event streams open with the token end within seconds."""
        return await admin.revoke_token(deps, tx, who, token_id)

    @router.get("/me", response_model=s.MeOut, tags=["tokens"])
    async def me(who: Anyone, tx: Tx) -> s.MeOut:
        """Who this token is: role and operator (for the screen-pop page)."""
        info = token_out(who.token)
        active = None
        if info.operator_id is not None:
            operator = await tx.operators.get(info.operator_id)
            active = operator is not None and operator.active
        return s.MeOut(token_id=info.id, name=info.name, role=info.role,
                       operator_id=info.operator_id, operator_active=active)

    return router
