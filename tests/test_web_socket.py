"""The panel on a Unix socket behind nginx (``web.listen = "unix"``): only the service's group
can connect, the socket goes away on stop, and X-Forwarded-For/-Proto are trusted there (nginx
sets them) but never on a TCP listener, where any client could forge them."""

from __future__ import annotations

import http.client
import re
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from controller import config as cfg
from controller import events as ev
from tests.support_web import TEST_CONFIG, add_users


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=20)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(self.path)


@pytest.fixture
def socket_server(controller: Any) -> Iterator[Any]:
    from web.server import WebServer
    directory = Path(tempfile.mkdtemp(prefix="eb-sock-", dir="/tmp"))
    settings = cfg.with_overrides(controller.settings, web={
        "enabled": True, "listen": "unix", "socket_path": str(directory / "panel.sock")})
    server = WebServer(controller, settings, test_config=TEST_CONFIG)
    add_users(server.app.extensions["panel_store"])
    server.start()
    yield server
    server.stop()
    directory.rmdir()


def failed_login(connect: Any, headers: dict[str, str]) -> tuple[str, str]:
    """A wrong password through the real form; returns (journaled address, login cookie header)."""
    conn = connect()
    conn.request("GET", "/login", headers=headers)
    resp = conn.getresponse()
    page = resp.read().decode()
    cookie_header = resp.getheader("Set-Cookie") or ""
    conn.close()
    token = re.search(r'name="csrf_token" value="([^"]*)"', page).group(1)
    conn = connect()
    body = f"username=sam&password=wrong-password-1&csrf_token={token}"
    conn.request("POST", "/login", body=body, headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": cookie_header.split(";", 1)[0]})
    assert conn.getresponse().status == 401
    conn.close()
    return cookie_header, body


def last_failed_address(controller: Any) -> str:
    events = controller.journal.query(types=[ev.LOGIN_FAILED], limit=1)
    return events[0].data["address"]


def test_socket_is_group_only_and_removed_on_stop(controller) -> None:
    from web.server import WebServer
    directory = Path(tempfile.mkdtemp(prefix="eb-sock-", dir="/tmp"))
    path = directory / "panel.sock"
    settings = cfg.with_overrides(controller.settings, web={"enabled": True, "listen": "unix",
                                                           "socket_path": str(path)})
    server = WebServer(controller, settings, test_config=TEST_CONFIG)
    server.start()
    try:
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert server.url == f"unix:{path}" and server.health()["running"] and not server.tls
    finally:
        server.stop()
    assert not path.exists()
    directory.rmdir()


def test_forwarded_headers_are_trusted_on_the_socket(socket_server, controller) -> None:
    cookie, _ = failed_login(lambda: UnixHTTPConnection(socket_server.socket_path),
                             {"X-Forwarded-For": "10.20.30.40", "X-Forwarded-Proto": "https"})
    assert last_failed_address(controller) == "10.20.30.40"      # what nginx saw: the throttle's key
    assert "Secure" in cookie                                      # nginx terminated TLS


def test_forwarded_headers_are_ignored_on_tcp(web_server, controller) -> None:
    cookie, _ = failed_login(lambda: http.client.HTTPConnection("127.0.0.1", web_server.port, timeout=20),
                             {"X-Forwarded-For": "10.20.30.40", "X-Forwarded-Proto": "https"})
    assert last_failed_address(controller) == "127.0.0.1"
    assert "Secure" not in cookie


