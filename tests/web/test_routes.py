"""web_router(): the pages and their files, and nothing outside the static folder."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from callrouter.domain.reasons import ReasonCode
from callrouter.web.routes import STATIC_DIR, web_router


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(web_router())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.mark.parametrize(("path", "kind"), [
    ("/console", "text/html"), ("/admin", "text/html"),
    ("/static/js/console.js", "text/javascript"), ("/static/css/app.css", "text/css"),
])
async def test_pages_and_files_are_served_with_a_strict_policy(
    client: httpx.AsyncClient, path: str, kind: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(kind)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", [
    "/static/../routes.py", "/static/%2e%2e/routes.py", "/static/..%2froutes.py",
    "/static/js/missing.js", "/static/js", "/static/",
])
async def test_nothing_outside_the_static_folder(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 404


def test_pages_are_not_in_the_openapi_description() -> None:
    app = FastAPI()
    app.include_router(web_router())
    assert app.openapi()["paths"] == {}


def test_scripts_never_parse_text_as_html() -> None:
    """Server text reaches the DOM as text only: no innerHTML and friends, no eval."""
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
    )
    for script in (STATIC_DIR / "js").glob("*.js"):
        code = "\n".join(line.split("//")[0] for line in script.read_text().splitlines())
        assert not forbidden.search(code), script.name


def test_pages_have_no_inline_script_or_style() -> None:
    """The CSP forbids them; a page that used one would break silently."""
    for page in STATIC_DIR.glob("*.html"):
        text = page.read_text()
        assert "<script>" not in text and "<style" not in text and " style=" not in text
        assert re.search(r"<script [^>]*src=", text), page.name


def test_admin_reason_filter_offers_every_reason_code() -> None:
    """The decision log's reason filter lists the codes by hand: a new code must be there."""
    source = (STATIC_DIR / "js" / "admin.js").read_text(encoding="utf-8")
    block = re.search(r"const REASON_CODES = \[(.*?)\];", source, re.S)
    assert block is not None
    listed = re.findall(r'"([a-z_]+)"', block.group(1))
    assert len(listed) == len(set(listed))
    assert set(listed) == {code.value for code in ReasonCode}
