"""The operator console in Chromium against the live service: screen-pop, actions, isolation."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from callrouter.domain.model import Operator
from callrouter.store.records import Role

from .conftest import save_screenshot
from .live_service import LiveService

pytestmark = pytest.mark.browser

CALLER = "+79123456789"


def expect() -> Any:
    from playwright.sync_api import expect as _expect

    return _expect


def sign_in(page: Any, live: LiveService, token: str) -> None:
    page.goto(f"{live.base_url}/console")
    page.get_by_label("Your access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect()(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=5000)


def stored_call(live: LiveService, uniqueid: str) -> Any:
    async def get() -> Any:
        async with live.store.transaction() as tx:
            return await tx.calls.get_by_uniqueid(uniqueid)

    return live.run(get())


def stored_flags(live: LiveService, number: str) -> Any:
    async def get() -> Any:
        async with live.store.transaction() as tx:
            return await tx.flags.get(number)

    return live.run(get())


def stored_tickets(live: LiveService, number: str) -> Any:
    async def get() -> Any:
        async with live.store.transaction() as tx:
            return await tx.tickets.list_by_caller(number)

    return live.run(get())


def test_screen_pop_actions_and_isolation(browser: Any, live: LiveService) -> None:
    anna = browser.new_context(viewport={"width": 1440, "height": 1000})
    boris = browser.new_context(viewport={"width": 1280, "height": 800})
    console = anna.new_page()
    other = boris.new_page()
    errors: list[str] = []
    console.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(console, live, live.tokens.operators["op1"])
    sign_in(other, live, live.tokens.operators["op2"])
    expect()(console.locator("#waiting")).to_be_visible()

    # Ivan rings again; routing sends him back to Anna, who answers.
    record = live.run(live.route("8 912 345-67-89"))
    assert record.decision.target_operator_id == "op1"
    live.run(live.answer_prepared(record, "op1"))
    started = time.monotonic()
    live.publish_answered(record, "op1")
    expect()(console.locator("#caller-name")).to_have_text("Ivan Sidorov", timeout=1000)
    assert time.monotonic() - started < 1.0

    why = console.locator("#why")
    expect()(why).to_contain_text(re.compile(r"Called \d+ minutes ago, spoke with you about"))
    expect()(why).to_contain_text("router reboots, firmware 2.1")
    expect()(why).to_contain_text("Open ticket: Router reboots every hour")
    expect()(console.locator("#caller-number")).to_have_text(CALLER)
    expect()(console.locator("#recent-calls tbody tr")).to_have_count(1)
    expect()(console.locator("#pop")).to_have_attribute("aria-live", "assertive")
    # the routing decision's own reasons, from the screen-pop event
    sticky = console.locator('#routing-reasons li[data-code="sticky_available"]')
    expect()(sticky).to_have_count(1)
    assert sticky.inner_text().strip()
    expect()(console.locator("#call-state")).to_have_text("On the line")

    # Boris's console saw nothing of it.
    other.wait_for_timeout(300)
    expect()(other.locator("#caller-name")).to_have_count(0)
    assert "Ivan" not in other.content() and "912" not in other.inner_text("body")

    # The actions write through to the store.
    console.get_by_role("button", name="Not resolved").click()
    expect()(console.locator("#toast")).to_have_text("Marked not resolved.")
    assert stored_call(live, record.uniqueid).resolved is False
    console.get_by_role("button", name="Resolved", exact=True).click()
    expect()(console.locator("#toast")).to_have_text("Marked resolved.")
    assert stored_call(live, record.uniqueid).resolved is True

    console.get_by_label("Note on this call").fill("replaced the power supply")
    console.get_by_role("button", name="Save call note").click()
    expect()(console.locator("#toast")).to_have_text("Call note saved.")
    assert stored_call(live, record.uniqueid).note == "replaced the power supply"

    console.locator("#caller-note").fill("prefers calls after 14:00")
    console.get_by_role("button", name="Save notes").click()
    expect()(console.locator("#toast")).to_have_text("Notes saved.")
    assert stored_flags(live, CALLER).notes == "prefers calls after 14:00"

    console.get_by_label("Status").select_option("pending")
    console.get_by_label("Subject").fill("Router reboots every hour (PSU)")
    console.get_by_role("button", name="Update ticket").click()
    expect()(console.locator("#toast")).to_have_text("Ticket updated.")
    [ticket] = stored_tickets(live, CALLER)
    assert (ticket.status, ticket.subject) == ("pending", "Router reboots every hour (PSU)")

    console.get_by_role("button", name="Request a specialist next time").click()
    expect()(console.locator("#toast")).to_contain_text("specialist")
    [ticket] = stored_tickets(live, CALLER)
    assert ticket.tier == "specialist"
    expect()(console.get_by_role("button", name="Specialist requested")).to_be_disabled()

    save_screenshot(console, "console.png")

    # Ivan hangs up: the card says so at once, and stays for the wrap-up.
    started = time.monotonic()
    live.run(live.end_call(record, "op1", talk_seconds=245))
    expect()(console.locator("#call-state")).to_have_text("Call ended", timeout=1000)
    assert time.monotonic() - started < 1.0
    expect()(console.locator("#call-ended")).to_contain_text("talked 4:05")
    expect()(console.locator("#pop article")).to_have_attribute("data-state", "ended")
    expect()(console.locator("#caller-name")).to_have_text("Ivan Sidorov")
    other.wait_for_timeout(200)
    expect()(other.locator("#call-ended")).to_have_count(0)

    console.once("dialog", lambda dialog: dialog.accept())
    console.get_by_role("button", name="Do not route this caller to me").click()
    expect()(console.locator("#toast")).to_have_text("This caller will not be routed to you.")
    assert "op1" in stored_flags(live, CALLER).opted_out_operators

    console.once("dialog", lambda dialog: dialog.accept())
    console.get_by_role("button", name="Flag abusive").click()
    expect()(console.locator("#toast")).to_have_text("Caller flagged abusive.")
    flags = stored_flags(live, CALLER)
    assert flags.abusive and flags.abusive_flagged_by == "op1"
    expect()(console.locator(".badge.warn")).to_have_text("Abusive")

    # Signing out clears the caller from the screen and the token from the tab.
    console.get_by_role("button", name="Sign out").click()
    expect()(console.locator("#caller-name")).to_have_count(0)
    expect()(console.get_by_label("Your access token")).to_be_visible()
    assert console.evaluate("sessionStorage.length") == 0
    assert "Ivan" not in console.inner_text("body")
    assert errors == []
    anna.close()
    boris.close()


def test_bad_token_is_refused_and_long_names_do_not_break_the_layout(
    browser: Any, live: LiveService
) -> None:
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    page.goto(f"{live.base_url}/console")
    page.get_by_label("Your access token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect()(page.locator("#sign-in-error")).to_contain_text("not valid")

    # An admin token is not an operator's: the console says where to go instead.
    page.get_by_label("Your access token").fill(live.tokens.admin)
    page.get_by_role("button", name="Sign in").click()
    expect()(page.locator("#sign-in-error")).to_contain_text("/admin")

    # A screen-pop with a very long name and markup in it: shown as text, clipped.
    sign_in(page, live, live.tokens.operators["op2"])
    long_name = "<img src=x onerror=alert(1)> " + "Konstantinopolsky-" * 12

    async def name_caller() -> None:
        async with live.store.transaction() as tx:
            await tx.flags.set_name("+79997776655", long_name)

    live.run(name_caller())
    record = live.run(live.route("+7 999 777-66-55"))
    live.run(live.answer_prepared(record, "op2"))
    live.publish_answered(record, "op2")
    heading = page.locator("#caller-name")
    expect()(heading).to_have_text(long_name.strip(), timeout=1000)
    assert page.locator("img").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()


def revoke(live: LiveService, path: str) -> None:
    """An admin's request to the live API (what /admin or `curl` would send)."""
    import httpx

    r = httpx.post(f"{live.base_url}/api/v1/{path}",
                   headers={"Authorization": f"Bearer {live.tokens.admin}"}, timeout=5)
    assert r.status_code == 200, r.text


def test_revoked_token_and_deactivated_operator_sign_the_console_out(
    browser: Any, live: LiveService
) -> None:
    async def setup() -> tuple[Any, Any]:
        async with live.store.transaction() as tx:
            await tx.operators.add(Operator("op3", "Vera", ("PJSIP/1003",), queues=("support",)))
            first = await tx.tokens.create("op2 spare", Role.OPERATOR, operator_id="op2")
            vera = await tx.tokens.create("op3 console", Role.OPERATOR, operator_id="op3")
            return first, vera

    spare, vera = live.run(setup())
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page, other = context.new_page(), context.new_page()
    sign_in(page, live, spare.plaintext)
    sign_in(other, live, vera.plaintext)

    revoke(live, f"tokens/{spare.info.id}/revoke")
    expect()(page.get_by_label("Your access token")).to_be_visible(timeout=3000)
    expect()(page.locator("#sign-in-error")).to_have_text(
        "Your token was revoked: sign in with a new one.")
    assert page.evaluate("sessionStorage.length") == 0

    revoke(live, "operators/op3/deactivate")
    expect()(other.get_by_label("Your access token")).to_be_visible(timeout=3000)
    expect()(other.locator("#sign-in-error")).to_have_text(
        "Your operator account was deactivated: ask your supervisor.")
    # and the token cannot start a console again
    other.get_by_label("Your access token").fill(vera.plaintext)
    other.get_by_role("button", name="Sign in").click()
    expect()(other.locator("#sign-in-error")).to_contain_text("deactivated")
    expect()(other.locator("#desk")).to_be_hidden()
    context.close()
