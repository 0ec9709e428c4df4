"""Server-Sent Events on the real server (cheroot): many open dashboards do not starve normal
requests, every stream hears journal events, and gone clients are noticed and freed."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import statistics
import time

import pytest

from controller import config as cfg
from tests.support_web import TEST_CONFIG, add_users, build_controller, ring, session_cookie, stop_controller, wait_for


class StreamReader:
    """A raw-socket SSE client, so the test controls exactly when the connection goes away."""

    def __init__(self, port: int, cookie: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                          f"Cookie: {cookie}\r\n\r\n".encode())
        self.buffer = b""

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"stream closed before {marker!r}; got {self.buffer[-300:]!r}")
            self.buffer += chunk
        return self.buffer

    def beats(self) -> int:
        """Heartbeats seen so far (a ``ping``, or every few beats a ``state``)."""
        return self.buffer.count(b"event: ping") + self.buffer.count(b"event: state")

    def read_beats(self, count: int) -> None:
        """Read until ``count`` more heartbeats arrived (the stream checks its session on each)."""
        target = self.beats() + count
        while self.beats() < target:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"stream closed before {count} beats; got {self.buffer[-300:]!r}")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def get(port: int, path: str, cookie: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers={"Cookie": cookie, "Accept": "application/json"})
        resp = conn.getresponse()
        resp.body = resp.read()
        return resp
    finally:
        conn.close()


def request_seconds(port: int, cookie: str, n: int = 15) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        assert get(port, "/api/status", cookie).status == 200
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def test_ten_dashboards_do_not_starve_requests_and_gone_clients_are_freed(web_server, controller):
    cookie = session_cookie(web_server, "sam")
    hub = web_server.app.extensions["stream_hub"]
    quiet = request_seconds(web_server.port, cookie)
    # ten dashboards from four sign-ins of two staff (within the per-session and per-user shares)
    cookies = [session_cookie(web_server, name) for name in ("sam", "sam", "admin", "admin")]
    streams = [StreamReader(web_server.port, cookies[i % 4]) for i in range(10)]
    try:
        for s in streams:
            head = s.read_until(b"event: state")
            assert b"200 OK" in head and b"text/event-stream" in head
        assert hub.count == 10
        # an ordinary request still gets a thread and an answer while the streams stay open
        resp = get(web_server.port, "/api/status", cookie)
        assert resp.status == 200 and b'"door":"locked"' in resp.body
        busy = request_seconds(web_server.port, cookie)
        print(f"\n/api/status median: {quiet * 1000:.1f} ms with no stream open, "
              f"{busy * 1000:.1f} ms with 10 streams open (reported, not asserted)")
        # every stream hears the ring (a committed journal event)
        rid = ring(controller)
        for s in streams:
            s.read_until(f'"request_id":"{rid}"'.encode())
        # a client goes away: the heartbeat write fails and its slot is freed
        streams.pop().close()
        wait_for(lambda: hub.count == 9)
        assert get(web_server.port, "/api/status", cookie).status == 200
    finally:
        for s in streams:
            s.close()
    wait_for(lambda: hub.count == 0)


def test_stream_cap_refuses_extra_streams_with_503(controller):
    from web.server import WebServer
    server = WebServer(controller, test_config={**TEST_CONFIG, "SSE_MAX_STREAMS": 2}, host="127.0.0.1", port=0)
    add_users(server.app.extensions["panel_store"])
    server.start()
    streams = []
    try:
        cookie = session_cookie(server, "sam")
        streams = [StreamReader(server.port, cookie) for _ in range(2)]
        for s in streams:
            s.read_until(b"event: state")
        resp = get(server.port, "/events", cookie)
        assert resp.status == 503 and resp.getheader("Retry-After") == "5"
        assert get(server.port, "/api/status", cookie).status == 200
    finally:
        for s in streams:
            s.close()
        server.stop()


def test_revoked_session_ends_its_stream(web_server):
    store = web_server.app.extensions["panel_store"]
    cookie = session_cookie(web_server, "sam")
    stream = StreamReader(web_server.port, cookie)
    try:
        stream.read_until(b"event: state")
        for s in store.sessions():
            store.revoke(s.id)
        stream.read_until(b"event: signed_out")
    finally:
        stream.close()
    wait_for(lambda: web_server.app.extensions["stream_hub"].count == 0)


def test_stop_ends_open_streams(controller):
    from web.server import WebServer
    server = WebServer(controller, test_config=TEST_CONFIG, host="127.0.0.1", port=0)
    add_users(server.app.extensions["panel_store"])
    server.start()
    stream = StreamReader(server.port, session_cookie(server, "sam"))
    try:
        stream.read_until(b"event: state")
        server.stop()
        assert server.health()["running"] is False
    finally:
        stream.close()


def test_https_with_a_generated_certificate(settings, pin_factory, tmp_path):
    from web.certs import make_self_signed
    from web.server import WebServer
    cert, key = make_self_signed(tmp_path / "tls", ["localhost", "127.0.0.1"])
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(FileExistsError):
        make_self_signed(tmp_path / "tls")
    tls_settings = cfg.with_overrides(settings, web={"tls_cert_file": str(cert), "tls_key_file": str(key)})
    c = build_controller(tls_settings, pin_factory)
    server = WebServer(c, test_config=TEST_CONFIG, host="127.0.0.1", port=0)
    try:
        server.start()
        assert server.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=20)
        try:
            conn.request("GET", "/login")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == 200 and b"Staff sign-in" in body
        assert resp.getheader("Strict-Transport-Security") == "max-age=31536000"
        assert "Secure" in resp.getheader("Set-Cookie")
    finally:
        server.stop()
        stop_controller(c)


def test_one_session_cannot_take_every_stream_slot(web_server):
    """Finding 6: 4 streams per sign-in, 8 per account; others still get theirs; refusals are clear."""
    hub = web_server.app.extensions["stream_hub"]
    assert (hub.per_session, hub.per_user) == (4, 8)
    sam = [session_cookie(web_server, "sam") for _ in range(3)]
    greedy = []
    try:
        for _ in range(4):
            greedy.append(StreamReader(web_server.port, sam[0]))
            greedy[-1].read_until(b"event: state")
        resp = get(web_server.port, "/events", sam[0])
        assert resp.status == 429 and b"4 live dashboards" in resp.body
        share = json.loads(get(web_server.port, "/api/status", sam[0]).body)["streams"]
        assert share["session"] == 4 and share["available"] is False and "4 live dashboards" in share["reason"]
        assert resp.getheader("Retry-After") == "5"
        for _ in range(4):                                   # another sign-in of the same account
            greedy.append(StreamReader(web_server.port, sam[1]))
            greedy[-1].read_until(b"event: state")
        resp = get(web_server.port, "/events", sam[2])       # a third sign-in: the account's share is used
        assert resp.status == 429 and b"8 live dashboards" in resp.body
        other = StreamReader(web_server.port, session_cookie(web_server, "admin"))
        greedy.append(other)
        assert b"200 OK" in other.read_until(b"event: state")   # other staff still get a dashboard
        assert hub.count == 9
        assert get(web_server.port, "/api/status", sam[0]).status == 200   # and actions still run
    finally:
        for s in greedy:
            s.close()
    wait_for(lambda: hub.count == 0)


def test_an_open_stream_keeps_its_session_alive_and_idle_sessions_still_end(controller):
    """Finding 5: the live stream counts as activity (up to the absolute lifetime); without one the
    idle timeout still ends a session, so it cannot act."""
    from web.server import WebServer
    idle = 60.0
    server = WebServer(controller, test_config={**TEST_CONFIG, "SESSION_IDLE_SECONDS": idle},
                       host="127.0.0.1", port=0)
    store = server.app.extensions["panel_store"]
    skipped = [0.0]
    store.clock = lambda: time.monotonic() + skipped[0]   # idle time passes at once, not in sleeps
    add_users(store)
    server.start()
    try:
        display, idle_cookie = session_cookie(server, "sam"), session_cookie(server, "admin")
        stream = StreamReader(server.port, display)
        try:
            head = stream.read_until(b"event: session")
            assert b'"expires_in":' in head and b'"warn_before":600' in head
            for _ in range(4):                    # three idle periods in all, in steps under one
                skipped[0] += idle * 0.75
                stream.read_beats(2)              # the second beat's session check ran after the step
            assert get(server.port, "/api/status", display).status == 200
            assert get(server.port, "/api/status", idle_cookie).status == 401
        finally:
            stream.close()
        wait_for(lambda: server.app.extensions["stream_hub"].count == 0)
        skipped[0] += idle * 2
        assert get(server.port, "/api/status", display).status == 401
    finally:
        server.stop()


def test_stream_shares_and_session_lifetime_are_configurable(settings, tmp_path):
    from web.store import PanelStore
    with pytest.raises(cfg.ConfigError) as err:
        cfg.from_dict({"web": {"streams_per_session": 0, "streams_per_user": "8", "session_max_hours": 0}})
    text = str(err.value)
    assert "web.streams_per_session" in text and "web.streams_per_user" in text and "web.session_max_hours" in text
    s = cfg.from_dict({"web": {"streams_per_session": 2, "streams_per_user": 3, "session_max_hours": 8}})
    assert (s.web.streams_per_session, s.web.streams_per_user, s.web.session_max_hours) == (2, 3, 8.0)
    store = PanelStore(tmp_path / "p.sqlite3", max_hours=s.web.session_max_hours)
    try:
        assert store.max_seconds == 8 * 3600
    finally:
        store.close()
