"""The OpenAPI description documents what the handlers do; logs carry no numbers or tokens."""

from __future__ import annotations

import logging

from callrouter.api.logs import RedactingFilter, redact
from tests.api.conftest import World


async def test_every_operation_documents_its_errors_and_body(world: World) -> None:
    async with world.client() as client:
        spec = (await client.get("/api/v1/openapi.json")).json()
    assert set(spec["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyQuery"}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            where = f"{method.upper()} {path}"
            codes = set(op["responses"])
            success = next(c for c in codes if c.startswith("2"))
            content = op["responses"][success]["content"]
            assert any("schema" in v for v in content.values()), where
            if path == "/api/v1/health":
                assert "security" not in op
                continue
            assert {"401", "403"} <= codes, where
            assert op["security"] == [{"HTTPBearer": []}, {"APIKeyQuery": []}], where
            if op.get("parameters") or op.get("requestBody"):
                assert "422" in codes, where
                assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ValidationErrorBody"
                }, where


def test_redact_masks_numbers_and_tokens() -> None:
    line = ('127.0.0.1 - "GET /api/v1/callers/%2B79123456789?access_token=cr_secret HTTP/1.1" '
            '200 and 8 912 345-67-89')
    out = redact(line)
    assert "cr_secret" not in out
    assert "79123456789" not in out
    assert "912 345-67-89" not in out
    assert "access_token=[redacted]" in out
    assert "HTTP/1.1" in out and " 200 " in out


def test_filter_rewrites_records() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s "%s %s"', ("1.2.3.4", "GET", "/api/v1/callers/+79123456789"),
                               None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == '1.2.3.4 "GET /api/v1/callers/*********789"'
