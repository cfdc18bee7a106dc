"""The operator console in Chromium against the live service: screen-pop, actions, isolation."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from callrouter.domain.model import Operator, OperatorState
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

    console.get_by_label("Your note on this call").fill("replaced the power supply")
    console.get_by_role("button", name="Save call note").click()
    expect()(console.locator("#toast")).to_have_text("Call note saved.")
    [mine] = stored_call(live, record.uniqueid).notes
    assert (mine.operator_id, mine.note) == ("op1", "replaced the power supply")
    # The form shows the operator's own note, to edit.
    expect()(console.get_by_label("Your note on this call")).to_have_value(
        "replaced the power supply")

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


def test_a_transferred_call_each_operator_finishes_their_own_follow_up(
    browser: Any, live: LiveService
) -> None:
    """Anna answers, writes her note and blind-transfers the caller to Boris. Boris's
    screen-pop says who sent the caller and what she wrote; both mark the call and keep
    their own notes (Anna is not refused any more); the caller's next call goes to Boris,
    whose screen shows who handled the previous call and each one's note."""
    from dataclasses import replace
    from datetime import timedelta

    from callrouter.legs import CallLeg, LegEnd, LeggedCallRecord

    from .live_service import utcnow

    number, raw = "+79161234567", "8 916 123-45-67"

    async def name_caller() -> None:
        async with live.store.transaction() as tx:
            await tx.flags.set_name(number, "Olga Smirnova")

    live.run(name_caller())
    anna_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    boris_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    anna, boris = anna_ctx.new_page(), boris_ctx.new_page()
    errors: list[str] = []
    for page in (anna, boris):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(anna, live, live.tokens.operators["op1"])
    sign_in(boris, live, live.tokens.operators["op2"])

    record = live.run(live.route(raw))
    assert record.uniqueid is not None
    t0 = utcnow() - timedelta(minutes=5)
    base = LeggedCallRecord(
        uniqueid=record.uniqueid, caller_raw=record.caller_raw, queue=record.queue,
        decision_id=record.id, started_at=t0 - timedelta(seconds=20), answered_at=t0)
    a_open = CallLeg(0, "op1", "PJSIP/1001", "queue", t0, hold_seconds=20)
    live.run(live.write_records(replace(base, operator_id="op1",
                                        answered_interface="PJSIP/1001", legs=(a_open,))))
    live.publish_answered(record, "op1")
    expect()(anna.locator("#caller-name")).to_have_text("Olga Smirnova", timeout=2000)

    anna.get_by_label("Your note on this call").fill("router reboots; Boris checks the line")
    anna.get_by_role("button", name="Save call note").click()
    expect()(anna.locator("#toast")).to_have_text("Call note saved.")

    # The blind transfer: Anna's part ends at once; Boris answers a moment later.
    t1 = t0 + timedelta(seconds=90)
    a_left = replace(a_open, ended_at=t1, talk_seconds=90, end=LegEnd.BLIND_TRANSFER,
                     transfer_target="1002@transfer")
    live.run(live.write_records(replace(base, operator_id="op1", transferred=True,
                                        answered_interface="PJSIP/1001", legs=(a_left,))))
    live.publish_answered(record, None, transferred_from="op1", leg_ended={
        "operator_id": "op1", "talk_seconds": 90, "hold_seconds": 20, "ended_at": t1})
    expect()(anna.locator("#call-state")).to_have_text("Transferred", timeout=2000)
    expect()(anna.locator("#call-ended")).to_contain_text("You transferred the call")

    t2 = t1 + timedelta(seconds=8)
    a_done = replace(a_left, transferred_to="op2")
    b_open = CallLeg(1, "op2", "PJSIP/1002", "dial", t2, hold_seconds=8)
    live.run(live.write_records(replace(
        base, operator_id="op2", answered_interface="PJSIP/1002", transferred=True,
        transferred_from="op1", legs=(a_done, b_open))))
    live.publish_answered(record, "op2", transferred_from="op1")
    expect()(boris.locator("#caller-name")).to_have_text("Olga Smirnova", timeout=2000)
    expect()(boris.locator("#why")).to_contain_text(
        "Transferred to you by Anna Petrova: “router reboots; Boris checks the line”")
    expect()(boris.locator("#call-notes")).to_contain_text(
        "Anna Petrova: router reboots; Boris checks the line")
    expect()(boris.locator("#call-handlers")).to_have_text("Handled by Anna Petrova → you")

    boris.get_by_role("button", name="Resolved", exact=True).click()
    expect()(boris.locator("#toast")).to_have_text("Marked resolved.")
    boris.get_by_label("Your note on this call").fill("line fixed at the cabinet")
    boris.get_by_role("button", name="Save call note").click()
    expect()(boris.locator("#toast")).to_have_text("Call note saved.")

    # Anna, on her wrap-up card, gives her own verdict: no 403 any more.
    anna.get_by_role("button", name="Not resolved").click()
    expect()(anna.locator("#toast")).to_have_text("Marked not resolved.")
    expect()(anna.locator("#call-verdict")).to_have_text(
        "You said not resolved; the call counts as resolved.")
    stored = stored_call(live, record.uniqueid)
    assert {(n.operator_id, n.note, n.resolved) for n in stored.notes} == {
        ("op1", "router reboots; Boris checks the line", False),
        ("op2", "line fixed at the cabinet", True)}
    assert stored.resolved is True  # Boris had the caller last

    # Olga hangs up on Boris. Boris's card ends; Anna's stays "Transferred".
    t3 = t2 + timedelta(seconds=150)
    b_done = replace(b_open, ended_at=t3, talk_seconds=150, end=LegEnd.HUNG_UP,
                     hangup_by="caller")
    live.run(live.finish(replace(
        base, operator_id="op2", answered_interface="PJSIP/1002", transferred=True,
        transferred_from="op1", ended_at=t3, talk_seconds=240, outcome="answered",
        hangup_by="caller", legs=(a_done, b_done))))
    expect()(boris.locator("#call-state")).to_have_text("Call ended", timeout=2000)
    anna.wait_for_timeout(300)
    expect()(anna.locator("#call-state")).to_have_text("Transferred")

    # She calls again: the sticky operator is the one who had her last, Boris.
    live.set_state("op2", OperatorState.AVAILABLE)
    again = live.run(live.route(raw))
    assert again.decision.target_operator_id == "op2"
    live.run(live.answer_prepared(again, "op2"))
    live.publish_answered(again, "op2")
    expect()(boris.locator("#call-state")).to_have_text("On the line", timeout=2000)
    expect()(boris.locator("#why")).to_contain_text(
        "spoke with you (Anna Petrova → you) about “line fixed at the cabinet”")
    row = boris.locator("#recent-calls tbody tr").first
    expect()(row).to_contain_text("Anna Petrova → you")
    expect()(row).to_contain_text(
        "Anna Petrova: router reboots; Boris checks the line · you: line fixed at the cabinet")
    last = boris.locator("#last-call")
    expect()(last).to_contain_text("Anna Petrova → you (blind transfer to 1002@transfer)")
    expect()(last).to_contain_text(
        "Anna Petrova: “router reboots; Boris checks the line” (not resolved)")
    expect()(last).to_contain_text("You: “line fixed at the cabinet” (resolved)")
    save_screenshot(boris, "console-transfer.png")
    assert errors == []
    anna_ctx.close()
    boris_ctx.close()
