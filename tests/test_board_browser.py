"""The district board in Debian's Chromium (Playwright), against the real board server, the real
recorder, a private PostgreSQL and Mosquitto, and real campus controllers on MockFactory:
the grid updates live when a campus publishes, an unanswered ring is highlighted after the
threshold (the board's clock is moved, no 30 s sleep), a lockdown started on the board
reaches a door, search and CSV export. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright import sync_api

from tests.support_board import PASSWORDS, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.broker]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 20_000
expect = sync_api.expect
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def doors(district):
    return {"n1": district.door("north-high", "main-entrance"), "s1": district.door("south-elem", "front")}


def signed_in(browser: Any, district: Any, username: str) -> Any:
    context = browser.new_context(base_url=district.url, accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORDS[username])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(district.url) + "/$"))
    expect(page.locator("#live-status")).to_have_attribute("data-live", "yes")
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"board-{name}.png"), full_page=True)


def test_grid_updates_live_and_an_unanswered_ring_is_highlighted(browser, district, doors):
    page = signed_in(browser, district, "victor")
    row = page.locator('tr[data-door="north-high/main-entrance"]')
    expect(row).to_have_attribute("data-online", "yes")
    expect(row.locator("td.state")).to_have_text("locked")
    expect(page.locator("[data-lockdown]")).to_have_count(0)          # a viewer gets no lockdown buttons
    expect(page.locator('section[data-campus="north-high"] a.panel-link')).to_have_attribute(
        "href", "https://north-high.example.org/")

    # a campus publishes: the door opens -> the grid changes without a reload
    doors["n1"].station.set_door(True)
    expect(row.locator("td.state")).to_have_text("open")
    doors["n1"].station.set_door(False)
    expect(row.locator("td.state")).to_have_text("locked")

    # a door the board has never seen comes online: it appears live
    district.door("south-elem", "gym")
    expect(page.locator('tr[data-door="south-elem/gym"]')).to_have_attribute("data-online", "yes")

    # a visitor rings: pending at once, not yet highlighted (threshold 30 s) ...
    doors["n1"].station.press()
    ring = row.locator("td.ring")
    expect(ring).to_have_class(re.compile(r"\bpending\b"))
    expect(ring).to_contain_text("ringing")
    assert "overdue" not in (ring.get_attribute("class") or "")
    # ... and highlighted once nobody answered for more than 30 s (the board's clock moves on)
    district.shift = timedelta(seconds=45)
    try:
        district.hub.refresh(force=True)
        expect(ring).to_have_class(re.compile(r"\boverdue\b"))
        expect(row).to_have_class(re.compile(r"\boverdue\b"))
        assert district.grid_door("north-high", "main-entrance")["ring"]["overdue"] is True
        shot(page, "ring-overdue")
        # answered: the highlight goes with the ring
        doors["n1"].controller.deny(doors["n1"].controller.core.status()["ring"]["request_id"], "Front Office")
        expect(ring).not_to_have_class(re.compile(r"\bpending\b"))
    finally:
        district.shift = timedelta(0)
        district.hub.refresh(force=True)

    # the door stops: offline on the grid
    district.doors[-1].close()
    expect(page.locator('tr[data-door="south-elem/gym"]')).to_have_attribute("data-online", "no")

    # click the door: its timeline from PostgreSQL, with the ring's snapshot
    row.locator("a").first.click()
    expect(page.locator("h1")).to_contain_text("main-entrance")
    expect(page.locator('#timeline tr[data-type="entry_denied"]')).to_have_count(1)
    thumb = page.locator("#timeline img.thumb").first
    expect(thumb).to_be_visible()
    assert thumb.evaluate("img => img.complete && img.naturalWidth > 0")
    page.context.close()


def test_lockdown_from_the_board_reaches_a_simulated_door(browser, district, doors):
    page = signed_in(browser, district, "olivia")
    card = page.locator('section[data-campus="south-elem"]')
    card.locator('a[data-lockdown="start"]').click()
    expect(page.locator("h1")).to_contain_text("south-elem")
    page.fill("input[name=reason]", "police activity nearby")
    page.click("#send")
    expect(page.locator("form#lockdown-form")).to_be_visible()     # the confirmation box is required
    assert not doors["s1"].controller.core.status()["lockdown"]
    page.check("input[name=confirm]")
    page.click("#send")
    expect(page.locator("#sent")).to_be_visible()
    command_id = page.locator("#command-id").inner_text()
    wait_for(lambda: doors["s1"].controller.core.status()["lockdown"], what="the door to apply the lockdown")
    started = doors["s1"].events_of("lockdown_started")[-1]
    assert started.data["command_id"] == command_id and started.data["source"] == "mqtt"
    assert not doors["n1"].controller.core.status()["lockdown"]
    page.click("#answers")                      # which doors answered: refreshes itself until all have
    expect(page.locator('tr[data-answered="south-elem/front"]')).to_have_attribute("data-verdict", "applied",
                                                                                   timeout=30_000)
    # every door that is up has answered; a known door still waiting is one that is offline (the
    # grid test stops south-elem/gym when it runs first): its lockdown waits in its broker session
    expect(page.locator('tr[data-waiting="south-elem/front"]')).to_have_count(0)
    for waiting in page.locator("tr[data-waiting]").all():
        expect(waiting.locator("td").nth(2)).to_have_text("offline")
    page.goto("/")
    expect(page.locator('section[data-campus="south-elem"] .badge.lockdown')).to_be_visible()
    expect(page.locator('tr[data-door="south-elem/front"] td.lock')).to_have_text("LOCKDOWN")
    shot(page, "lockdown")
    doors["s1"].controller.end_lockdown("test", source="panel")
    expect(page.locator('tr[data-door="south-elem/front"] td.lock')).to_have_text("")
    page.context.close()


def test_search_and_csv_in_the_browser(browser, district, doors):
    doors["s1"].station.press()
    wait_for(lambda: district.sql("SELECT 1 FROM events WHERE campus = 'south-elem' AND type = 'buzzer_pressed'"),
             what="the press to be recorded")
    page = signed_in(browser, district, "victor")
    page.goto("/search")
    page.select_option("select[name=campus]", ["south-elem"])
    page.select_option("select[name=type]", ["buzzer_pressed"])
    page.click("button[type=submit]:not(#csv)")
    rows = page.locator("#results tbody tr[data-type]")
    expect(rows.first).to_be_visible()
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.campus + ':' + r.dataset.type)")) == \
        {"south-elem:buzzer_pressed"}
    with page.expect_download() as info:
        page.click("#csv")
    text = Path(info.value.path()).read_text()
    lines = text.strip().splitlines()
    assert lines[0].startswith("time,campus,door,event")
    assert len(lines) - 1 == rows.count() and all(",south-elem," in line for line in lines[1:])
    page.context.close()
