"""Fixtures for the panel tests: a real controller on MockFactory, the Flask app, signed-in clients.

Import the fixtures you need into a test module (``from tests.support_web import *``-style
explicit imports). Nothing here patches the controller: the app talks to the real core,
journal and (simulated) camera.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from controller import daemon
from controller.simulate import SimulatedStation
from tests.conftest import (
    sim_settings,
    wait_for,  # noqa: F401  (re-exported for the tests)
)

PASSWORDS = {"admin": "orbit-lantern-quietly-7", "sam": "maple-kettle-sparrow-4"}
NAMES = {"admin": "Ada Admin", "sam": "Sam Staff"}
# Cheaper scrypt keeps ~200 sign-ins fast; the production cost is tested in test_web_store.py.
TEST_CONFIG = {"TESTING": True, "SSE_HEARTBEAT_SECONDS": 0.2, "PASSWORD_SCRYPT_N": 2 ** 10}
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


def build_controller(settings: Any, pin_factory: Any, clock: Any = None) -> daemon.Controller:
    """A started controller in the simulated campus shape (station attached), as the daemon builds it.

    ``clock`` (e.g. conftest's FakeClock) lets a test move the core's timers (ring expiry)
    instead of sleeping through them; the CoreLoop runs on the same clock."""
    controller = daemon.build(settings, pin_factory=pin_factory, clock=clock, simulated=True)
    station = SimulatedStation(pin_factory, settings.gpio)
    station.settle()
    controller.station = station  # type: ignore[attr-defined]  # test harness: the panel gets it as station=
    daemon.start(controller)
    loop = daemon.CoreLoop(controller.core)      # timers: ring expiry, pulse end, held-open
    loop.start()
    controller.test_loop = loop  # type: ignore[attr-defined]
    return controller


def stop_controller(controller: daemon.Controller) -> None:
    controller.test_loop.stop()  # type: ignore[attr-defined]
    controller.test_loop.join(timeout=10)  # type: ignore[attr-defined]
    daemon.stop(controller, "test done")


@pytest.fixture
def controller(settings: Any, pin_factory: Any) -> Iterator[daemon.Controller]:
    c = build_controller(settings, pin_factory)
    yield c
    stop_controller(c)


@pytest.fixture(scope="module")
def shared_controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[daemon.Controller]:
    """One controller for a module's access-matrix tests (hundreds of parametrised cases).

    Only for tests that change nothing and assert so (no ring, no unlock, no lockdown, no new
    account): sharing makes that check stronger, since a case that leaked a change fails the
    cases after it. A test that needs a fresh door uses ``controller``."""
    factory = MockFactory()
    c = build_controller(sim_settings(tmp_path_factory.mktemp("shared") / "state"), factory)
    yield c
    stop_controller(c)
    factory.reset()


@pytest.fixture(scope="module")
def shared_app(shared_controller: daemon.Controller) -> Iterator[Any]:
    """The panel app on ``shared_controller``, with the two test users (see there for when to use it)."""
    from web import close_app, create_app
    application = create_app(shared_controller, test_config=TEST_CONFIG, station=shared_controller.station)
    add_users(application.extensions["panel_store"])
    yield application
    close_app(application)


def add_users(store: Any) -> None:
    store.add_user("admin", PASSWORDS["admin"], "admin", NAMES["admin"])
    store.add_user("sam", PASSWORDS["sam"], "staff", NAMES["sam"])


@pytest.fixture
def app(controller: daemon.Controller) -> Iterator[Any]:
    from web import close_app, create_app
    application = create_app(controller, test_config=TEST_CONFIG, station=controller.station)
    add_users(application.extensions["panel_store"])
    yield application
    close_app(application)


def login(client: Any, username: str, password: str | None = None) -> Any:
    """Sign in through the real form (login CSRF cookie + field). Returns the POST response."""
    page = client.get("/login")
    token = CSRF_INPUT.search(page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"username": username, "password": password or PASSWORDS[username],
                                       "csrf_token": token, "next": "/"})


def csrf_of(client: Any) -> str:
    """The signed-in session's CSRF token, read from the dashboard like the browser does."""
    return CSRF_META.search(client.get("/").get_data(as_text=True)).group(1)


class Signed:
    """A signed-in test client with a ``post`` that sends the CSRF header."""

    def __init__(self, client: Any, username: str):
        self.client = client
        self.username = username
        resp = login(client, username)
        assert resp.status_code == 303, resp.get_data(as_text=True)
        self.csrf = csrf_of(client)

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, **kw)

    def post(self, url: str, data: dict[str, str] | None = None, **kw: Any) -> Any:
        headers = {"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        return self.client.post(url, data=data or {}, headers=headers, **kw)


@pytest.fixture
def staff(app: Any) -> Signed:
    return Signed(app.test_client(), "sam")


@pytest.fixture
def admin(app: Any) -> Signed:
    return Signed(app.test_client(), "admin")


def ring(controller: daemon.Controller) -> str:
    """Press the buzzer through the mock pin and return the new request id."""
    def pressed() -> Any:
        # a press within the debounce window of the previous one is (rightly) ignored: press again
        ring = controller.core.status()["ring"]
        if ring is None:
            controller.station.press()
            ring = controller.core.status()["ring"]
        return ring
    return wait_for(pressed, interval=0.06)["request_id"]


def wait_snapshot(controller: daemon.Controller, request_id: str) -> None:
    wait_for(lambda: controller.snapshots.path_for(request_id))




@pytest.fixture
def web_server(controller: daemon.Controller) -> Iterator[Any]:
    """The real production server (cheroot) on a free port, serving the panel for this controller."""
    from web.server import WebServer
    server = WebServer(controller, test_config=TEST_CONFIG, host="127.0.0.1", port=0, station=controller.station)
    add_users(server.app.extensions["panel_store"])
    server.start()
    yield server
    server.stop()


def session_cookie(server: Any, username: str) -> str:
    """A real server-side session for username (sign-in itself is tested through the form)."""
    store = server.app.extensions["panel_store"]
    token, _ = store.create_session(store.get_user(username), "127.0.0.1", "test")
    return f"eb_session={token}"
