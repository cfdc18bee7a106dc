"""Browser fixtures: Debian's Chromium through playwright, and the live side service.

No ``playwright install``: the tests drive ``/usr/bin/chromium``. Without it they are
skipped, unless ``CALLROUTER_REQUIRE_BROWSER=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .live_service import LiveService

CHROMIUM = os.environ.get("CALLROUTER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"


def _require_browser() -> None:
    if Path(CHROMIUM).exists() and shutil.which(CHROMIUM):
        return
    message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CALLROUTER_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " and CALLROUTER_REQUIRE_BROWSER=1")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The API and the pages on a fresh SQLite file, one per test module."""
    service = LiveService(tmp_path_factory.mktemp("web") / "callrouter.db").start()
    try:
        yield service
    finally:
        service.stop()


def save_screenshot(page: Any, name: str) -> None:
    """Into artifacts/ (CI keeps it); also docs/screenshots/ (the README's) only when
    CALLROUTER_UPDATE_SCREENSHOTS=1, so a test run never dirties tracked files."""
    folders = [ARTIFACTS]
    if os.environ.get("CALLROUTER_UPDATE_SCREENSHOTS") == "1":
        folders.append(SCREENSHOTS)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / name), full_page=True)
