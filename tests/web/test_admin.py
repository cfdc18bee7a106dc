"""The admin dashboard in Chromium against the live service: live decisions and charts."""

from __future__ import annotations

from typing import Any

import pytest

from callrouter.domain.model import OperatorState

from .conftest import save_screenshot
from .live_service import LiveService

pytestmark = pytest.mark.browser


def expect() -> Any:
    from playwright.sync_api import expect as _expect

    return _expect


def chart_value(page: Any, chart: str) -> str:
    return str(page.locator(f"#{chart} figcaption .value").inner_text())


def test_dashboard_follows_decisions_and_operator_states(browser: Any, live: LiveService) -> None:
    context = browser.new_context(viewport={"width": 1600, "height": 1200})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    live.run(live.seed_history())  # an hour of calls in the log before the page loads
    live.run(live.route("8 912 345-67-89"))
    page.goto(f"{live.base_url}/admin")
    page.get_by_label("Access token").fill(live.tokens.admin)
    page.get_by_role("button", name="Sign in").click()
    expect()(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)
    rows = page.locator("#decisions tbody tr")
    expect()(rows).to_have_count(37)
    expect()(page.locator("#operators tbody tr")).to_have_count(3)
    expect()(page.locator("#charts-note")).to_contain_text("37 decisions")
    expect()(page.locator("#chart-fallbacks .legend")).to_contain_text("sticky unavailable")
    assert page.locator("#chart-sticky svg circle").count() >= 10

    # Calls flow: the table and the charts follow without a reload.
    live.run(live.route("+7 495 000-00-01"))
    live.run(live.route("+7 812 000-00-02"))
    expect()(rows).to_have_count(39, timeout=2000)
    expect()(rows.first).to_contain_text("new_caller")
    expect()(page.locator("#charts-note")).to_contain_text("39 decisions")
    assert page.locator("#chart-latency svg path.line").count() == 2

    # Anna takes a call: her row says so, live.
    live.set_state("op1", OperatorState.IN_CALL)
    row = page.locator('#operators tr[data-operator="op1"] .state')
    expect()(row).to_have_attribute("data-state", "in_call", timeout=2000)
    live.set_state("op1", OperatorState.AVAILABLE)
    expect()(row).to_have_attribute("data-state", "available", timeout=2000)

    # Ivan's binding to Anna is listed (from the API or, failing that, the log).
    expect()(page.locator("#bindings tbody")).to_contain_text("+79123456789")

    # Filter by reason, then clear.
    page.get_by_label("Reason").select_option("sticky_available")
    page.get_by_role("button", name="Filter").click()
    expect()(rows.first).to_contain_text("sticky_available")
    assert rows.count() < 39
    page.get_by_role("button", name="Clear").click()
    expect()(rows).to_have_count(39)

    # What would happen if Ivan rang while Anna is in a call?
    page.get_by_label("Caller number").fill("8 912 345-67-89")
    page.get_by_label("Pretend operator…").fill("op1")
    page.get_by_label("…is").select_option("in_call")
    page.get_by_role("button", name="Simulate").click()
    expect()(page.locator("#simulate-reasons")).to_contain_text("sticky_busy_wait")

    # Incidents: start one, see it, end it.
    page.get_by_label("Title").fill("Fibre cut in the north district")
    page.get_by_label("Announcement (sound file)").fill("callrouter/outage")
    page.get_by_label("Number prefixes").fill("+7495")
    page.get_by_role("button", name="Start incident").click()
    expect()(page.locator("#incidents")).to_contain_text("Fibre cut in the north district")

    # Rules: the active ones are shown; a bad candidate is refused with its problem.
    expect()(page.locator("#rules")).to_contain_text("default_queue")
    candidate = page.get_by_label("Candidate rules (TOML) to validate")
    candidate.fill('[rules]\nsticky_window = "forever"\n')
    page.get_by_role("button", name="Validate").click()
    expect()(page.locator("#rules-result")).to_contain_text("not valid")

    save_screenshot(page, "admin.png")

    page.get_by_role("button", name="End").click()
    expect()(page.locator("#incidents")).to_contain_text("No active incident")

    # The wall-screen toggle scales the type.
    before = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    page.get_by_role("button", name="Wall screen").click()
    after = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    assert after > before
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert errors == []
    context.close()


def test_system_card_shows_each_component_and_a_503(browser: Any, live: LiveService) -> None:
    """The System card shows what /api/v1/health says of each part, also when routing is
    unavailable (503) — the body still carries every component."""
    from callrouter.api.deps import ComponentStatus

    context = browser.new_context(viewport={"width": 1600, "height": 1200})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    saved = live.deps.fastagi_status, live.deps.state_replica_status
    try:
        page.goto(f"{live.base_url}/admin")
        page.get_by_label("Access token").fill(live.tokens.admin)
        page.get_by_role("button", name="Sign in").click()
        card = page.locator("#system")
        expect()(card.locator("li")).to_have_count(4)
        expect()(card.locator('li[data-component="database"]')).to_have_attribute("data-ok", "true")
        expect()(card.locator('li[data-component="state_replica"]')).to_contain_text("disabled")
        expect()(page.locator("#system-note")).to_contain_text("Routing works")

        live.deps.fastagi_status = lambda: ComponentStatus(ok=False, state="down",
                                                           detail="not listening")
        live.deps.state_replica_status = lambda: ComponentStatus(
            ok=True, state="live", detail="91035 callers, 86234 calls in memory")
        page.get_by_role("button", name="Check now").click()
        fastagi = card.locator('li[data-component="fastagi"]')
        expect()(fastagi).to_have_attribute("data-ok", "false")
        expect()(fastagi).to_contain_text("not listening")
        expect()(card.locator('li[data-component="state_replica"]')).to_contain_text(
            "91035 callers")
        expect()(page.locator("#system-note")).to_contain_text("Routing is unavailable")
        assert errors == []
    finally:
        live.deps.fastagi_status, live.deps.state_replica_status = saved
        context.close()
