"""The production front for tests: Debian's real nginx with the SHIPPED site config, in front of
the real daemon (simulated campus, MockFactory GPIO) serving the panel on a Unix socket.

The site file deploy/nginx/entry-buzzer.conf is rendered exactly as deploy/install.sh renders it
(four tokens replaced) and included from a small main config that keeps nginx's pid, logs and
temp files in the test's directory. Nothing in the site file is copied or edited by hand here.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.conftest import wait_for
from tests.support_deploy import REPO

SITE_TEMPLATE = REPO / "deploy" / "nginx" / "entry-buzzer.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOKENS = ("@PANEL_PORT@", "@PANEL_SOCKET@", "@TLS_CERT@", "@TLS_KEY@")

# Debian's /etc/nginx/nginx.conf, minus the paths (pid, logs, temp files) a test cannot use.
MAIN_CONF = """\
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 768; }}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log {dir}/access.log;
    gzip on;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/sites-enabled/*;
}}
"""


def render_site(port: int, socket_path: str, cert: str, key: str) -> str:
    """The shipped template with its four tokens replaced (what install.sh's sed does)."""
    text = SITE_TEMPLATE.read_text()
    for token, value in zip(TOKENS, (str(port), socket_path, cert, key), strict=True):
        assert token in text, token
        text = text.replace(token, value)
    assert not re.search(r"@[A-Z_]+@", text), "an unreplaced token is left"
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NginxFront:
    """nginx -c main.conf (which includes the rendered shipped site), run in the foreground."""

    def __init__(self, directory: Path, socket_path: str, cert: Path, key: Path):
        self.dir = directory
        self.port = free_port()
        (directory / "sites-enabled").mkdir(parents=True)
        (directory / "sites-enabled" / "entry-buzzer").write_text(
            render_site(self.port, socket_path, str(cert), str(key)))
        user = "user root root;" if os.geteuid() == 0 else ""    # workers must reach the tmp socket
        self.conf = directory / "nginx.conf"
        self.conf.write_text(MAIN_CONF.format(user=user, dir=directory))
        self.proc: subprocess.Popen[bytes] | None = None

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([NGINX, "-t", "-q", "-c", str(self.conf), "-e", str(self.dir / "error.log")],
                              capture_output=True, text=True, timeout=60)

    def start(self) -> "NginxFront":
        self.proc = subprocess.Popen([NGINX, "-c", str(self.conf), "-e", str(self.dir / "error.log"),
                                      "-g", "daemon off; master_process on;"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)     # everything goes to error.log

        def listening() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.error_log()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, timeout=30, what="nginx listening")
        return self

    def access_statuses(self) -> list[int]:
        """The status of every request in the access log (combined format)."""
        path = self.dir / "access.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return [int(m) for m in re.findall(r'" (\d{3}) ', text)]

    def rss_kb(self) -> int:
        """nginx's own memory: the master and its workers."""
        assert self.proc is not None
        pids = [self.proc.pid] + [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
                                  .read_text().split()]
        total = 0
        for pid in pids:
            try:
                total += int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1))
            except (OSError, AttributeError):
                pass
        return total

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()              # fast shutdown of master and workers
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None


class FrontDaemon:
    """The real daemon (``tests.front_daemon``) serving the panel on a Unix socket, in a subprocess."""

    def __init__(self, state_dir: Path, listen: str):
        self.state_dir, self.listen = state_dir, listen     # "unix:PATH" or "tls:PORT:CERT:KEY"
        self.proc: subprocess.Popen[str] | None = None
        self.password = ""

    def start(self) -> "FrontDaemon":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.front_daemon", str(self.state_dir), self.listen],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 90
        for line in self.proc.stdout:
            match = re.search(r"panel sign-in: admin / (\S+)", line)
            if match:
                self.password = match.group(1)
                break
            if time.monotonic() > deadline:
                break
        if not self.password:
            err = self.stop()
            raise AssertionError(f"the daemon did not start: {err[-2000:]}")
        return self

    def rss_kb(self) -> int:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))

    def stop(self) -> str:
        if self.proc is None:
            return ""
        self.proc.terminate()                 # SIGTERM: the daemon relocks and stops cleanly
        try:
            _out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate(timeout=30)
        self.proc = None
        return err


def short_tmp() -> Path:
    """A short directory for the Unix socket (sun_path holds at most 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="eb-front-", dir="/tmp"))


class Staff:
    """A signed-in staff member talking HTTPS to the front, one new connection per request
    (a new TCP and TLS handshake each time: the path an attack on accept() would block)."""

    def __init__(self, port: int, cafile: Path, password: str | None, username: str = "admin"):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=str(cafile))
        self.cookie = ""
        self.csrf = ""
        if password is not None:                 # None: an anonymous client
            self.sign_in(username, password)

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPSConnection("localhost", self.port, context=self.ctx, timeout=timeout)
        try:
            body = None
            h = {"Accept": "application/json", **(headers or {})}
            if self.cookie:
                h["Cookie"] = self.cookie
            if form is not None:
                from urllib.parse import urlencode
                body = urlencode(form)
                h["Content-Type"] = "application/x-www-form-urlencoded"
                if self.csrf:
                    h["X-CSRF-Token"] = self.csrf
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            headers["set-cookie"] = "\n".join(resp.msg.get_all("Set-Cookie") or [])
            return resp.status, headers, data
        finally:
            conn.close()

    def sign_in(self, username: str, password: str, extra_headers: dict[str, str] | None = None) -> dict[str, str]:
        self.cookie = self.csrf = ""            # a fresh sign-in (a new session)
        status, headers, page = self.request("GET", "/login", headers={"Accept": "text/html"})
        assert status == 200, (status, page[:300])
        token = re.search(rb'name="csrf_token" value="([^"]*)"', page).group(1).decode()
        self.cookie = re.search(r"eb_login_csrf=[^;]*", headers["set-cookie"]).group(0)
        status, headers, page = self.request(
            "POST", "/login", {"username": username, "password": password, "csrf_token": token, "next": "/"},
            headers={"Accept": "text/html", **(extra_headers or {})})
        assert status == 303, (status, page[:500])
        self.session_cookie_header = re.search(r"eb_session=[^\n]*", headers["set-cookie"]).group(0)
        self.cookie = self.session_cookie_header.split(";", 1)[0]
        status, _h, page = self.request("GET", "/", headers={"Accept": "text/html"})
        assert status == 200, status
        self.csrf = re.search(rb'<meta name="csrf-token" content="([^"]*)"', page).group(1).decode()
        return headers

    def post(self, path: str, form: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, Any, float]:
        """POST, returning (status, JSON body, seconds taken)."""
        start = time.monotonic()
        status, _h, body = self.request("POST", path, form or {}, timeout=timeout)
        took = time.monotonic() - start
        try:
            data = json.loads(body)
        except ValueError:
            data = body[:200]
        return status, data, took

    def status(self) -> Any:
        status, _h, body = self.request("GET", "/api/status")
        assert status == 200, (status, body[:200])
        return json.loads(body)
