"""Serves ``/console``, ``/admin`` and ``/static/...``: plain files, no build step, no templating.

The pages hold no data; they fetch it from ``/api/v1`` with the token the user signs in
with. The files are read from the package directory at request time, so nothing is built
or loaded at import time. Routes are kept out of the OpenAPI description: they are pages,
not API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

STATIC_DIR = Path(__file__).resolve().parent / "static"

# The pages load only their own scripts and styles and talk only to this origin, so a
# script injected through server text (which the pages never parse as HTML anyway)
# could neither run nor send anything elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The pages change with the package; a stale cached console after an upgrade is
    # worse than one conditional request per load.
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}


def _page(name: str) -> FileResponse:
    return FileResponse(
        STATIC_DIR / name, media_type=MEDIA_TYPES[".html"], headers=PAGE_HEADERS
    )


def _static_file(path: str) -> Path:
    """The file under ``STATIC_DIR`` that ``path`` names, or 404; never anything outside it."""
    candidate = (STATIC_DIR / path).resolve()
    if not candidate.is_relative_to(STATIC_DIR) or not candidate.is_file():
        raise HTTPException(status_code=404, detail="Not Found")
    if candidate.suffix not in MEDIA_TYPES:
        raise HTTPException(status_code=404, detail="Not Found")
    return candidate


def web_router() -> APIRouter:
    """The pages' routes, to ``include_router`` into the side service's app."""
    router = APIRouter(include_in_schema=False)

    @router.get("/console")
    async def console() -> FileResponse:
        return _page("console.html")

    @router.get("/admin")
    async def admin() -> FileResponse:
        return _page("admin.html")

    @router.get("/console/")
    async def console_slash() -> RedirectResponse:
        return RedirectResponse("/console", status_code=308)

    @router.get("/admin/")
    async def admin_slash() -> RedirectResponse:
        return RedirectResponse("/admin", status_code=308)

    @router.get("/static/{path:path}")
    async def static(path: str) -> FileResponse:
        file = _static_file(path)
        return FileResponse(file, media_type=MEDIA_TYPES[file.suffix], headers=PAGE_HEADERS)

    return router
