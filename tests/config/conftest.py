"""Config tests run with a clean CALLROUTER_* environment, whatever the shell exported."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CALLROUTER_"):
            monkeypatch.delenv(name)
