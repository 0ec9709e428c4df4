"""Issue 13 in Debian's Chromium against the real server and a real controller on MockFactory:
a ring during a lockdown (no Approve, never approvable after, then in Missed), both lockdown
levels (Secure amber, Lockdown red, escalation), the hold-to-send panic control (mouse and
keyboard) and the desk panic button's GPIO pin, and a visit with a visitor record in History
and the CSV. Each "lockdown screens" finding of issue 13 has an assertion here that fails on
the old panel: the Approve button during a lockdown, the refusal that stayed after the end, the
approval after the end, and the Ringing LED."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import time

import pytest

from controller import config as cfg
from controller import events as ev
from tests.support_browser import expect, signed_in
from tests.support_web import NAMES, wait_for
from tests.test_browser import ARTIFACTS, ROOT, strike_on_count

pytestmark = pytest.mark.browser

PANIC_PIN = 6


@pytest.fixture
def settings(settings):
    """The desk panic button on a mock pin."""
    return cfg.with_overrides(settings, gpio={"panic_pin": PANIC_PIN})


def screenshot(page, name):
    """Into test-artifacts/; into docs/ (the README's copies) only with UPDATE_DOCS_SCREENSHOT=1."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    assert (ARTIFACTS / name).stat().st_size < 200_000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / name, ROOT / "docs" / name)


def events(site, type_):
    return list(reversed(site.controller.journal.query(types=[type_], limit=200)))


def api(page, path, body):
    """A POST from the page itself (its session and CSRF token), as a stale screen or script would."""
    return page.evaluate("([p, b]) => Panel.post(p, b)", [path, body])


def test_ring_during_lockdown_is_refused_never_approvable_and_missed(browser, site, pin_factory):
    dash = signed_in(browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    sim = dash.context.new_page()
    sim.goto("/sim")
    expect(sim.locator("body")).to_have_attribute("data-pattern", "idle")

    dash.click("#lockdown-start")
    dash.click("#lockdown-start-yes")
    banner = dash.locator("#lockdown-banner")
    expect(banner).to_be_visible()
    expect(banner).to_have_class(re.compile(r"\blockdown\b"))
    expect(dash.locator("#lockdown-level")).to_have_text("LOCKDOWN")
    assert banner.bounding_box()["width"] > 900                       # full width, not a tile line

    sim.click("#press")
    ring = dash.locator("#ring")
    expect(ring).to_be_visible()
    rid = site.controller.core.status()["ring"]["request_id"]
    expect(ring).to_have_attribute("data-refused", "lockdown")
    expect(dash.locator("#ring-refused")).to_have_text(re.compile("^Entry refused: lockdown"))
    expect(dash.locator("#approve")).to_be_hidden()                  # old panel: a big green Approve
    expect(dash.locator("#deny")).to_be_visible()

    # The visitor station shows the lockdown pattern, never Ringing.
    expect(sim.locator("body")).to_have_attribute("data-pattern", "lockdown")
    expect(sim.locator("#station-lockdown")).to_be_visible()
    expect(sim.locator("#led-denied")).to_have_class(re.compile(r"\bflash\b"))
    expect(sim.locator("#led-ringing")).not_to_have_class(re.compile(r"\bon\b"))
    ringing_led = pin_factory.pin(site.controller.settings.gpio.led_ringing_pin)
    assert not any(s.state for s in ringing_led.states)               # the Ringing LED never lit
    screenshot(dash, "dashboard-lockdown.png")
    screenshot(sim, "station-lockdown.png")

    # A refusal shown during the lockdown clears when the lockdown ends (old panel: it stayed).
    dash.click("#unlock")
    dash.click("#unlock-yes")
    expect(dash.locator("#action-message")).to_contain_text("lockdown is active (409)")

    dash.click("#lockdown-end")
    dash.click("#lockdown-end-yes")
    expect(banner).to_be_hidden()
    expect(dash.locator("#action-message")).to_have_text("")
    expect(ring).to_be_hidden()                                        # closed with the lockdown
    item = dash.locator(f'#missed-list li[data-request-id="{rid}"]')
    expect(item).to_be_visible()
    expect(item).to_contain_text("Rang during the lockdown")
    expect(sim.locator("body")).to_have_attribute("data-pattern", "idle")

    # Never approvable later, whatever a stale screen or script sends (old core: it opened).
    r = api(dash, "/api/approve", {"request_id": rid, "presses": "1"})
    assert (r["status"], r["data"]["code"]) == (409, "lockdown")
    assert strike_on_count(site) == 0 and not events(site, ev.ENTRY_APPROVED)
    dash.context.close()


def test_secure_is_amber_lockdown_red_and_secure_escalates(browser, site):
    dash = signed_in(browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    dash.click("#lockdown-start")
    expect(dash.locator("#lockdown-start-secure")).to_be_visible()    # staff choose the level
    dash.click("#lockdown-start-secure")
    banner = dash.locator("#lockdown-banner")
    expect(banner).to_have_class(re.compile(r"\bsecure\b"))
    expect(dash.locator("#lockdown-level")).to_have_text("SECURE")
    expect(banner).to_contain_text("threat outside")
    expect(dash.locator("body")).to_have_attribute("data-lockdown", "secure")
    amber = banner.evaluate("e => getComputedStyle(e).backgroundColor")
    screenshot(dash, "dashboard-secure.png")
    assert site.controller.status()["lockdown"]["level"] == "secure"

    # Secure refuses entry too: a ring shows no Approve.
    site.controller.station.press()
    expect(dash.locator("#ring")).to_have_attribute("data-refused", "lockdown")
    expect(dash.locator("#approve")).to_be_hidden()

    dash.click("#lockdown-escalate")                                   # one click: the safe direction
    expect(banner).to_have_class(re.compile(r"\blockdown\b"))
    expect(dash.locator("#lockdown-level")).to_have_text("LOCKDOWN")
    expect(dash.locator("#lockdown-escalate")).to_be_hidden()
    red = banner.evaluate("e => getComputedStyle(e).backgroundColor")
    assert amber != red and red == "rgb(185, 28, 28)"
    changed = events(site, ev.LOCKDOWN_LEVEL_CHANGED)
    assert [(e.actor, e.data["previous_level"], e.data["level"]) for e in changed] == [
        (NAMES["sam"], "secure", "lockdown")]
    expect(dash.locator("#recent")).to_contain_text("SECURE → LOCKDOWN")
    dash.click("#lockdown-end")
    dash.click("#lockdown-end-yes")
    expect(banner).to_be_hidden()
    expect(dash.locator("body")).to_have_attribute("data-lockdown", "")
    assert strike_on_count(site) == 0
    dash.context.close()


def hold(page, seconds):
    page.hover("#panic")
    page.mouse.down()
    time.sleep(seconds)
    page.mouse.up()


def test_panic_control_needs_a_hold_and_is_acknowledged_on_the_panel(browser, site):
    dash = signed_in(browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    hold(dash, 0.2)                                                    # a tap sends nothing
    expect(dash.locator("#panic-message")).to_contain_text("Not sent")
    assert not events(site, ev.ALARM_RAISED)

    hold(dash, 1.5)
    banner = dash.locator('#alarms [data-alarm="panic"]')
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("PANIC")
    expect(dash.locator("#panic-message")).to_have_text("PANIC alarm sent.")
    expect(dash.locator("#lockdown-banner")).to_be_visible()          # panic.starts_lockdown (default)
    raised = events(site, ev.ALARM_RAISED)
    assert [(e.data["alarm"], e.data["source"], e.data["by"]) for e in raised] == [("panic", "panel", NAMES["sam"])]
    assert site.controller.status()["lockdown"]["level"] == "lockdown"
    assert dash.locator("dialog").count() == 0                         # no dialog, ever

    banner.locator("button").click()                                    # staff acknowledge it
    expect(banner).to_be_hidden()
    cleared = events(site, ev.ALARM_CLEARED)
    assert [(e.data["alarm"], e.actor) for e in cleared] == [("panic", NAMES["sam"])]

    # Keyboard: hold Enter on the focused control.
    dash.focus("#panic")
    dash.keyboard.down("Enter")
    time.sleep(1.5)
    dash.keyboard.up("Enter")
    expect(banner).to_be_visible()
    assert len(events(site, ev.ALARM_RAISED)) == 2
    dash.context.close()


def test_desk_panic_button_gpio_pin_raises_the_alarm_on_every_dashboard(browser, site, pin_factory):
    dash = signed_in(browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    pin = pin_factory.pin(PANIC_PIN)
    pin.drive_low()                                                     # pressed (button to ground)
    pin.drive_high()
    pin.drive_low()                                                     # contact bounce: one panic
    pin.drive_high()
    banner = dash.locator('#alarms [data-alarm="panic"]')
    expect(banner).to_be_visible()
    expect(dash.locator("body")).to_have_attribute("data-panic", "active")
    expect(dash.locator("#recent")).to_contain_text("PANIC (duress) button pressed at the desk panic button")
    expect(dash.locator("#lockdown-banner")).to_be_visible()
    raised = events(site, ev.ALARM_RAISED)
    assert [(e.data["alarm"], e.data["source"]) for e in raised] == [("panic", "desk_button")]
    dash.locator('#alarms [data-alarm="panic"] button').click()
    expect(banner).to_be_hidden()
    sim = dash.context.new_page()                                       # the simulated desk button
    sim.goto("/sim")
    sim.click("#desk-panic")
    expect(banner).to_be_visible()
    assert len(events(site, ev.ALARM_RAISED)) == 2
    dash.context.close()


def test_visit_with_a_visitor_record_appears_in_history_and_csv(browser, site):
    dash = signed_in(browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    site.controller.station.press()
    expect(dash.locator("#ring")).to_be_visible()
    expect(dash.locator("#approve")).to_be_visible()
    rid = site.controller.core.status()["ring"]["request_id"]

    # A name with a control character is refused with a clear 400 and opens nothing.
    r = api(dash, "/api/approve", {"request_id": rid, "presses": "1", "visitor_name": "Jane\u0007"})
    assert r["status"] == 400 and "control" in r["data"]["error"]
    assert strike_on_count(site) == 0

    dash.click("#visitor summary")
    dash.fill("#visitor-name", "=Jane O'Brien")
    dash.check('input[name="visitor_purpose"][value="parent_guardian"]')
    dash.check("#visitor-id-checked")
    dash.click("#approve")
    expect(dash.locator("#outcome")).to_have_text(f"Approved by {NAMES['sam']}")
    wait_for(lambda: strike_on_count(site) == 1)
    approved = events(site, ev.ENTRY_APPROVED)[0]
    assert approved.data["visitor"] == {"name": "=Jane O'Brien", "purpose": "parent_guardian", "id_checked": True}

    dash.goto("/history")
    row = dash.locator("tr.t-entry_approved").first
    expect(row).to_contain_text("=Jane O'Brien · Parent or guardian · ID checked")
    resp = dash.context.request.get(site.url + "/history.csv")
    assert resp.ok
    rows = list(csv.DictReader(io.StringIO(resp.text())))
    mine = [r for r in rows if r["type"] == ev.ENTRY_APPROVED]
    assert mine[0]["visitor"] == "'=Jane O'Brien · Parent or guardian · ID checked"   # formula-safe
    assert mine[0]["request_id"] == rid
    dash.context.close()


def test_panic_hold_by_touch_on_a_tablet(browser, site):
    dash = signed_in(browser, site, "sam", viewport=(768, 1024))     # a touch screen
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    dash.locator("#panic").scroll_into_view_if_needed()
    box = dash.locator("#panic").bounding_box()
    point = [{"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2}]
    cdp = dash.context.new_cdp_session(dash)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": point})
    expect(dash.locator("#panic")).to_have_attribute("data-holding", "yes")
    time.sleep(1.5)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    expect(dash.locator('#alarms [data-alarm="panic"]')).to_be_visible()
    raised = events(site, ev.ALARM_RAISED)
    assert [(e.data["alarm"], e.data["source"], e.data["by"]) for e in raised] == [("panic", "panel", NAMES["sam"])]
    assert dash.evaluate("document.documentElement.scrollWidth <= window.innerWidth")   # no sideways scroll
    dash.context.close()
