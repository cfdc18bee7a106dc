"""Error bodies and handlers: one shape for 401/403/404/409, one for 422 naming the fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from callrouter.store.errors import Conflict, NotFound


class ErrorBody(BaseModel):
    detail: str


class FieldError(BaseModel):
    field: str
    location: str
    message: str


class ValidationErrorBody(BaseModel):
    """``detail`` is one line per field (``body.subject: field required``)."""

    detail: str
    errors: list[FieldError]


class ApiError(Exception):
    """A refusal raised by the services; the handler turns it into ``ErrorBody``."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class Missing(ApiError):
    status = 404


class Refused(ApiError):
    """The request was well formed but conflicts with the current state."""

    status = 409


class Invalid(ApiError):
    """A value that passed the schema but not the domain (an unparseable phone number)."""

    status = 422

    def __init__(self, field: str, message: str, location: str = "body") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.location = location
        self.message = message


AUTH_HEADERS = {"WWW-Authenticate": "Bearer"}
FORBIDDEN_DETAIL = "this token may not do that"


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the listed error codes, with their body models."""
    described = {
        401: (ErrorBody, "Missing, unknown or revoked token"),
        403: (ErrorBody, "The token's role (or operator) may not do this"),
        404: (ErrorBody, "No such object"),
        409: (ErrorBody, "Refused in the current state"),
        422: (ValidationErrorBody, "A parameter or body field is invalid; the message names it"),
        503: (ErrorBody, "Not ready"),
    }
    return {
        code: {"model": described[code][0], "description": described[code][1]} for code in codes
    }


def _field_errors(errors: Sequence[Any]) -> list[FieldError]:
    out = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc else "request"
        name = ".".join(loc[1:]) or location
        out.append(FieldError(field=name, location=location, message=str(error.get("msg", ""))))
    return out


def validation_body(fields: list[FieldError]) -> dict[str, Any]:
    detail = "; ".join(f"{f.location}.{f.field}: {f.message}" for f in fields)
    return ValidationErrorBody(detail=detail, errors=fields).model_dump()


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(validation_body(_field_errors(exc.errors())), status_code=422)


async def _on_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if isinstance(exc, Invalid):
        field = FieldError(field=exc.field, location=exc.location, message=exc.message)
        return JSONResponse(validation_body([field]), status_code=422)
    headers = AUTH_HEADERS if exc.status == 401 else None
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)


async def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


async def _on_not_found(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _on_conflict(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(NotFound, _on_not_found)
    app.add_exception_handler(Conflict, _on_conflict)
