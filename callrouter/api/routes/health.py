"""/health (no token) and /metrics (Prometheus text)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import text

from callrouter.api import schemas as s
from callrouter.api.auth import Deps, Permission, Principal, require
from callrouter.api.deps import ApiDeps, ComponentStatus
from callrouter.api.errors import responses
from callrouter.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)
DB_TIMEOUT = 2.0

Scraper = Annotated[Principal, Depends(require(Permission.READ_STATE))]


async def _database(deps: ApiDeps) -> ComponentStatus:
    try:
        async with asyncio.timeout(DB_TIMEOUT), deps.store.transaction() as tx:
            await tx.session.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("health: database unreachable: %s: %s", type(exc).__name__, exc)
        return ComponentStatus(ok=False, state="unreachable", detail=type(exc).__name__)
    return ComponentStatus(ok=True, state="reachable")


def _component(status: ComponentStatus) -> s.ComponentOut:
    return s.ComponentOut(ok=status.ok, state=status.state, detail=status.detail)


def _safe(provider: object) -> ComponentStatus:
    try:
        status = provider()  # type: ignore[operator]
    except Exception as exc:
        return ComponentStatus(ok=False, state="error", detail=type(exc).__name__)
    assert isinstance(status, ComponentStatus)
    return status


def build_router() -> APIRouter:
    api = APIRouter(tags=["health"])

    @api.get("/health", response_model=s.HealthOut,
             responses={503: {"model": s.HealthOut, "description": "Routing does not work"}})
    async def health(deps: Deps, response: Response) -> s.HealthOut:
        """200 when routing works (database reachable, FastAGI listening), else 503.

        AMI and the routing-state replica are reported but do not decide: without AMI
        calls still route (to the pool or sticky, with unknown presence), without the
        replica they route reading each caller from the database."""
        database = await _database(deps)
        fastagi = _safe(deps.fastagi_status)
        ami = _safe(deps.ami_status)
        replica = _safe(deps.state_replica_status)
        ok = database.ok and fastagi.ok
        response.status_code = 200 if ok else 503
        return s.HealthOut(
            status="ok" if ok else "unavailable",
            database=_component(database), fastagi=_component(fastagi), ami=_component(ami),
            state_replica=_component(replica),
            rules_version=deps.rules.current.version,
        )

    return api


def build_metrics_router() -> APIRouter:
    api = APIRouter(tags=["metrics"])

    @api.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
                  "description": "Prometheus text exposition format"},
            **responses(401, 403),
        },
    )
    async def metrics(who: Scraper, deps: Deps) -> Response:
        """Decisions, sticky hits, fallbacks, escalations, latency, AMI state, call outcomes."""
        return Response(deps.metrics.render(), media_type=CONTENT_TYPE)

    return api
