"""Fixtures for the browser tests: Debian's Chromium through Playwright, the real panel server.

Registered for every test module through ``pytest_plugins`` in tests/conftest.py; Playwright is
imported inside the fixtures and helpers, so a machine without it still collects the rest of the
suite. Every test that uses ``browser`` is marked ``browser`` automatically (conftest.py).
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

from controller import config as cfg
from tests.support_web import PASSWORDS, TEST_CONFIG, add_users, build_controller, stop_controller

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
TIMEOUT_MS = 15_000


def launch_chromium(args: list[str]) -> Iterator[Any]:
    """Debian's Chromium (no browser download), with Playwright's assertions on a generous timeout."""
    from playwright import sync_api
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        yield b
        b.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium(CHROMIUM_ARGS)


@pytest.fixture
def site(settings: Any, pin_factory: Any) -> Iterator[Any]:
    """A started controller (2 s unlock so a test sees press -> pulse -> relock) and the real server."""
    from web.server import WebServer
    s = cfg.with_overrides(settings, door={"unlock_seconds": 2.0})
    controller = build_controller(s, pin_factory)
    server = WebServer(controller, test_config=TEST_CONFIG, host="127.0.0.1", port=0, station=controller.station)
    add_users(server.app.extensions["panel_store"])
    server.start()
    server.controller = controller
    server.strike_pin = pin_factory.pin(s.gpio.strike_pin)
    yield server
    server.stop()
    stop_controller(controller)


def signed_in(browser: Any, site: Any, username: str, path: str = "/",
              viewport: tuple[int, int] = (1024, 768)) -> Any:
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, base_url=site.url,
                                  has_touch=viewport[0] < 1000)
    context.grant_permissions(["notifications"], origin=site.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"/login?next={path}")
    page.fill("#username", username)
    page.fill("#password", PASSWORDS[username])
    page.click("#sign-in")
    page.wait_for_url(re.compile(re.escape(site.url + path) + r"$"))
    return page


def expect(locator: Any) -> Any:
    from playwright import sync_api
    return sync_api.expect(locator)
