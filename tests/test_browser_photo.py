"""Issue 9 finding 5 in Chromium: a second press shows a new photo with its time, and the
dashboard's approval names the photo it displays (an older one is refused, the newer approved)."""

from __future__ import annotations

import time

import pytest

from controller import events as ev
from tests.support_browser import expect, signed_in
from tests.support_web import wait_for

pytestmark = pytest.mark.browser


def test_second_press_shows_a_new_photo_and_the_approval_names_it(browser, site):
    c = site.controller
    dash = signed_in(browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    c.station.press()
    expect(dash.locator("#ring")).to_be_visible()
    rid = wait_for(lambda: (c.core.status()["ring"] or {}).get("request_id"))
    expect(dash.locator("#snapshot")).to_have_attribute("data-photo", "1")
    expect(dash.locator("#snapshot-time")).to_contain_text("Photo 1 taken")
    time.sleep(0.1)                                   # past the debounce window
    c.station.press()
    expect(dash.locator("#presses")).to_contain_text("Pressed 2 times")
    expect(dash.locator("#snapshot")).to_have_attribute("src", f"/snapshot/{rid}?n=2")
    expect(dash.locator("#snapshot-time")).to_contain_text("Photo 2 taken")
    dash.click("#approve")
    wait_for(lambda: c.core.status()["ring"] is None, what="approved")
    approved = c.journal.query(types=[ev.ENTRY_APPROVED], limit=1)[0]
    assert approved.data["snapshot"] == 2 and approved.data["presses"] == 2


def test_stale_approval_is_refused_and_says_look_again(browser, site):
    """The page approves with an older photo than the core has (as if the newer one had not
    reached this screen): refused, 'look again', and the page redraws from fresh status."""
    import re
    c = site.controller
    dash = signed_in(browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    c.station.press()
    expect(dash.locator("#snapshot")).to_have_attribute("data-photo", "1")
    sent: list[str] = []

    def older_photo(route):
        body = re.sub(r"snapshot=\d+", "snapshot=0", route.request.post_data or "")
        sent.append(body)
        route.continue_(post_data=body)
    dash.route("**/api/approve", older_photo)
    dash.click("#approve")
    expect(dash.locator("#ring-message")).to_contain_text("A new press: look again")
    assert sent and "presses=1" in sent[0]
    assert not c.station.strike_on
    assert c.journal.query(types=[ev.ACTION_REFUSED], limit=1)[0].data["code"] == "stale"
    expect(dash.locator("#approve")).to_be_enabled()
