"""Who may do what: every role against every endpoint, one row per endpoint.

Columns: admin, supervisor, operator (op1, asking about its own caller and call),
readonly. A missing or unknown token is 401 everywhere but /health. Streams that would
answer 200 are endless, so their 200 cells are covered by test_streams.py instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import ANNA_CALLER, World

A = ANNA_CALLER
STREAM = None  # an endless 200: not requested here

# (method, path template, json body, {role: expected status})
TABLE: list[tuple[str, str, Any, tuple[int | None, int | None, int | None, int | None]]] = [
    ("GET", "/api/v1/me", None, (200, 200, 200, 200)),
    ("GET", f"/api/v1/callers/{A}", None, (200, 200, 200, 403)),
    ("GET", f"/api/v1/callers/{A}/tickets", None, (200, 200, 200, 403)),
    ("POST", f"/api/v1/callers/{A}/tickets", {"subject": "router"}, (201, 201, 201, 403)),
    ("PUT", f"/api/v1/callers/{A}/abusive", {"abusive": True}, (200, 200, 200, 403)),
    ("PUT", f"/api/v1/callers/{A}/class", {"vip_class": "gold"}, (200, 200, 403, 403)),
    ("PUT", f"/api/v1/callers/{A}/note", {"note": "prefers email"}, (200, 200, 200, 403)),
    # opt-out is "me": admin and supervisor tokens here are bound to no operator
    ("PUT", f"/api/v1/callers/{A}/opt-out", None, (403, 403, 200, 403)),
    ("DELETE", f"/api/v1/callers/{A}/opt-out", None, (403, 403, 200, 403)),
    ("GET", "/api/v1/calls/{anna_call}", None, (200, 200, 200, 403)),
    ("PUT", "/api/v1/calls/{anna_call}/resolved", {"resolved": True}, (200, 200, 200, 403)),
    ("PUT", "/api/v1/calls/{anna_call}/note", {"note": "ok"}, (200, 200, 200, 403)),
    ("PATCH", "/api/v1/tickets/{ticket}", {"status": "closed"}, (200, 200, 200, 403)),
    ("POST", "/api/v1/route/simulate", {"caller": A}, (200, 200, 403, 403)),
    ("GET", "/api/v1/decisions", None, (200, 200, 403, 200)),
    ("GET", "/api/v1/bindings", None, (200, 200, 403, 200)),
    ("GET", "/api/v1/operators", None, (200, 200, 403, 200)),
    ("GET", "/api/v1/operators/op2", None, (200, 200, 403, 200)),
    ("POST", "/api/v1/operators", {"id": "op9", "name": "Nina"}, (201, 403, 403, 403)),
    ("PATCH", "/api/v1/operators/op2", {"name": "Boris B."}, (200, 403, 403, 403)),
    ("POST", "/api/v1/operators/op2/deactivate", None, (200, 403, 403, 403)),
    ("GET", "/api/v1/rules", None, (200, 200, 403, 200)),
    ("POST", "/api/v1/rules/validate", {"text": ""}, (200, 200, 403, 403)),
    ("POST", "/api/v1/rules/reload", None, (200, 403, 403, 403)),
    ("GET", "/api/v1/incidents", None, (200, 200, 200, 200)),
    ("POST", "/api/v1/incidents", {"announcement": "outage"}, (201, 201, 403, 403)),
    ("POST", "/api/v1/incidents/{incident}/end", None, (200, 200, 403, 403)),
    ("GET", "/api/v1/tokens", None, (200, 403, 403, 403)),
    ("POST", "/api/v1/tokens", {"name": "ci", "role": "readonly"}, (201, 403, 403, 403)),
    ("POST", "/api/v1/tokens/{readonly_token}/revoke", None, (200, 403, 403, 403)),
    ("GET", "/metrics", None, (200, 200, 403, 200)),
    ("GET", "/api/v1/stream/operator", None, (403, 403, STREAM, 403)),
    ("GET", "/api/v1/stream/dashboard", None, (STREAM, STREAM, 403, STREAM)),
]
ROLES = ("admin", "supervisor", "operator", "readonly")
CASES = [
    pytest.param(method, path, body, role, expected[i], id=f"{method} {path} as {role}")
    for method, path, body, expected in TABLE
    for i, role in enumerate(ROLES)
    if expected[i] is not None
]


def _path(world: World, template: str) -> str:
    return template.format(readonly_token=world.token_ids["readonly"], **world.ids)


@pytest.mark.parametrize(("method", "path", "body", "role", "expected"), CASES)
async def test_role_table(
    world: World, method: str, path: str, body: Any, role: str, expected: int
) -> None:
    async with world.client(role) as client:
        r = await client.request(method, _path(world, path), json=body)
    assert r.status_code == expected, r.text


@pytest.mark.parametrize(("method", "path", "body"), [(m, p, b) for m, p, b, _ in TABLE])
@pytest.mark.parametrize("token", [None, "cr_not-a-token"])
async def test_no_or_unknown_token_is_401(
    world: World, method: str, path: str, body: Any, token: str | None
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with world.client() as client:
        r = await client.request(method, _path(world, path), json=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"detail": r.json()["detail"]}


async def test_revoked_token_is_401(world: World) -> None:
    async with world.client("admin") as admin:
        r = await admin.post(f"/api/v1/tokens/{world.token_ids['supervisor']}/revoke")
        assert r.status_code == 200
    async with world.client("supervisor") as supervisor:
        assert (await supervisor.get("/api/v1/me")).status_code == 401


async def test_health_needs_no_token(world: World) -> None:
    async with world.client() as client:
        r = await client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_access_token_query_parameter(world: World) -> None:
    async with world.client() as client:
        r = await client.get("/api/v1/me", params={"access_token": world.tokens["readonly"]})
    assert r.status_code == 200
    assert r.json()["role"] == "readonly"
