"""``create_app(deps)``: the FastAPI application, its routers under /api/v1, error handlers."""

from __future__ import annotations

from fastapi import FastAPI

from callrouter.api import errors, logs
from callrouter.api.deps import ApiDeps
from callrouter.api.routes import admin, callers, calls, health, operators, routing, streams

API_PREFIX = "/api/v1"
DESCRIPTION = """\
Routing state and caller context for callrouter.

Every endpoint but `/api/v1/health` needs a token from `callrouter token create`, sent as
`Authorization: Bearer <token>`, or as `?access_token=<token>` where headers cannot be set
(browsers' EventSource). Missing or unknown token: 401; a role that may not: 403.
"""


def create_app(deps: ApiDeps) -> FastAPI:
    """The application over ``deps``; the composition root serves it with uvicorn."""
    app = FastAPI(
        title="callrouter",
        version="1",
        description=DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.deps = deps
    errors.install(app)
    # The one registration point: every router, in one list.
    for build in (
        health.build_router,
        callers.build_router,
        calls.build_router,
        routing.build_router,
        operators.build_router,
        admin.build_router,
        streams.build_router,
    ):
        app.include_router(build(), prefix=API_PREFIX)
    app.include_router(health.build_metrics_router())
    if deps.redact_access_log:
        logs.install()
    return app
