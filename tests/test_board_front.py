"""The board behind Debian's real nginx with the SHIPPED site config (deploy/nginx/district-board.conf,
its four tokens replaced as for the campus panel's site), the board on a Unix socket: sign-in over
HTTPS with Secure cookies and HSTS, the client address nginx saw in the audit (ProxyFix, one hop),
a forged X-Forwarded-For ignored, the live stream unbuffered through nginx, oversized bodies
refused by nginx in the board's JSON shape."""

from __future__ import annotations

import http.client
import re
import shutil
import ssl
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest

from district.board.server import BoardServer
from tests.support_board import PASSWORDS, TEST_CONFIG
from tests.support_front import MAIN_CONF, NginxFront, free_port, short_tmp
from web.certs import make_self_signed

pytestmark = [pytest.mark.nginx, pytest.mark.postgres, pytest.mark.broker]

SITE = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "district-board.conf"
TOKENS = ("@BOARD_PORT@", "@BOARD_SOCKET@", "@TLS_CERT@", "@TLS_KEY@")


def render(port: int, socket_path: str, cert: str, key: str) -> str:
    text = SITE.read_text()
    for token, value in zip(TOKENS, (str(port), socket_path, cert, key), strict=False):
        assert token in text, token
        text = text.replace(token, value)
    assert not re.search(r"@[A-Z_]+@", text), "an unreplaced token is left"
    return text


class BoardNginx(NginxFront):
    def __init__(self, directory: Path, socket_path: str, cert: Path, key: Path):
        import os
        self.dir = directory
        self.port = free_port()
        (directory / "sites-enabled").mkdir(parents=True)
        (directory / "sites-enabled" / "district-board").write_text(render(self.port, socket_path, str(cert),
                                                                           str(key)))
        self.conf = directory / "nginx.conf"
        self.conf.write_text(MAIN_CONF.format(user="user root root;" if os.geteuid() == 0 else "", dir=directory))
        self.proc = None


@pytest.fixture(scope="module")
def front(district) -> Iterator[Any]:
    base = short_tmp()
    cert, key = make_self_signed(base / "tls", ["localhost", "127.0.0.1"])
    sock = str(base / "board.sock")
    settings = replace(district.settings, web=replace(district.settings.web, listen="unix", socket_path=sock))
    board = BoardServer(settings, test_config=TEST_CONFIG).start()
    nginx = BoardNginx(base / "nginx", sock, cert, key)
    checked = nginx.check()
    assert checked.returncode == 0, checked.stderr
    nginx.start()
    nginx.ctx = ssl.create_default_context(cafile=str(cert))   # type: ignore[attr-defined]
    try:
        yield nginx
    finally:
        nginx.stop()
        board.stop()
        shutil.rmtree(base, ignore_errors=True)


def request(front: Any, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], list[str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", front.port, context=front.ctx, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.headers.get_all("Set-Cookie") or [], r.read()
    finally:
        conn.close()


def test_sign_in_through_nginx_is_secure_and_audits_the_real_address(district, front):
    status, _h, cookies, body = request(front, "GET", "/login")
    assert status == 200
    token = re.search(rb'name="csrf_token" value="([^"]*)"', body).group(1).decode()
    login_cookie = cookies[0].split(";")[0]
    form = urlencode({"username": "victor", "password": PASSWORDS["victor"], "csrf_token": token, "next": "/"})
    status, headers, cookies, _ = request(front, "POST", "/login", form.encode(), {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": login_cookie,
        "X-Forwarded-For": "203.0.113.9"})                       # forged: nginx replaces it
    assert status == 303
    session = next(c for c in cookies if c.startswith("district_session="))
    assert "Secure" in session and "HttpOnly" in session
    assert headers.get("strict-transport-security", "").startswith("max-age=")
    address = district.sql("SELECT address FROM audit WHERE action = 'login_succeeded' ORDER BY id DESC LIMIT 1")[0][0]
    assert address == "127.0.0.1"
    cookie = session.split(";")[0]
    status, headers, _c, body = request(front, "GET", "/api/grid", headers={"Cookie": cookie})
    assert status == 200 and b'"campuses"' in body

    # the live stream passes nginx unbuffered: the first grid event arrives at once
    conn = http.client.HTTPSConnection("127.0.0.1", front.port, context=front.ctx, timeout=30)
    try:
        conn.request("GET", "/live", headers={"Cookie": cookie, "Accept": "text/event-stream"})
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
        assert r.readline().startswith(b"event: grid")
    finally:
        conn.close()


def test_oversized_body_is_refused_by_nginx_in_the_boards_shape(front):
    status, headers, _c, body = request(front, "POST", "/lockdown", b"x" * 40_000,
                                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413 and b'"request too large"' in body
