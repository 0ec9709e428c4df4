"""The front office in Debian's Chromium: sound can never be silently off (a large banner until
the first click arms it, remembered per browser), and the activity feed speaks human words.

Chromium is launched here WITHOUT --autoplay-policy=no-user-gesture-required (which the other
browser tests use): this test needs the real rule that audio waits for a gesture on the page."""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

from controller import config as cfg
from controller import labels
from tests.support_browser import CHROMIUM_ARGS, expect, launch_chromium, signed_in
from tests.support_web import NAMES, ring, wait_for, wait_snapshot

pytestmark = pytest.mark.browser

REAL_AUTOPLAY_ARGS = [a for a in CHROMIUM_ARGS if not a.startswith("--autoplay-policy")]


@pytest.fixture
def settings(settings):
    """A ring expires within seconds here (the Missed list)."""
    return cfg.with_overrides(settings, door={"ring_timeout_seconds": 5.0})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium(REAL_AUTOPLAY_ARGS)


def test_sound_off_banner_until_one_click_and_again_after_reload(browser, site):
    dash = signed_in(browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    banner = dash.locator("#sound-off")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("SOUND IS OFF on this screen")
    box = banner.bounding_box()
    assert box["y"] < 150 and box["width"] > 600          # across the top, not a line in a tile

    dash.click("#sound-on")
    expect(banner).to_be_hidden()
    expect(dash.locator("body")).to_have_attribute("data-sound", "on")

    dash.reload()
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    expect(banner).to_be_visible()                          # a reload loses the browser's audio permission
    expect(banner).to_contain_text("until you click anywhere")   # ...but this browser is remembered
    dash.click("#recent-h")                                 # one click anywhere re-arms it
    expect(banner).to_be_hidden()
    expect(dash.locator("body")).to_have_attribute("data-sound", "on")
    dash.context.close()


def test_activity_feed_uses_the_words_table(browser, site):
    dash = signed_in(browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    assert site.controller.unlock_now(NAMES["sam"], "panel").ok
    feed = dash.locator("#recent")
    expect(feed).to_contain_text(f"Door unlocked by {NAMES['sam']} (staff pressed Unlock now)")
    expect(feed).to_contain_text("Door locked (unlock time over)")
    site.controller.station.request_exit()
    site.controller.station.set_door(True)
    expect(feed).to_contain_text(labels.EXIT)
    site.controller.station.set_door(False)
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", feed.inner_text())
    dash.context.close()


def test_expired_ring_stays_in_missed_with_its_photo_until_seen(browser, site):
    dash = signed_in(browser, site, "sam")
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    missed = dash.locator("#missed")
    expect(missed).to_be_hidden()
    rid = ring(site.controller)
    wait_snapshot(site.controller, rid)
    expect(dash.locator("#ring")).to_be_visible()
    wait_for(lambda: site.controller.core.status()["ring"] is None, what="ring expiry")
    expect(dash.locator("#ring")).to_be_hidden()
    item = dash.locator(f'#missed-list li[data-request-id="{rid}"]')
    expect(item).to_be_visible()
    expect(item.locator("img")).to_have_attribute("src", f"/snapshot/{rid}")
    wait_for(lambda: dash.evaluate("document.querySelector('#missed-list img').naturalWidth") > 0)
    dash.reload()                                           # still there after a reload
    expect(item).to_be_visible()
    item.locator("button").click()
    expect(missed).to_be_hidden()
    dash.reload()
    expect(dash.locator("body")).to_have_attribute("data-connected", "yes")
    expect(missed).to_be_hidden()
    dash.context.close()
