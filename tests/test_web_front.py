"""The production front (issue 10, findings 1-3): Debian's real nginx with the SHIPPED site
config (deploy/nginx/entry-buzzer.conf, rendered like install.sh does) in front of the real
daemon serving the panel on a Unix socket.

Figures to meet: while 1 idle TCP connection, 50 idle TLS connections, 100 slow-header
connections, or 10 connections each sending 100 MB of headers are held open (every dropped
attacker reconnects at once), a signed-in staff member's Approve of a real ring and Start
lockdown both succeed within 2 s in 20 of 20 tries (each on a new TCP + TLS connection), and
the daemon's RSS grows by less than 10 MB. The attackers share the staff member's address
(worst case: one NAT). Generous bounds for a shared, noisy machine; measured values are
printed (run with -s) and written to test-artifacts/front-figures.json.

Before the fix the panel was cheroot serving TLS itself. EB_FRONT_DIRECT=1 runs the same
attacks against that (the daemon with web.listen = "tcp" and TLS, no nginx): there staff
actions take 10 s or get no answer in 25 s and all four tests fail (figures in the README,
"Serving").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support_deploy import REPO
from tests.support_front import FrontDaemon, NginxFront, Staff, free_port, short_tmp
from web.certs import make_self_signed

pytestmark = pytest.mark.process

DIRECT = os.environ.get("EB_FRONT_DIRECT") == "1"
TRIES = 20
BOUND_SECONDS = 2.0
RSS_BOUND_KB = 10 * 1024
TRY_EVERY_SECONDS = 0.65
FIGURES: dict[str, Any] = {}


class Front:
    def __init__(self, base: Path):
        self.base = base
        self.cert, self.key = make_self_signed(base / "tls", ["localhost", "127.0.0.1"])
        self.socket_path = str(base / "panel.sock")
        self.nginx: NginxFront | None = None
        if DIRECT:
            self.port = free_port()
            listen = f"tls:{self.port}:{self.cert}:{self.key}"
        else:
            listen = f"unix:{self.socket_path}"
        self.daemon = FrontDaemon(base / "state", listen)
        try:
            self.daemon.start()
            if not DIRECT:
                self.nginx = self.new_nginx("nginx")
                self.port = self.nginx.port
            self.staff = Staff(self.port, self.cert, self.daemon.password)
        except BaseException:
            self.close()
            raise

    def new_nginx(self, name: str, socket_path: str | None = None) -> NginxFront:
        nginx = NginxFront(self.base / name, socket_path or self.socket_path, self.cert, self.key)
        checked = nginx.check()
        assert checked.returncode == 0, checked.stderr
        return nginx.start()

    def close(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        self.daemon.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def front() -> Iterator[Front]:
    f = Front(short_tmp())
    try:
        for _ in range(3):                       # warm-up: imports, caches, SQLite pages
            door_actions(f.staff)
        yield f
    finally:
        f.close()
        for fig in FIGURES.values():          # one summary line per attack (shown with -s)
            print(f"\n[front] {fig['attack']:32s} {fig['tries_ok_within_2s']:>6s} ok, approve max "
                  f"{fig['approve_max_s']} s, lockdown max {fig['lockdown_max_s']} s, "
                  f"daemon RSS +{fig['rss_growth_mb']} MB, nginx RSS +{fig['nginx_rss_growth_mb']} MB")
        if FIGURES:
            out = REPO / "test-artifacts"
            out.mkdir(exist_ok=True)
            (out / "front-figures.json").write_text(json.dumps(FIGURES, indent=2))


def _ring_id(staff: Staff) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ring = staff.status()["status"]["ring"]
        if ring:
            return ring["request_id"]
        staff.post("/sim/press", timeout=25)     # within the debounce of the last press: again
        time.sleep(0.1)
    raise AssertionError("no ring after pressing the buzzer")


def door_actions(staff: Staff) -> dict[str, Any]:
    """One try: a visitor presses, staff approves that ring, starts a lockdown, ends it."""
    result: dict[str, Any] = {"approve": None, "lockdown": None, "ok": False}
    try:
        status, _d, _t = staff.post("/sim/press", timeout=25)
        assert status == 200, status
        rid = _ring_id(staff)
        status, data, took = staff.post("/api/approve", {"request_id": rid}, timeout=25)
        result["approve"] = took
        approved = status == 200 and data.get("ok") is True
        status, data, took = staff.post("/api/lockdown/start", {"reason": "front test"}, timeout=25)
        result["lockdown"] = took
        locked = status == 200 and data.get("ok") is True
        status, data, _t = staff.post("/api/lockdown/end", {"confirm": "yes", "reason": "test"}, timeout=25)
        result["ok"] = approved and locked and status == 200
    except (OSError, ssl.SSLError, AssertionError) as exc:
        result["error"] = repr(exc)
    return result


class Attack:
    """tests.front_attack in its own process, holding COUNT hostile connections open."""

    def __init__(self, kind: str, count: int, port: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.front_attack", kind, str(count),
                                      "127.0.0.1", str(port)], cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("holding"), line + self.proc.stderr.read()
        self.held = int(line.split()[1])

    def stop(self) -> dict[str, Any]:
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=60)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        assert lines, err
        return json.loads(lines[-1])


def _in_bound(r: dict[str, Any]) -> bool:
    return bool(r["ok"] and r["approve"] < BOUND_SECONDS and r["lockdown"] < BOUND_SECONDS)


ATTACKS = {
    "idle_tcp": ("1 idle TCP connection", 1),
    "idle_tls": ("50 idle TLS connections", 50),
    "slow_headers": ("100 slow-header connections", 100),
    "big_headers": ("10 x 100 MB of headers", 10),
}


@pytest.mark.parametrize("kind", list(ATTACKS))
def test_staff_actions_succeed_while_hostile_clients_hold_connections(front: Front, kind: str) -> None:
    label, count = ATTACKS[kind]
    rss_before = front.daemon.rss_kb()
    rss_max = rss_before
    nginx_before = nginx_max = front.nginx.rss_kb() if front.nginx else 0
    attack = Attack(kind, count, front.port)
    results = []
    try:
        time.sleep(1.0)                          # let the attack settle in (handshakes, first lines)
        for _ in range(TRIES):
            started = time.monotonic()
            results.append(door_actions(front.staff))
            # spread the tries over > 12 s: past nginx's 10 s header timeout, so the attackers'
            # drop-and-reconnect cycle happens while staff act
            time.sleep(max(0.0, TRY_EVERY_SECONDS - (time.monotonic() - started)))
            if DIRECT and sum(not _in_bound(r) for r in results) >= 3:
                break                            # the old front: three failures show it, spare the time
            rss_max = max(rss_max, front.daemon.rss_kb())
            nginx_max = max(nginx_max, front.nginx.rss_kb() if front.nginx else 0)
        rss_max = max(rss_max, front.daemon.rss_kb())
    finally:
        attack_stats = attack.stop()
    ok = [r for r in results if _in_bound(r)]
    approve = [r["approve"] for r in results if r["approve"] is not None]
    lockdown = [r["lockdown"] for r in results if r["lockdown"] is not None]
    figures = {
        "attack": label, "held": attack.held, "tries_ok_within_2s": f"{len(ok)}/{len(results)}",
        "approve_max_s": round(max(approve), 3) if approve else None,
        "lockdown_max_s": round(max(lockdown), 3) if lockdown else None,
        "rss_before_mb": round(rss_before / 1024, 1), "rss_growth_mb": round((rss_max - rss_before) / 1024, 2),
        "nginx_rss_growth_mb": round((nginx_max - nginx_before) / 1024, 2), "attacker": attack_stats,
        "front": "cheroot direct (old)" if DIRECT else "nginx (shipped config)",
        "errors": sorted({r["error"] for r in results if "error" in r})[:3],
    }
    FIGURES[kind] = figures
    print(f"\n[front figures] {kind}: {json.dumps(figures)}")
    assert attack.held == count, figures
    assert len(ok) == TRIES, figures
    assert rss_max - rss_before < RSS_BOUND_KB, figures
    if kind == "big_headers" and front.nginx is not None:
        # nginx answers 400 once its 4 x 8 KB header buffers are full and closes at once
        # (lingering_close off): no flood gets anywhere near 100 MB in ("sent" includes what
        # the kernel's socket buffers took).
        assert front.nginx.access_statuses().count(400) >= count, figures
        assert attack_stats["dropped_by_server"] >= count, figures
        assert attack_stats["sent_all_100mb"] == 0, figures
        assert attack_stats["max_bytes_sent_per_connection"] < 16 * 1024 * 1024, figures


# ------------------------------------------------------------------ the front's other duties
# (not meaningful against the old front)

needs_nginx = pytest.mark.skipif(DIRECT, reason="nginx front only")


@needs_nginx
def test_the_app_sees_the_real_client_address_and_ignores_a_spoofed_one(front: Front) -> None:
    """X-Forwarded-For is trusted only from nginx, which replaces what the client sent: the
    sign-in throttle and the journal see the real address, never a forged one."""
    headers = front.staff.sign_in("admin", front.daemon.password,
                                  extra_headers={"X-Forwarded-For": "10.66.66.66", "X-Real-IP": "10.66.66.66"})
    assert "Secure" in headers["set-cookie"]            # X-Forwarded-Proto: https reached the app
    db = sqlite3.connect(f"file:{front.daemon.state_dir / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT data FROM events WHERE type = 'login_succeeded' ORDER BY seq").fetchall()
    finally:
        db.close()
    addresses = {json.loads(r[0]).get("address") for r in rows}
    assert addresses == {"127.0.0.1"}, addresses


@needs_nginx
def test_security_headers_pass_through_and_nginx_hides_its_version(front: Front) -> None:
    status, headers, _body = front.staff.request("GET", "/", headers={"Accept": "text/html"})
    assert status == 200
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["strict-transport-security"].startswith("max-age=")
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert headers["server"] == "nginx"                  # server_tokens off: no version


@needs_nginx
def test_live_stream_is_proxied_unbuffered(front: Front) -> None:
    """The first event arrives at once, and a ring reaches an open dashboard through the front."""
    conn = socket.create_connection(("127.0.0.1", front.port), timeout=20)
    sock = front.staff.ctx.wrap_socket(conn, server_hostname="localhost")
    try:
        sock.sendall(f"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n"
                     f"Cookie: {front.staff.cookie}\r\n\r\n".encode())
        seen = b""
        while b"\r\n\r\n" not in seen:
            seen += sock.recv(4096)
        head = seen.split(b"\r\n\r\n", 1)[0].decode().lower()
        assert head.startswith("http/1.1 200") and "text/event-stream" in head
        front.staff.post("/sim/press")
        deadline = time.monotonic() + 20
        while b"buzzer_pressed" not in seen and time.monotonic() < deadline:
            seen += sock.recv(65536)
        assert b"buzzer_pressed" in seen
    finally:
        sock.close()
    rid = _ring_id(front.staff)
    front.staff.post("/api/deny", {"request_id": rid})


@needs_nginx
def test_oversized_body_gets_a_clear_413(front: Front) -> None:
    status, _h, body = front.staff.request("POST", "/api/approve", {"request_id": "x" * (200 * 1024)})
    assert status == 413 and json.loads(body)["error"] == "request too large"


@needs_nginx
def test_sign_in_flood_is_slowed_down_with_429_and_door_actions_go_on(front: Front) -> None:
    """A separate, tighter zone for /login: a flood gets JSON 429 from nginx (a fresh nginx,
    so the shared front's counters stay clean), while the same address still acts."""
    nginx = front.new_nginx("nginx-login")
    try:
        staff = Staff(nginx.port, front.cert, front.daemon.password)    # signed in before the flood
        flood = Staff(nginx.port, front.cert, None)
        codes = [flood.request("GET", "/login", headers={"Accept": "text/html"})[0] for _ in range(40)]
        assert 429 in codes and codes[0] == 200, codes
        status, headers, body = flood.request("GET", "/login")
        assert status == 429 and json.loads(body)["status"] == 429 and headers["retry-after"]
        assert staff.status()["status"]["door"]                  # other requests are not limited
    finally:
        nginx.stop()


@needs_nginx
def test_controller_down_gives_a_clear_503_and_http_is_redirected(front: Front) -> None:
    nginx = front.new_nginx("nginx-down", socket_path=str(front.base / "nobody-here.sock"))
    try:
        status, _h, body = Staff(nginx.port, front.cert, None).request("GET", "/api/status")
        assert status == 503 and "door stays locked" in json.loads(body)["error"]
        with socket.create_connection(("127.0.0.1", nginx.port), timeout=20) as plain:
            plain.sendall(b"GET /history HTTP/1.1\r\nHost: door.school.lan\r\n\r\n")
            answer = plain.recv(4096).decode(errors="replace")
        assert answer.startswith("HTTP/1.1 301"), answer
        assert re.search(rf"Location: https://door\.school\.lan:{nginx.port}/history", answer), answer
    finally:
        nginx.stop()
